"""Closing: when a remediation ends, the steps that opened something close it.

A ticket is resolved and a page is resolved once the remediation has ended: failed, expired,
or succeeded with no temporary containment still held (then it ends at expiry instead). The
CLOSE job is written in the same transaction as the state that ends the remediation, so a
crash cannot lose it; each step records that it was closed, so a retry closes the rest only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.actions.contract import ActionResult, Closing
from clampdown.engine import planner
from clampdown.engine.briefing import brief
from clampdown.errors import ActionError, ConfigError, TransientError
from clampdown.model import RemediationState, StepState
from clampdown.store import findings, jobs, remediations
from clampdown.store.jobs import Job
from clampdown.targets.settings import TargetConfig

if TYPE_CHECKING:
    from clampdown.engine.executor import Executor

log = structlog.get_logger("clampdown.engine")
ENGINE = "engine"

_OPENED = (StepState.SUCCEEDED.value, StepState.UNDONE.value)


def ended(state: str, steps: list[dict[str, Any]], now: datetime) -> bool:
    """True when nothing more will happen to the remediation's effects."""
    if state in (
        RemediationState.FAILED.value,
        RemediationState.EXPIRED.value,
        RemediationState.ROLLED_BACK.value,
    ):
        return True
    if state != RemediationState.SUCCEEDED.value:
        return False
    return not any(
        s["state"] == StepState.SUCCEEDED.value
        and s["expires_at"] is not None
        and s["expires_at"] > now
        for s in steps
    )


def to_close(
    steps: list[dict[str, Any]], targets: Mapping[str, TargetConfig]
) -> list[dict[str, Any]]:
    """Steps whose action opened something that is not closed yet."""
    return [
        s
        for s in steps
        if s["state"] in _OPENED
        and (action := registry.CATALOG.get(s["action"])) is not None
        and (target := targets.get(str((s["params"] or {}).get("target", "")))) is not None
        and action.closes_on(target.type)
        and not (s["result"] or {}).get("closed")
    ]


def enqueue_if_ended(
    conn: Connection,
    rid: str,
    state: str,
    steps: list[dict[str, Any]],
    now: datetime,
    targets: Mapping[str, TargetConfig],
) -> bool:
    """Schedule the CLOSE job when the remediation has ended and something is open."""
    if not ended(state, steps, now) or not to_close(steps, targets):
        return False
    jobs.enqueue(conn, planner.CLOSE, rid, None, due_at=now, now=now)
    return True


async def close(executor: Executor, job: Job) -> None:
    """Run a CLOSE job: close every open step, retrying transient failures."""
    loaded = await executor.db.run_async(lambda conn: _load(conn, job))
    if loaded is None:
        return
    remediation, steps, finding = loaded
    briefing = brief(remediation, steps, finding.expression_view(), executor.links)
    closing = Closing(remediation["state"], _last_reason(remediation), briefing)
    outcomes: list[tuple[dict[str, Any], str, bool, float | None]] = []
    for step in to_close(steps, executor.config.targets):
        action = registry.get(step["action"])
        error, transient, retry_after = "", False, None
        try:
            params = action.params.model_validate(step["params"])
            result = ActionResult.model_validate(step["result"])
            ctx = executor.action_context(job.remediation_id, step, params, briefing)
            await action.close(params, result, ctx, closing)
        except TransientError as exc:
            error, transient, retry_after = str(exc), True, exc.retry_after
        except (ActionError, ConfigError, ValidationError) as exc:
            error = str(exc)
        outcomes.append((step, error, transient, retry_after))
    await executor.db.run_async(lambda conn: _record(executor, conn, job, outcomes))


def _load(conn: Connection, job: Job) -> tuple[dict[str, Any], list[dict[str, Any]], Any] | None:
    rem = remediations.get(conn, job.remediation_id)
    got = findings.get(conn, rem["finding_id"]) if rem else None
    if rem is None or got is None:
        jobs.finish(conn, job.id)
        return None
    ended_why = next(
        (
            h["reason"]
            for h in reversed(remediations.history(conn, rem["id"]))
            if h["step_key"] is None
        ),
        rem["state"],
    )
    return {**rem, "reason": ended_why}, remediations.steps(conn, rem["id"]), got[0]


def _last_reason(remediation: dict[str, Any]) -> str:
    return str(remediation["reason"])


def _record(
    executor: Executor,
    conn: Connection,
    job: Job,
    outcomes: list[tuple[dict[str, Any], str, bool, float | None]],
) -> None:
    now = datetime.now(UTC)
    rid = job.remediation_id
    if not jobs.hold(conn, job, now + executor.lease):
        return
    retry: float | None = None
    for step, error, transient, retry_after in outcomes:
        state = step["state"]
        if not error:
            result = {**(step["result"] or {}), "closed": True}
            remediations.update_step(conn, rid, step["key"], result=result)
            reason = "closed: the remediation ended"
        elif transient and job.attempts + 1 < executor.config.engine.max_attempts:
            delay = executor.delay(job.attempts + 1, retry_after)
            retry = delay if retry is None else min(retry, delay)
            reason = f"closing: {error}; retry in {delay:.2f}s"
        else:
            log.error("closing failed", remediation=rid, step=step["key"], error=error)
            remediations.update_step(conn, rid, step["key"], error=f"closing failed: {error}")
            reason = f"closing failed: {error}"
        remediations.record(
            conn, rid, step["key"], state, state, reason=reason, actor=ENGINE, now=now
        )
    if retry is None:
        jobs.finish(conn, job.id)
        return
    jobs.retry_at(conn, job.id, now + timedelta(seconds=retry), attempt=True)
    executor.due(now + timedelta(seconds=retry))
