"""API fixtures: a test client over the app, with the engine running in its loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.services import Clampdown
from tests.conftest import TOKENS


def auth(scope: str) -> dict[str, str]:
    """The Authorization header of the test token with `scope`."""
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


@pytest.fixture
def client(app: Clampdown) -> Iterator[TestClient]:
    """A client of the REST API; the worker runs while the client is open."""
    with TestClient(create_app(app)) as test_client:
        yield test_client
