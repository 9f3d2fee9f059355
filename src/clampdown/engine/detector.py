"""What the detector reports later about a finding it raised: fixed, not applicable, closed.

A delivery of a known finding (same source and id) with another status is the detector's
report. Ingest stores the new status and, in the same transaction, calls `follow`: the report
is recorded on every remediation that covers the finding, with the actor `detector:<source>`,
and acted on:

- a recommendation reported Healthy (or NotApplicable) closes each open remediation: its open
  guided tasks are completed by the detector, steps not started are skipped, and the
  remediation succeeds "verified by the detector" (the close job then resolves its tickets and
  pages). One still waiting for approval is rejected: nothing ran and nothing is left to
  approve.
- an alert reported Resolved or Dismissed is only recorded, unless `closing.undo_on` names
  that status: then each active containment of the remediation is undone early through
  `overrides.request_undo` (the undo a person asks for), and a remediation still waiting for
  approval is rejected. A resolved alert does not mean the attacker stopped, hence the default.

A remediation that covers several findings is acted on once every one of them is reported so,
and an alert status that one of the remediation's own `finding.update` steps set is not acted
on. While a worker is calling one of the remediation's steps, acting waits for it in a durable
`detector_report` job, so that the engine's view of the remediation stays true.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import Connection

from clampdown.config import ClosingConfig
from clampdown.engine import approvals, closing, overrides, planner, rollback
from clampdown.errors import ConflictError, NotFoundError
from clampdown.model import JSON, Finding, Kind, RemediationState, StepState
from clampdown.store import containments, findings, jobs, remediations, tasks
from clampdown.store.jobs import Job
from clampdown.targets.settings import TargetConfig

if TYPE_CHECKING:
    from clampdown.engine.executor import Executor

DETECTOR = "detector"
"""Actors `detector:<source>` are the detector's reports (not a person in Clampdown)."""
SETTLE = "detector_report"
"""Act on the detector's report once no step of the remediation is being called; `step_key`
holds the finding's id."""
DISMISSED = "the detector reports the alert Dismissed"
"""How the report of a dismissal starts (effectiveness counts its undos as overrides)."""
RETRY = timedelta(seconds=1)
"""How soon a deferred report looks again whether the worker is done with the remediation."""

_WAITING = RemediationState.AWAITING_APPROVAL.value
_RUNNING = RemediationState.RUNNING.value
_VERIFYING = RemediationState.VERIFYING.value
_SUCCEEDED = RemediationState.SUCCEEDED.value
_DRIVEN = (planner.RUN, rollback.ROLLBACK)


class Outcome(StrEnum):
    """What the detector says became of a finding."""

    FIXED = "fixed"
    NOT_APPLICABLE = "not_applicable"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


_RECOMMENDATION = {
    "healthy": Outcome.FIXED,
    "resolved": Outcome.FIXED,
    "notapplicable": Outcome.NOT_APPLICABLE,
    "not_applicable": Outcome.NOT_APPLICABLE,
}
_ALERT = {
    "resolved": Outcome.RESOLVED,
    "closed": Outcome.RESOLVED,
    "dismissed": Outcome.DISMISSED,
    "suppressed": Outcome.DISMISSED,
}
_SAYS = {
    Outcome.FIXED: "the detector reports the recommendation Healthy",
    Outcome.NOT_APPLICABLE: "the detector reports the recommendation not applicable",
    Outcome.RESOLVED: "the detector reports the alert Resolved",
    Outcome.DISMISSED: DISMISSED,
}
_VERDICT = {
    Outcome.FIXED: "verified by the detector",
    Outcome.NOT_APPLICABLE: "not applicable, according to the detector",
}


@dataclass(frozen=True)
class Report:
    """The detector's word on a finding, as recorded on its remediations."""

    outcome: Outcome
    actor: str
    says: str

    @property
    def fixed(self) -> bool:
        """A recommendation that no longer needs remediating."""
        return self.outcome in (Outcome.FIXED, Outcome.NOT_APPLICABLE)

    def acts(self, settings: ClosingConfig) -> bool:
        """Whether the report changes remediations, or is only recorded."""
        return self.fixed or self.outcome.value in settings.undo_on


# What was done to one remediation.
CLOSED = "closed"
REJECTED = "rejected"
UNDO_REQUESTED = "undo requested"
RECORDED = "recorded"
DEFERRED = "deferred"


@dataclass(frozen=True)
class FollowUp:
    """What a report did to one remediation of its finding."""

    remediation_id: str
    playbook: str
    state: str
    did: str
    """closed, rejected, undo requested, recorded, or deferred (acted on once a step ends)."""

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for the API and --json output."""
        return {
            "id": self.remediation_id,
            "playbook": self.playbook,
            "state": self.state,
            "did": self.did,
        }


def is_detector(actor: str) -> bool:
    """True for the actor of a detector's report."""
    return actor.startswith(DETECTOR + ":")


def report_of(finding: Finding) -> Report | None:
    """The detector's report carried by a finding's status; None for a status that asks nothing."""
    status = finding.status
    if finding.kind is Kind.RECOMMENDATION:
        outcome = _RECOMMENDATION.get(status)
    else:
        outcome = _ALERT.get(status)
    if outcome is None:
        return None
    says = _SAYS[outcome]
    if outcome is Outcome.RESOLVED and _false_positive(finding.raw):
        # Graph and Sentinel close an alert as resolved and say why in a classification.
        outcome, says = Outcome.DISMISSED, f"{DISMISSED} (resolved as a false positive)"
    return Report(outcome, f"{DETECTOR}:{finding.source}", says)


def _false_positive(raw: Mapping[str, JSON]) -> bool:
    incident = raw.get("object")
    places = [raw, raw.get("properties"), incident.get("properties") if _is_map(incident) else None]
    return any(
        isinstance(place, dict)
        and str(place.get("classification") or "").replace("_", "").lower() == "falsepositive"
        for place in places
    )


def _is_map(value: object) -> TypeGuard[dict[str, JSON]]:
    return isinstance(value, dict)


def follow(
    conn: Connection,
    finding_id: int,
    finding: Finding,
    *,
    settings: ClosingConfig,
    targets: Mapping[str, TargetConfig],
    now: datetime,
) -> list[FollowUp]:
    """Record the report of a finding whose status just changed, and act on it."""
    report = report_of(finding)
    if report is None:
        return []
    out = []
    for rid in remediations.of_finding(conn, finding_id):
        busy = _busy(conn, rid, now)
        rem = remediations.get(conn, rid, lock=True)
        if rem is None:
            continue
        acting, note = _decide(conn, rem, finding_id, report, settings)
        remediations.record(
            conn,
            rid,
            None,
            rem["state"],
            rem["state"],
            reason=report.says + note,
            actor=report.actor,
            now=now,
        )
        did, state = RECORDED, rem["state"]
        if acting:
            did, state = _act(conn, rem, report, targets, now, busy=busy)
            if did == DEFERRED:
                jobs.enqueue(conn, SETTLE, rid, str(finding_id), due_at=now + RETRY, now=now)
        out.append(FollowUp(rid, rem["playbook"], state, did))
    return out


async def settle(executor: Executor, job: Job) -> None:
    """Run a `detector_report` job: act on the finding's latest report, or wait once more."""

    def act(conn: Connection) -> bool:
        now = executor.now()
        if not jobs.hold(conn, job, now + executor.lease):
            return False
        finding_id = int(job.step_key or 0)
        busy = _busy(conn, job.remediation_id, now)
        rem = remediations.get(conn, job.remediation_id, lock=True)
        got = findings.get(conn, finding_id)
        # The status may have changed again meanwhile: the latest report counts.
        report = report_of(got[0]) if got is not None else None
        if rem is None or report is None:
            jobs.finish(conn, job.id)
            return False
        acting, _ = _decide(conn, rem, finding_id, report, executor.config.closing)
        targets = executor.config.targets
        did = _act(conn, rem, report, targets, now, busy=busy)[0] if acting else RECORDED
        if did == DEFERRED:
            jobs.retry_at(conn, job.id, now + RETRY)
            executor.due(now + RETRY)
            return False
        jobs.finish(conn, job.id)
        return did != RECORDED

    if await executor.db.run_async(act):
        executor.due(executor.now())


def _busy(conn: Connection, rid: str, now: datetime) -> bool:
    """Whether a worker is driving the remediation. Asked before the remediation is locked:
    the engine locks a job before the remediation, and so must this, or the two could
    deadlock on PostgreSQL."""
    return jobs.in_flight(conn, rid, _DRIVEN, now=now)


def _actionable(state: str, report: Report) -> bool:
    if state in (_WAITING, _RUNNING, _VERIFYING):
        return True
    # An alert's containments are held after the remediation succeeded, until they expire.
    return state == _SUCCEEDED and not report.fixed


def _decide(
    conn: Connection,
    rem: Mapping[str, Any],
    finding_id: int,
    report: Report,
    settings: ClosingConfig,
) -> tuple[bool, str]:
    """(whether to act on the remediation, a note on why not when that is not obvious)."""
    if not report.acts(settings) or not _actionable(rem["state"], report):
        return False, ""
    rid = rem["id"]
    if rem["finding_count"] > 1:
        still_open = [
            fid
            for fid in remediations.finding_ids(conn, rid)
            if fid != finding_id and not _reported_so(conn, fid, settings)
        ]
        if still_open:
            listed = ", ".join(str(fid) for fid in still_open)
            return False, f"; not acted on: finding {listed} of this remediation is still open"
    if not report.fixed:
        own = next(
            (
                s["key"]
                for s in remediations.steps(conn, rid)
                if s["action"] == "finding.update"
                and s["state"] == StepState.SUCCEEDED.value
                and (s["params"] or {}).get("state") == report.outcome.value
            ),
            None,
        )
        if own is not None:
            return False, f"; not acted on: this remediation's step {own} set that status"
    return True, ""


def _reported_so(conn: Connection, finding_id: int, settings: ClosingConfig) -> bool:
    got = findings.get(conn, finding_id)
    report = report_of(got[0]) if got is not None else None
    return report is not None and report.acts(settings)


def _act(
    conn: Connection,
    rem: Mapping[str, Any],
    report: Report,
    targets: Mapping[str, TargetConfig],
    now: datetime,
    *,
    busy: bool,
) -> tuple[str, str]:
    """Do what the report asks of one remediation; returns (what was done, its state now)."""
    rid, state = rem["id"], rem["state"]
    if state == _WAITING:
        if report.fixed:
            why = f"resolved at the source before approval ({report.says}); nothing to approve"
        else:
            why = f"{report.says} before approval; nothing to contain"
        approvals.reject(conn, rid, actor=report.actor, reason=why, now=now)
        return REJECTED, RemediationState.REJECTED.value
    if state in (_RUNNING, _VERIFYING) and busy:
        return DEFERRED, state
    if report.fixed:
        return _close(conn, rid, state, report, targets, now)
    return _undo(conn, rid, state, report, now)


def _close(
    conn: Connection,
    rid: str,
    state: str,
    report: Report,
    targets: Mapping[str, TargetConfig],
    now: datetime,
) -> tuple[str, str]:
    """Complete the open tasks, skip what did not start, and succeed as verified."""
    for task in tasks.open_of(conn, rid):
        tasks.complete(conn, task["id"], by=report.actor, note=report.says, now=now)
    steps = remediations.steps(conn, rid)
    for step in steps:
        if step["state"] == StepState.WAITING.value:
            to, why = StepState.SUCCEEDED.value, f"task done: {report.says}"
        elif step["state"] == StepState.PENDING.value:
            to, why = StepState.SKIPPED.value, f"not needed: {report.says}"
        else:
            continue
        remediations.update_step(
            conn, rid, step["key"], expect_state=step["state"], state=to, finished_at=now
        )
        remediations.record(
            conn, rid, step["key"], step["state"], to, reason=why, actor=report.actor, now=now
        )
        step["state"] = to
    verdict = _VERDICT[report.outcome]
    if not remediations.move(conn, rid, state, [(_SUCCEEDED, verdict, now)], actor=report.actor):
        return RECORDED, state
    closing.enqueue_if_ended(conn, rid, _SUCCEEDED, steps, now, targets)
    return CLOSED, _SUCCEEDED


def _undo(conn: Connection, rid: str, state: str, report: Report, now: datetime) -> tuple[str, str]:
    """Ask for the early undo of every containment the remediation holds."""
    requested = 0
    for row in containments.held_by(conn, rid):
        try:
            overrides.request_undo(conn, row["id"], actor=report.actor, reason=report.says, now=now)
        except (ConflictError, NotFoundError) as exc:
            remediations.record(
                conn,
                rid,
                None,
                state,
                state,
                reason=f"containment {row['id']} not undone: {exc}",
                actor=report.actor,
                now=now,
            )
            continue
        requested += 1
    return (UNDO_REQUESTED if requested else RECORDED), state
