"""Store fixtures: a migrated database on each backend, and rows to hang jobs on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection

from clampdown.model import Finding, Kind, Severity
from clampdown.store import findings, remediations
from clampdown.store.db import Database


def make_finding(source_id: str = "alert-1", **fields: Any) -> Finding:
    """A minimal single-IP alert."""
    values: dict[str, Any] = {
        "source": "defender",
        "source_id": source_id,
        "shape": "defender-rest",
        "kind": Kind.ALERT,
        "type": "API_AccessFromSuspiciousIP",
        "title": "Access from a suspicious IP",
        "severity": Severity.HIGH,
        "ips": ["203.0.113.7"],
        **fields,
    }
    return Finding(**values)


def make_remediation(conn: Connection, *, now: datetime | None = None) -> str:
    """A stored finding and a running remediation for it; returns the remediation id."""
    now = now or datetime.now(UTC)
    finding_id, _ = findings.insert_if_new(conn, make_finding(uuid.uuid4().hex), now=now)
    rid = uuid.uuid4().hex
    remediations.create(
        conn,
        {
            "id": rid,
            "playbook": "test",
            "mode": "automatic",
            "state": "running",
            "finding_id": finding_id,
            "group_key": rid,
            "group_until": None,
            "finding_count": 1,
            "created_at": now,
            "updated_at": now,
        },
    )
    return rid


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated, empty database."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()
