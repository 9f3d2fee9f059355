"""Decision fixtures: containment rows for the in-memory cache, and the list in a database."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.engine.ports import refresh_decisions
from clampdown.services import Clampdown
from clampdown.store import containments

_ids = itertools.count(1)


def row(
    subject: str,
    *,
    subject_type: str = "ip",
    kind: str = "block",
    scope: str = "*",
    rate: int | None = None,
    period: int | None = None,
    expires_at: datetime | None = None,
    cid: str | None = None,
) -> dict[str, Any]:
    """A `containments` row as the change stream hands it to the cache."""
    return {
        "id": cid or f"c{next(_ids)}",
        "kind": kind,
        "subject_type": subject_type,
        "subject": subject,
        "scope": scope,
        "rate": rate,
        "period_seconds": period,
        "expires_at": expires_at,
        "reason": f"test {kind} of {subject}",
    }


def contain(app: Clampdown, subject: str, **fields: Any) -> str:
    """Write a containment to the database (as an action would) and refresh the app's cache."""
    now = datetime.now(UTC)
    values = {
        "key": f"test-{next(_ids)}",
        "kind": "block",
        "subject_type": "ip",
        "subject": subject,
        "scope": "*",
        "rate": None,
        "period_seconds": None,
        "reason": f"test containment of {subject}",
        "remediation_id": None,
        "created_by": "test",
        "expires_at": now + timedelta(hours=1),
        **fields,
    }
    with app.db.write() as conn:
        cid, inserted = containments.add(conn, values, now=now)
    assert inserted
    refresh_decisions(app.db, app.decisions)
    return cid


def lift(app: Clampdown, cid: str, reason: str = "lifted by the test") -> None:
    """Remove a containment and refresh the app's cache."""
    with app.db.write() as conn:
        assert containments.remove(conn, cid, reason=reason, now=datetime.now(UTC))
    refresh_decisions(app.db, app.decisions)


@pytest.fixture
def api(app: Clampdown) -> Iterator[TestClient]:
    """A client of the REST API without the worker: tests drive the engine themselves."""
    with TestClient(create_app(app, run_worker=False)) as test_client:
        yield test_client
