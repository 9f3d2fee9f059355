"""Fixtures for the normalizer tests: the shared sample findings, loaded fresh for each test."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared fixtures sit beside the repository (X/main and X/shared), also in CI.
SAMPLES = REPO_ROOT.parent / "shared" / "fixtures" / "findings"

Loader = Callable[[str], Any]


def _sample_names() -> list[str]:
    assert SAMPLES.is_dir(), f"sample findings not found at {SAMPLES}"
    return sorted(path.name for path in SAMPLES.glob("*.json"))


def _load(name: str) -> Any:
    return copy.deepcopy(json.loads((SAMPLES / name).read_text(encoding="utf-8")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run any test taking `sample_name` once per sample file."""
    if "sample_name" in metafunc.fixturenames:
        metafunc.parametrize("sample_name", _sample_names())


@pytest.fixture(scope="session")
def load_sample() -> Loader:
    """Load one sample finding by file name (a fresh copy each call)."""
    return _load


@pytest.fixture(scope="session")
def sample_names() -> list[str]:
    """Every sample file name."""
    return _sample_names()


@pytest.fixture
def rest_alert() -> dict[str, Any]:
    """The REST / Event Hub single alert sample."""
    payload: dict[str, Any] = _load("defender-rest-suspicious-ip.json")
    return payload


@pytest.fixture
def workflow_alert() -> dict[str, Any]:
    """The workflow automation (Logic App) sample."""
    payload: dict[str, Any] = _load("defender-workflow-tor.json")
    return payload


@pytest.fixture
def row_alert() -> dict[str, Any]:
    """The Log Analytics SecurityAlert row sample."""
    payload: dict[str, Any] = _load("securityalert-row-useragent.json")
    return payload


@pytest.fixture
def graph_alert() -> dict[str, Any]:
    """The Microsoft Graph alerts_v2 sample."""
    payload: dict[str, Any] = _load("graph-alert-param-enum.json")
    return payload


@pytest.fixture
def incident() -> dict[str, Any]:
    """The Sentinel incident automation sample."""
    payload: dict[str, Any] = _load("sentinel-incident-payload.json")
    return payload


@pytest.fixture
def assessment() -> dict[str, Any]:
    """The unauthenticated-endpoint recommendation sample."""
    payload: dict[str, Any] = _load("recommendation-unauthenticated-endpoint.json")
    return payload


@pytest.fixture
def ocsf_finding() -> dict[str, Any]:
    """The OCSF Detection Finding sample."""
    payload: dict[str, Any] = _load("ocsf-detection-finding.json")
    return payload
