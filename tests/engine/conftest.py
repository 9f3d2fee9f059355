"""Engine fixtures: an app with playbooks written for the test, and a worker to drain jobs."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clampdown.services import Clampdown
from tests.conftest import make_config
from tests.fakes import WebhookReceiver

AppFactory = Callable[..., Clampdown]


@pytest.fixture
def make_app(tmp_path: Path, database_url: str) -> Iterator[AppFactory]:
    """Build an app whose only playbooks are the YAML given, with fast retries."""
    opened: list[Clampdown] = []

    def build(
        playbooks: str,
        *,
        webhook: WebhookReceiver | None = None,
        targets: dict[str, Any] | None = None,
        links: dict[str, Any] | None = None,
        safety: dict[str, Any] | None = None,
        **engine: Any,
    ) -> Clampdown:
        folder = tmp_path / f"playbooks{len(opened)}"
        folder.mkdir()
        (folder / "test.yaml").write_text(textwrap.dedent(playbooks))
        targets = dict(targets or {})
        if webhook is not None:
            targets["hook"] = {"type": "webhook", "url": webhook.url, "timeout": 2}
        config = make_config(
            tmp_path,
            playbooks=str(folder),
            default_pack=False,
            targets=targets,
            engine={"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.05, **engine},
            **({"links": links} if links else {}),
            **({"safety": safety} if safety else {}),
        )
        app = Clampdown.open(config, database_url=database_url)
        opened.append(app)
        return app

    yield build
    for app in opened:
        app.close()


def drain(
    app: Clampdown, *, timeout: float = 10.0, until: Callable[[], bool] | None = None
) -> None:
    """Run a worker until no step is due (or `until` holds), at most `timeout` seconds."""
    assert asyncio.run(app.settle(timeout, until)), "the engine did not settle in time"
