"""CLI fixtures: run `clampdown` in-process against a test database and config file."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from clampdown import logs
from clampdown.cli.main import app
from tests.conftest import FIXTURES

Run = Callable[..., Result]

FAST_ENGINE = {"poll_interval": 0.05, "backoff_initial": 0.01, "backoff_max": 0.05}


def write_config(path: Path, **settings: Any) -> Path:
    """A config file with a fast engine and `settings`."""
    path.write_text(yaml.safe_dump({"engine": FAST_ENGINE, **settings}))
    return path


def sample_path(name: str) -> str:
    """The path of a shared sample finding file."""
    return str(FIXTURES / name)


def out_json(result: Result) -> Any:
    """The JSON a command printed on stdout, after checking it succeeded."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line(text: str) -> str:
    """Rich wraps long messages at the console width: compare them unwrapped."""
    return " ".join(text.split())


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time: CliRunner's during a command."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CliRunner whose commands log to their own stderr.

    The command configures structlog globally with the stderr of the moment; under CliRunner
    that stream is closed after the command, and later log calls anywhere would fail on it.
    """
    monkeypatch.setattr(logs, "sys", SimpleNamespace(stderr=_CurrentStderr()))
    # Wide enough that Rich tables show ids and subjects whole.
    return CliRunner(env={"COLUMNS": "250", "CLAMPDOWN_CONFIG": None})


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config with the default pack on."""
    return write_config(tmp_path / "clampdown.yaml", default_pack=True)


@pytest.fixture
def cli(runner: CliRunner, database_url: str, config_file: Path) -> Run:
    """Run one `clampdown` command on the test database; returns click's Result."""

    def run(*args: str, input: str | bytes | None = None, config: Path | None = None) -> Result:
        options = ["--database-url", database_url, "--config", str(config or config_file)]
        return runner.invoke(app, [*options, *args], input=input)

    return run
