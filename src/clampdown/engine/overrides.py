"""A person overrides a containment: undoes it before its expiry, or extends it.

Both act on the step that made the containment (its key is the step's idempotency key), so
the undo goes through the same action, target and verification as an expiry would, and the
history says who asked. Undoing early is a durable job (`UNDO_EARLY`) run by the worker; its
request is recorded first, so a crash between the two loses nothing. An early undo by a person
is what effectiveness counts as an override: a likely false positive. The detector's report of
an alert closed at the source asks for the same undo (engine.detector, `closing.undo_on`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.engine import planner
from clampdown.errors import ConflictError, InputError, NotFoundError
from clampdown.model import StepState
from clampdown.store import containments, jobs, remediations

UNDO_EARLY = "undo_early"
"""Undo one step now because a person asked; the request is the step's latest history entry."""
REQUESTED = "undo requested"
"""How a person's undo request starts in the step's history."""
_SUCCEEDED = StepState.SUCCEEDED.value


def request_undo(
    conn: Connection, containment_id: str, *, actor: str, reason: str, now: datetime
) -> dict[str, Any]:
    """Record a person's request to lift a containment now and queue its undo.

    A containment that no remediation owns is lifted at once. Returns the containment.
    """
    row = _active(conn, containment_id)
    step = _owning_step(conn, row)
    why = f"{REQUESTED}: {reason}" if reason else REQUESTED
    if step is None:
        if row["target"] != containments.BUILTIN:
            # Only a step knows how to lift it on its gateway.
            raise ConflictError(f"containment {containment_id} has no step to undo it through")
        containments.remove(conn, containment_id, reason=f"{why} by {actor}", now=now)
        return _get(conn, containment_id)
    rid = step["remediation_id"]
    if jobs.exists(conn, UNDO_EARLY, rid, step["key"]):
        raise ConflictError(f"an undo of containment {containment_id} was already requested")
    remediations.record(
        conn, rid, step["key"], _SUCCEEDED, _SUCCEEDED, reason=why, actor=actor, now=now
    )
    jobs.enqueue(conn, UNDO_EARLY, rid, step["key"], due_at=now, now=now)
    return row


def extend(
    conn: Connection,
    containment_id: str,
    *,
    until: datetime,
    actor: str,
    note: str,
    now: datetime,
) -> dict[str, Any]:
    """Move a temporary containment's expiry to `until` (later or earlier, but in the future)."""
    row = _active(conn, containment_id)
    if row["expires_at"] is None:
        raise ConflictError(f"containment {containment_id} is permanent; undo it instead")
    if until <= now:
        raise InputError(f"the new expiry {until.isoformat()} is not in the future")
    if row["expires_at"] <= now:
        raise ConflictError(f"containment {containment_id} has expired and is being lifted")
    step = _owning_step(conn, row)
    if step is not None:
        rid, key = step["remediation_id"], step["key"]
        # An undo under way would lift it whatever the new expiry says: refuse, not pretend.
        if jobs.exists(conn, UNDO_EARLY, rid, key) or jobs.in_flight(
            conn, rid, (planner.UNDO_STEP,), now=now
        ):
            raise ConflictError(f"containment {containment_id} is being lifted")
    containments.set_expiry(conn, containment_id, until, now=now)
    if step is not None:
        remediations.update_step(conn, rid, key, expires_at=until)
        jobs.reschedule(conn, planner.UNDO_STEP, rid, key, due_at=until)
        suffix = f": {note}" if note else ""
        remediations.record(
            conn,
            rid,
            key,
            _SUCCEEDED,
            _SUCCEEDED,
            reason=f"expiry moved from {row['expires_at'].isoformat()} to "
            f"{until.isoformat()}{suffix}",
            actor=actor,
            now=now,
        )
    return _get(conn, containment_id)


def requester(conn: Connection, remediation_id: str, step_key: str) -> tuple[str, str]:
    """(actor, reason) of the latest undo request of a step."""
    for entry in reversed(remediations.history(conn, remediation_id)):
        if entry["step_key"] == step_key and entry["reason"].startswith(REQUESTED):
            return entry["actor"], entry["reason"]
    return "unknown", REQUESTED


def _active(conn: Connection, containment_id: str) -> dict[str, Any]:
    row = _get(conn, containment_id)
    if row["removed_at"] is not None:
        raise ConflictError(f"containment {containment_id} was already lifted")
    return row


def _get(conn: Connection, containment_id: str) -> dict[str, Any]:
    row = containments.get(conn, containment_id)
    if row is None:
        raise NotFoundError(f"no containment {containment_id}")
    return row


def _owning_step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
    if row["remediation_id"] is None:
        return None
    step = remediations.step_by_idempotency_key(conn, row["key"])
    if step is None:
        return None
    if not registry.get(step["action"]).reversible:
        raise ConflictError(f"{step['action']} cannot be undone")
    if step["state"] != _SUCCEEDED:
        raise ConflictError(
            f"containment {row['id']} belongs to step {step['key']} of remediation "
            f"{step['remediation_id']}, which is {step['state']}, not in force"
        )
    return step
