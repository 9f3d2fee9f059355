"""The store-backed ports actions use: the built-in containment list and guided tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from clampdown.actions.contract import ContainmentSpec, TaskSpec
from clampdown.engine.decisions import DecisionCache
from clampdown.model import JSON
from clampdown.store import containments, memos, tasks
from clampdown.store.db import Database

T = TypeVar("T")


def refresh_decisions(db: Database, cache: DecisionCache, *, limit: int = 10_000) -> int:
    """Bring the in-memory decision cache up to the newest change; returns changes applied."""
    applied = 0
    while True:
        with db.read() as conn:
            changes = containments.changes_since(conn, cache.cursor, limit=limit)
        if not changes:
            return applied
        cache.apply(((c["op"], c) for c in changes), changes[-1]["seq"])
        applied += len(changes)
        if len(changes) < limit:
            return applied


class StoreContainments:
    """ContainmentPort over the database; keeps this process's decision cache current."""

    def __init__(
        self,
        db: Database,
        cache: DecisionCache,
        *,
        actor: str,
        remediation_id: str,
        target: str = containments.BUILTIN,
    ) -> None:
        self._db = db
        self._cache = cache
        self._actor = actor
        self._remediation_id = remediation_id
        self._target = target
        # Only the built-in list is enforced by this process's decision cache.
        self._decides = target == containments.BUILTIN

    async def add(self, spec: ContainmentSpec, *, key: str, expires_at: datetime | None) -> str:
        now = datetime.now(UTC)
        values = {
            "key": key,
            "target": self._target,
            "kind": spec.kind.value,
            "subject_type": spec.subject_type.value,
            "subject": spec.subject,
            "scope": spec.scope,
            "rate": spec.rate,
            "period_seconds": spec.period_seconds,
            "reason": spec.reason,
            "remediation_id": self._remediation_id,
            "created_by": self._actor,
            "expires_at": expires_at,
        }
        cid, created = await self._db.run_async(
            lambda conn: containments.add(conn, values, now=now)
        )
        if created and self._decides:
            # Enforced by this process at once; the stream brings it to the others.
            self._cache.apply([("add", {**values, "id": cid})], self._cache.cursor)
        return cid

    async def remove(self, containment_id: str, *, reason: str) -> bool:
        return await self._change(
            lambda conn, now: containments.remove(conn, containment_id, reason=reason, now=now)
        )

    async def remove_matching(self, spec: ContainmentSpec, *, reason: str) -> list[str]:
        wanted = (spec.kind.value, spec.subject_type.value, spec.subject, spec.scope)

        def lift(conn: Connection, now: datetime) -> list[str]:
            ids = [
                row["id"]
                for row in containments.active(conn, target=self._target)
                if (row["kind"], row["subject_type"], row["subject"], row["scope"]) == wanted
            ]
            for cid in ids:
                containments.remove(conn, cid, reason=reason, now=now)
            return ids

        return await self._change(lift)

    async def _change(self, fn: Callable[[Connection, datetime], T]) -> T:
        result = await self._db.run_async(lambda conn: fn(conn, datetime.now(UTC)))
        if self._decides:
            # Lifting must take effect here at once, not at the next refresh.
            await asyncio.to_thread(refresh_decisions, self._db, self._cache)
        return result

    async def wanted(self, scope: str | None) -> list[ContainmentSpec]:
        def read() -> list[dict[str, Any]]:
            with self._db.read() as conn:
                return containments.active(
                    conn, now=datetime.now(UTC), target=self._target, scope=scope
                )

        rows = await asyncio.to_thread(read)
        return [
            ContainmentSpec(
                kind=row["kind"],
                subject_type=row["subject_type"],
                subject=row["subject"],
                scope=row["scope"],
                rate=row["rate"],
                period_seconds=row["period_seconds"],
                reason=row["reason"],
            )
            for row in rows
        ]

    async def is_active(self, containment_id: str) -> bool:
        def check() -> bool:
            with self._db.read() as conn:
                row = containments.get(conn, containment_id)
            return row is not None and row["removed_at"] is None

        return await asyncio.to_thread(check)


class StoreTasks:
    """TaskPort over the database."""

    def __init__(self, db: Database, *, remediation_id: str, step_key: str) -> None:
        self._db = db
        self._remediation_id = remediation_id
        self._step_key = step_key

    async def create(self, spec: TaskSpec, *, key: str) -> str:
        values = {
            "key": key,
            "remediation_id": self._remediation_id,
            "step_key": self._step_key,
            "title": spec.title,
            "why": spec.why,
            "steps": list(spec.steps),
            "links": list(spec.links),
            "evidence": list(spec.evidence),
            "owner": spec.owner,
            "due_at": spec.due_at,
            "completed_at": None,
            "completed_by": None,
            "note": None,
        }

        def create(conn: Connection) -> str:
            tid, _ = tasks.create(conn, values, now=datetime.now(UTC))
            return tid

        return await self._db.run_async(create)


class StoreMemos:
    """MemoPort over the database, for one step (by its idempotency key)."""

    def __init__(self, db: Database, *, key: str) -> None:
        self._db = db
        self._key = key

    async def first(self, name: str, value: JSON) -> JSON:
        now = datetime.now(UTC)
        kept: JSON = await self._db.run_async(
            lambda conn: memos.first(conn, self._key, name, value, now=now)
        )
        return kept
