"""Approvals with a policy: who may approve, how many must, and what a timeout does.

A playbook's `approval` names its approvers (token or user names; none: anyone with the
approve scope), how many distinct approvals start the remediation, and what happens when they
do not come in time: reject, approve, or escalate (tell another channel, wait as long again,
then reject). The timeout is a durable job the planner writes with the remediation; what it
will do is kept in the job itself (`step_key`), so a policy edited later does not change a
waiting one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection

from clampdown.engine import planner
from clampdown.errors import ConflictError, ForbiddenError, NotFoundError
from clampdown.model import RemediationState, StepState
from clampdown.playbooks.schema import ApprovalSpec
from clampdown.store import jobs, remediations
from clampdown.store.jobs import Job

if TYPE_CHECKING:
    from clampdown.engine.executor import Executor

log = structlog.get_logger("clampdown.engine")
TIMEOUT = "timeout"
"""The actor of what a timeout decides."""
_WAITING = RemediationState.AWAITING_APPROVAL.value
_VOTE = "approval "


def allowed(policy: ApprovalSpec | None, actor: str) -> bool:
    """Whether `actor` (e.g. "token:alice", "cli:bob", "link:approve") may approve."""
    if policy is None or not policy.approvers:
        return True
    name = actor.split(":", 1)[-1]
    return any(who in (actor, name) for who in policy.approvers)


def approve(
    conn: Connection,
    rid: str,
    policy: ApprovalSpec | None,
    *,
    actor: str,
    note: str,
    now: datetime,
) -> bool:
    """Count one approval; True when it was the last one needed and the remediation runs."""
    _expect_waiting(conn, rid)
    if not allowed(policy, actor):
        raise ForbiddenError(f"{actor} is not one of the approvers of remediation {rid}")
    needed = policy.count if policy else 1
    earlier = [
        h["actor"]
        for h in remediations.history(conn, rid)
        if h["step_key"] is None
        and h["from_state"] == _WAITING
        and h["to_state"] == _WAITING
        and h["reason"].startswith(_VOTE)
    ]
    if actor in earlier:
        raise ConflictError(f"{actor} already approved remediation {rid}")
    count = len(earlier) + 1
    suffix = f": {note}" if note else ""
    if count < needed:
        reason = f"{_VOTE}{count} of {needed}{suffix}"
        remediations.record(
            conn, rid, None, _WAITING, _WAITING, reason=reason, actor=actor, now=now
        )
        return False
    by = f" ({count} of {needed})" if needed > 1 else ""
    remediations.set_state(
        conn,
        rid,
        from_state=_WAITING,
        to_state=RemediationState.RUNNING.value,
        reason=f"approved{by}{suffix}",
        actor=actor,
        now=now,
    )
    planner.advance(conn, rid, now)
    return True


def reject(conn: Connection, rid: str, *, actor: str, reason: str, now: datetime) -> None:
    """Refuse a waiting remediation: its steps are skipped and nothing runs."""
    _expect_waiting(conn, rid)
    for step in remediations.steps(conn, rid):
        remediations.update_step(conn, rid, step["key"], state=StepState.SKIPPED.value)
    remediations.set_state(
        conn,
        rid,
        from_state=_WAITING,
        to_state=RemediationState.REJECTED.value,
        reason="rejected" + (f": {reason}" if reason else ""),
        actor=actor,
        now=now,
    )


def _expect_waiting(conn: Connection, rid: str) -> None:
    rem = remediations.get(conn, rid, lock=True)
    if rem is None:
        raise NotFoundError(f"no remediation {rid}")
    if rem["state"] != _WAITING:
        raise ConflictError(f"remediation {rid} is {rem['state']}, not {_WAITING}")


async def on_timeout(executor: Executor, job: Job) -> None:
    """Do what the policy says now that the approval did not come in time."""
    then = job.step_key or "reject"
    escalate_to: str | None = None
    if then.startswith("escalate:"):
        _, seconds, escalate_to = then.split(":", 2)
        wait = timedelta(seconds=int(seconds))

    def decide(conn: Connection) -> dict[str, Any] | None:
        now = executor.now()
        rem = remediations.get(conn, job.remediation_id, lock=True)
        jobs.finish(conn, job.id)
        if rem is None or rem["state"] != _WAITING:
            return None  # decided meanwhile
        if then == "approve":
            remediations.set_state(
                conn,
                rem["id"],
                from_state=_WAITING,
                to_state=RemediationState.RUNNING.value,
                reason="approved: no decision before the approval timeout",
                actor=TIMEOUT,
                now=now,
            )
            planner.advance(conn, rem["id"], now)
        elif escalate_to is not None:
            reason = f"approval timed out: escalated to {escalate_to}"
            remediations.record(
                conn, rem["id"], None, _WAITING, _WAITING, reason=reason, actor=TIMEOUT, now=now
            )
            jobs.enqueue(
                conn, planner.APPROVAL_TIMEOUT, rem["id"], "reject", due_at=now + wait, now=now
            )
            executor.due(now + wait)
        else:
            reject(
                conn,
                rem["id"],
                actor=TIMEOUT,
                reason="no decision before the approval timeout",
                now=now,
            )
        return rem

    rem = await executor.db.run_async(decide)
    if rem is not None and then == "approve":
        executor.due(executor.now())
    if rem is not None and escalate_to is not None:
        await executor.tell(
            rem,
            escalate_to,
            title="Approval needed: escalated",
            text=f"Remediation {rem['id']} ({rem['playbook']}) waited for approval past its "
            "timeout. Approve or reject it; without a decision it is rejected at the next "
            "timeout.",
        )
