"""Demo fixtures: one demo directory per module (writing it runs the engine), and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from clampdown.demo import Result, create
from tests.cli.conftest import runner  # noqa: F401  (the CLI tests' runner)


@pytest.fixture(scope="module")
def samples_only(tmp_path_factory: pytest.TempPathFactory) -> Result:
    """A demo of the samples alone, without made-up history."""
    return create(tmp_path_factory.mktemp("demo") / "samples-only", history=False)


@pytest.fixture(scope="module")
def with_history(tmp_path_factory: pytest.TempPathFactory) -> Result:
    """A demo with its week of made-up history."""
    return create(tmp_path_factory.mktemp("demo") / "with-history")


def db_path(result: Result) -> Path:
    """The demo's SQLite file."""
    return result.workspace.database
