"""Undoing one step: when its expiry comes, or early because a person or the detector asked.

The undo goes through the step's own action and target (`Executor.call_undo`). A transient
failure is retried; a permanent one leaves the step in force and says so. When nothing the
remediation holds is left, it ends: `expired` on schedule, `rolled_back` when undone early.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.engine import closing, detector, overrides, planner
from clampdown.engine.safety import CONTAINING
from clampdown.model import RemediationState, StepState
from clampdown.store import jobs, remediations
from clampdown.store.jobs import Job

if TYPE_CHECKING:
    from clampdown.engine.executor import Executor

log = structlog.get_logger("clampdown.engine")
ENGINE = "engine"
_SUCCEEDED = StepState.SUCCEEDED.value


async def run(executor: Executor, job: Job) -> None:
    """Undo the step of an `undo_step` (expiry) or `undo_early` job."""
    step = await executor.db.run_async(lambda conn: _target(conn, job, executor.now()))
    if step is None:
        return
    error, retry_after, transient = await executor.call_undo(job.remediation_id, step)
    await executor.db.run_async(
        lambda conn: _done(executor, conn, job, step, error, transient, retry_after, executor.now())
    )


def _target(conn: Connection, job: Job, now: datetime) -> dict[str, Any] | None:
    step = remediations.get_step(conn, job.remediation_id, job.step_key or "")
    if step is None or step["state"] != _SUCCEEDED:
        jobs.finish(conn, job.id)
        return None
    expires = step["expires_at"]
    if job.kind == planner.UNDO_STEP and expires is not None and expires > now:
        jobs.retry_at(conn, job.id, expires)  # extended since this job was due
        return None
    return step


def _done(
    executor: Executor,
    conn: Connection,
    job: Job,
    step: dict[str, Any],
    error: str,
    transient: bool,
    retry_after: float | None,
    now: datetime,
) -> None:
    rid, key = job.remediation_id, step["key"]
    if not jobs.hold(conn, job, now + executor.lease):
        return
    if error and transient and job.attempts + 1 < executor.config.engine.max_attempts:
        delay = executor.delay(job.attempts + 1, retry_after)
        remediations.record(
            conn,
            rid,
            key,
            step["state"],
            step["state"],
            reason=f"expiry undo: {error}; retry in {delay:.2f}s",
            actor=ENGINE,
            now=now,
        )
        jobs.retry_at(conn, job.id, now + timedelta(seconds=delay), attempt=True)
        executor.due(now + timedelta(seconds=delay))
        return
    jobs.finish(conn, job.id)
    if error:
        # Still in force: say so where operators look, and keep the step as it is.
        log.error("expiry undo failed", remediation=rid, step=key, error=error)
        remediations.update_step(conn, rid, key, error=f"expiry undo failed: {error}")
        remediations.record(
            conn,
            rid,
            key,
            step["state"],
            step["state"],
            reason=f"expiry undo failed; check the target: {error}",
            actor=ENGINE,
            now=now,
        )
        return
    early = job.kind == overrides.UNDO_EARLY
    actor, why = overrides.requester(conn, rid, key) if early else (ENGINE, "")
    if not remediations.update_step(
        conn, rid, key, expect_state=_SUCCEEDED, state=StepState.UNDONE.value
    ):
        return  # another undo of this step got there first
    remediations.record(
        conn,
        rid,
        key,
        _SUCCEEDED,
        StepState.UNDONE.value,
        reason=f"undone early ({why})" if early else "expired: undone on schedule",
        actor=actor,
        now=now,
    )
    steps = remediations.steps(conn, rid)
    if any(_holds(s, early=early) for s in steps):
        return
    if early and detector.is_detector(actor):
        ended = RemediationState.ROLLED_BACK
        reason = "a containment was undone early: " + why.removeprefix(overrides.REQUESTED + ": ")
    elif early:
        ended = RemediationState.ROLLED_BACK
        reason = "a containment was undone early at a person's request"
    else:
        ended = RemediationState.EXPIRED
        reason = "every temporary containment expired and was undone"
    moved = remediations.set_state(
        conn,
        rid,
        from_state=_SUCCEEDED,
        to_state=ended.value,
        reason=reason,
        actor=actor,
        now=now,
    )
    if moved:
        closing.enqueue_if_ended(conn, rid, ended.value, steps, now, executor.config.targets)


def _holds(step: dict[str, Any], *, early: bool) -> bool:
    """Whether a step still holds something in force: a temporary effect, or after an early
    undo also a permanent containment (which no expiry will end)."""
    if step["state"] != _SUCCEEDED:
        return False
    if step["expires_at"] is not None:
        return True
    action = registry.CATALOG.get(step["action"])
    return early and action is not None and action.reversible and step["action"] in CONTAINING
