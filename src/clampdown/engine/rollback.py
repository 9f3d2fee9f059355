"""Rollback: after a step with `on_failure: undo_previous` failed, undo the steps before it.

Each earlier step whose effect is in force and can be undone is undone by its own durable
`rollback` job, latest first, with the same undo call as expiry; the last job fails the
remediation, naming what was undone and what could not be.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.model import StepState
from clampdown.store import jobs, remediations
from clampdown.store.jobs import Job

if TYPE_CHECKING:
    from clampdown.engine.executor import Executor

log = structlog.get_logger("clampdown.engine")
ENGINE = "engine"
ROLLBACK = "rollback"
"""Undo one earlier step after a step with `on_failure: undo_previous` failed."""
UNDO_PREVIOUS = "undo_previous"
_SUCCEEDED = StepState.SUCCEEDED.value
_FAILED = StepState.FAILED.value


async def run(executor: Executor, job: Job) -> None:
    """Undo one earlier step of a failed `undo_previous` step, then the next, then end."""
    step = await executor.db.run_async(lambda conn: _target(executor, conn, job, executor.now()))
    if step is None:
        return
    error, retry_after, transient = await executor.call_undo(job.remediation_id, step)
    await executor.db.run_async(
        lambda conn: _done(executor, conn, job, step, error, transient, retry_after, executor.now())
    )


def _target(executor: Executor, conn: Connection, job: Job, now: datetime) -> dict[str, Any] | None:
    step = remediations.get_step(conn, job.remediation_id, job.step_key or "")
    if step is not None and step["state"] == _SUCCEEDED:
        return step
    if step is None:
        jobs.finish(conn, job.id)
    elif jobs.hold(conn, job, now + executor.lease):
        # Its expiry undid it first: go on with the step before it.
        _next(executor, conn, job, step["position"], now)
    return None


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
    if error and transient and job.attempts + 1 < executor.max_attempts(step):
        delay = executor.delay(job.attempts + 1, retry_after)
        reason = f"rollback: {error}; retry in {delay:.2f}s"
        remediations.record(
            conn, rid, key, _SUCCEEDED, _SUCCEEDED, reason=reason, actor=ENGINE, now=now
        )
        jobs.retry_at(conn, job.id, now + timedelta(seconds=delay), attempt=True)
        executor.due(now + timedelta(seconds=delay))
        return
    if error:
        log.error("rollback undo failed", remediation=rid, step=key, error=error)
        remediations.update_step(conn, rid, key, error=f"rollback undo failed: {error}")
        state = _SUCCEEDED
        reason = f"rollback undo failed; still in force, check the target: {error}"
    else:
        remediations.update_step(conn, rid, key, state=StepState.UNDONE.value)
        state, reason = StepState.UNDONE.value, "rolled back: a later step failed"
    remediations.record(conn, rid, key, _SUCCEEDED, state, reason=reason, actor=ENGINE, now=now)
    _next(executor, conn, job, step["position"], now)


def _next(executor: Executor, conn: Connection, job: Job, position: int, now: datetime) -> None:
    """Undo the step before `position`, or end the remediation when none is left."""
    rid = job.remediation_id
    jobs.finish(conn, job.id)
    steps = remediations.steps(conn, rid)
    undo = to_undo(steps, before=position)
    if undo is not None:
        jobs.enqueue(conn, ROLLBACK, rid, undo["key"], due_at=now, now=now)
        executor.due(now)
        return
    failed = next(s for s in reversed(steps) if _rolls_back(s))
    earlier = [s for s in steps if s["position"] < failed["position"]]
    undone = [s["key"] for s in reversed(earlier) if s["state"] == StepState.UNDONE.value]
    kept = [s["key"] for s in earlier if s["state"] == _SUCCEEDED and _reversible(s)]
    reason = f"step {failed['key']} failed: {failed['error']}"
    if undone:
        reason += f"; undone: {', '.join(undone)}"
    if kept:
        reason += f"; could not undo {', '.join(kept)}: still in force, check the target"
    executor.end_failed(conn, rid, reason, steps, now)


def _reversible(step: dict[str, Any]) -> bool:
    action = registry.CATALOG.get(step["action"])
    return action is not None and action.reversible


def _rolls_back(step: dict[str, Any]) -> bool:
    return bool(step["state"] == _FAILED and step["spec"].get("on_failure") == UNDO_PREVIOUS)


def rolling_back(steps: list[dict[str, Any]]) -> bool:
    """True while the earlier steps of a failed `undo_previous` step are being undone."""
    return any(_rolls_back(s) for s in steps)


def to_undo(steps: list[dict[str, Any]], *, before: int) -> dict[str, Any] | None:
    """The latest step before position `before` whose effect is in force and can be undone."""
    earlier = [
        s for s in steps if s["position"] < before and s["state"] == _SUCCEEDED and _reversible(s)
    ]
    return max(earlier, key=lambda s: s["position"], default=None)
