"""Closing-the-loop fixtures: the default pack on a fresh database, and deliveries of samples
with the status their detector later reports."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clampdown.services import Clampdown
from tests.conftest import make_config, sample

PackApp = Callable[..., Clampdown]
RECOMMENDATION = "recommendation-unauthenticated-endpoint.json"
ALERT = "defender-rest-suspicious-ip.json"
GRAPH = "graph-alert-param-enum.json"


@pytest.fixture
def make_pack_app(tmp_path: Path, database_url: str) -> Iterator[PackApp]:
    """Build an app with the default pack (or only the `playbooks` YAML given), a fast engine
    and the `closing` settings given."""
    opened: list[Clampdown] = []

    def build(
        playbooks: str | None = None, targets: dict[str, Any] | None = None, **closing: Any
    ) -> Clampdown:
        extra: dict[str, Any] = {}
        if playbooks is not None:
            folder = tmp_path / f"playbooks{len(opened)}"
            folder.mkdir()
            (folder / "test.yaml").write_text(textwrap.dedent(playbooks))
            extra = {"playbooks": str(folder), "default_pack": False}
        config = make_config(
            tmp_path,
            engine={"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.05},
            targets=targets or {},
            closing=closing,
            **extra,
        )
        app = Clampdown.open(config, database_url=database_url)
        opened.append(app)
        return app

    yield build
    for app in opened:
        app.close()


def assessment(code: str) -> dict[str, Any]:
    """The unauthenticated-endpoint recommendation with status code `code`."""
    payload = copy.deepcopy(sample(RECOMMENDATION))
    payload["properties"]["status"]["code"] = code
    return payload


def defender_alert(status: str = "Active") -> dict[str, Any]:
    """The suspicious-IP alert (REST shape) with `status`."""
    payload = copy.deepcopy(sample(ALERT))
    payload["properties"]["status"] = status
    return payload


def graph_alert(
    status: str = "new", *, classification: str | None = None, n: int = 0
) -> dict[str, Any]:
    """The Graph parameter-enumeration alert with `status` (alert `n` of the same IP)."""
    payload = copy.deepcopy(sample(GRAPH))
    payload["status"] = status
    payload["classification"] = classification
    if n:
        payload["id"] = f"{payload['id']}-{n}"
        payload["providerAlertId"] = f"{payload['providerAlertId']}-{n}"
    return payload
