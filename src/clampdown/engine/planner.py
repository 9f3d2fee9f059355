"""Planning: a stored finding and the playbooks it matches become remediations, steps and jobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from clampdown.errors import ExpressionError
from clampdown.model import Finding, Mode, RemediationState, StepState
from clampdown.playbooks import Playbook
from clampdown.playbooks.schema import ApprovalSpec
from clampdown.store import jobs, ladders, remediations
from clampdown.store.jobs import Job

SYSTEM = "system"
RUN = "run"
"""Drive a remediation: run its pending steps in order, then verify."""
UNDO_STEP = "undo_step"
"""Undo one step whose expiry has come."""
CLOSE = "close"
"""Close what the steps of an ended remediation opened (tickets, pages)."""
APPROVAL_TIMEOUT = "approval_timeout"
"""An approval did not come in time; `step_key` holds what to do (see engine.approvals)."""


@dataclass(frozen=True)
class Planned:
    """What planning did for one playbook."""

    remediation_id: str
    playbook: str
    state: str
    joined: bool
    job: Job | None = None
    """The job that will run it, when it was created leased to a worker of this process."""
    rows: tuple[dict[str, Any], list[dict[str, Any]]] | None = field(default=None, repr=False)
    """The remediation and step rows as written, so that the worker need not read them."""


def plan(
    conn: Connection,
    finding: Finding,
    finding_id: int,
    playbooks: list[Playbook],
    *,
    now: datetime,
    lease: tuple[str, datetime] | None = None,
) -> list[Planned]:
    """Open a remediation per matched playbook, or join the open one of the same group.

    With `lease`, the jobs created are held by that worker (see `jobs.enqueue`).
    """
    view = finding.expression_view()
    out = []
    for playbook in playbooks:
        ctx = playbook.context(view)
        group_key = playbook.group_key_or_fingerprint(view, finding.fingerprint)
        if playbook.group_window:
            open_ = remediations.find_open_group(
                conn, playbook=playbook.name, group_key=group_key, now=now
            )
            if open_ is not None:
                if remediations.join_group(conn, open_["id"], finding_id, now=now):
                    remediations.record(
                        conn,
                        open_["id"],
                        None,
                        open_["state"],
                        open_["state"],
                        reason=f"repeat finding {finding_id} joined the group",
                        actor=SYSTEM,
                        now=now,
                    )
                out.append(Planned(open_["id"], playbook.name, open_["state"], joined=True))
                continue
        out.append(_create(conn, playbook, ctx, finding_id, group_key, now=now, lease=lease))
    return out


def _create(
    conn: Connection,
    playbook: Playbook,
    ctx: dict[str, Any],
    finding_id: int,
    group_key: str,
    *,
    now: datetime,
    lease: tuple[str, datetime] | None,
) -> Planned:
    rid = uuid.uuid4().hex
    ladder = _climb(conn, playbook, ctx, now)
    if ladder is not None:
        ctx = {**ctx, "ladder": ladder}
    dry = playbook.mode is Mode.DRY_RUN
    if dry:
        target = RemediationState.DRY_RUN
        reason = "dry run: steps rendered, nothing executed"
    elif playbook.mode is Mode.APPROVAL:
        target, reason = RemediationState.AWAITING_APPROVAL, "the playbook asks for approval"
    else:
        target, reason = RemediationState.RUNNING, f"{playbook.mode.value} mode"
    # Created directly in its first resting state; both transitions are still recorded.
    row = {
        "id": rid,
        "playbook": playbook.name,
        "mode": playbook.mode.value,
        "state": target.value,
        "finding_id": finding_id,
        "group_key": group_key,
        "group_until": now + playbook.group_window if playbook.group_window else None,
        "finding_count": 1,
        "created_at": now,
        "updated_at": now,
    }
    remediations.create(conn, row)
    remediations.record_path(
        conn,
        rid,
        None,
        [
            (
                RemediationState.PLANNED.value,
                f"finding {finding_id} matched playbook {playbook.name}" + _rung(ladder),
                now,
            ),
            (target.value, reason, now),
        ],
        actor=SYSTEM,
    )
    step_rows = [_step_row(rid, i, s, ctx, dry) for i, s in enumerate(playbook.steps)]
    if ladder is not None:
        for step_row in step_rows:
            step_row["spec"] = {**step_row["spec"], "ladder": ladder}
    remediations.add_steps(conn, step_rows)
    job = None
    if target is RemediationState.AWAITING_APPROVAL:
        _schedule_approval_timeout(conn, rid, playbook.approval, now)
    if target is RemediationState.RUNNING and playbook.steps:
        job = jobs.enqueue(conn, RUN, rid, None, due_at=now, now=now, lease=lease)
    rows = (row, step_rows) if job is not None else None
    return Planned(rid, playbook.name, target.value, joined=False, job=job, rows=rows)


def _climb(
    conn: Connection, playbook: Playbook, ctx: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """One more offense on the playbook's ladder; the rung it reached, as `ladder` sees it."""
    spec = playbook.ladder
    if spec is None:
        return None
    try:
        key = playbook.ladder_key(ctx["finding"])
    except ExpressionError:
        key = ""
    if not key:
        # Nobody to keep a history for: the first rung, and nothing recorded.
        return {"key": "", "level": 0, "rung": spec.rungs[0], "offenses": 1}
    level, offenses = ladders.climb(
        conn, playbook.name, key[:500], decay=spec.decay, top=len(spec.rungs) - 1, now=now
    )
    return {"key": key, "level": level, "rung": spec.rungs[level], "offenses": offenses}


def _rung(ladder: dict[str, Any] | None) -> str:
    if ladder is None:
        return ""
    return f"; ladder rung {ladder['rung']} (offense {ladder['offenses']} of {ladder['key']!r})"


def _schedule_approval_timeout(
    conn: Connection, rid: str, policy: ApprovalSpec | None, now: datetime
) -> None:
    """Write the job that acts when the approval does not come in time."""
    if policy is None or policy.timeout is None:
        return
    then: str = policy.on_timeout
    if then == "escalate":
        then = f"escalate:{int(policy.timeout.total_seconds())}:{policy.escalate_to}"
    jobs.enqueue(conn, APPROVAL_TIMEOUT, rid, then, due_at=now + policy.timeout, now=now)


def _step_row(rid: str, position: int, step: Any, ctx: dict[str, Any], dry: bool) -> dict[str, Any]:
    spec = step.as_spec()
    row: dict[str, Any] = {
        "remediation_id": rid,
        "key": step.id,
        "position": position,
        "action": step.uses,
        "spec": spec,
        "state": StepState.PENDING.value,
        "attempts": 0,
        "idempotency_key": f"{rid}-{position}",
        "params": None,
        "result": None,
        "error": None,
        "expires_at": None,
        "started_at": None,
        "finished_at": None,
    }
    if dry:
        # Show what would have been sent; values that need earlier steps' outputs stay unknown.
        try:
            row["params"] = step.render(ctx)
        except ExpressionError as exc:
            row["error"] = f"not rendered in a dry run: {exc}"
        row["state"] = StepState.SKIPPED.value
    return row


def advance(conn: Connection, rid: str, now: datetime) -> None:
    """Let the engine go on with a remediation (after an approval or a completed task)."""
    if not any(s["state"] == StepState.WAITING.value for s in remediations.steps(conn, rid)):
        jobs.enqueue(conn, RUN, rid, None, due_at=now, now=now)
