"""One remediation's story, reduced to the moments effectiveness is measured from.

`case_of` reads a remediation's rows (its finding, steps and history) into a `Case`; it is
pure, so the measurements can be tested on constructed histories. The definitions:

- detected: the finding's `first_seen` when the detector gave one (and it is not after
  Clampdown received the finding), else when Clampdown received it;
- acknowledged: the response started, i.e. the remediation first moved to `running` (by the
  engine, or by an approval) or it was rejected (by a person or a timeout; not when the
  detector reported the finding closed before anyone approved);
- contained: the first containing step (block, throttle, disable, suspend, revoke, rotate,
  disable identity, revoke sessions) finished with success;
- closed: the remediation first reached an ended state (succeeded, expired, failed,
  rolled back, rejected);
- automatic: it ended and no person appears in its history (only the engine, the planner,
  the safety rails, an approval timeout or the detector's reports acted);
- overridden: a containing step was undone early by a person, or because the detector
  reports its alert Dismissed (a person's false-positive verdict, given in the detector); an
  undo because the alert was Resolved is not an override (see engine.detector);
- approval wait: from entering `awaiting_approval` to leaving it (or to now, still waiting).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clampdown.engine.detector import DISMISSED, is_detector
from clampdown.engine.safety import CONTAINING
from clampdown.model import RemediationState

MACHINES = frozenset({"engine", "system", "timeout", "safety"})
"""Actors that are Clampdown itself; every other actor but the detector's reports
(`detector:<source>`) is a person (token, CLI user, link)."""
ENDED = frozenset({"succeeded", "expired", "failed", "rolled_back"})
"""Ended for real; rejected remediations are counted apart (nothing ran)."""
CLOSED = ENDED | {"rejected"}
_WAITING = RemediationState.AWAITING_APPROVAL.value
_REJECTED = RemediationState.REJECTED.value
_STARTED = frozenset({RemediationState.RUNNING.value, RemediationState.REJECTED.value})
_DONE_STEP = frozenset({"succeeded", "undone"})


@dataclass
class Case:
    """The moments of one remediation that effectiveness is measured from."""

    id: str
    playbook: str
    state: str
    alert_type: str
    fingerprint: str
    title: str
    created_at: datetime
    detected_at: datetime
    targets: tuple[str, ...] = ()
    acknowledged_at: datetime | None = None
    contained_at: datetime | None = None
    closed_at: datetime | None = None
    automatic: bool = False
    verification_failed: bool = False
    overridden: bool = False
    waited_from: datetime | None = None
    waited_until: datetime | None = None
    approval_timed_out: bool = False
    recurred_at: datetime | None = field(default=None)
    """When the same fingerprint was next seen after the close (set by `mark_recurrence`)."""

    @property
    def ended(self) -> bool:
        """Succeeded, expired, failed or rolled back."""
        return self.state in ENDED


def case_of(
    remediation: Mapping[str, Any],
    finding: Mapping[str, Any],
    steps: Iterable[Mapping[str, Any]],
    history: Iterable[Mapping[str, Any]],
) -> Case:
    """Read one remediation's rows into a Case.

    `finding` needs type, fingerprint, title, received_at and first_seen (may be None); each
    step key, action, state, finished_at and target (None when the step names none);
    `history` must be in the order it was written.
    """
    received: datetime = finding["received_at"]
    first_seen: datetime | None = finding.get("first_seen")
    steps = list(steps)
    case = Case(
        id=remediation["id"],
        playbook=remediation["playbook"],
        state=remediation["state"],
        alert_type=finding["type"],
        fingerprint=finding["fingerprint"],
        title=finding["title"],
        created_at=remediation["created_at"],
        detected_at=first_seen if first_seen is not None and first_seen <= received else received,
        targets=tuple(sorted({str(s["target"]) for s in steps if s["target"]})),
    )
    contained = [
        s["finished_at"]
        for s in steps
        if s["action"] in CONTAINING and s["state"] in _DONE_STEP and s["finished_at"]
    ]
    case.contained_at = min(contained, default=None)
    containing_keys = {s["key"] for s in steps if s["action"] in CONTAINING}
    person = False
    for entry in history:
        actor, to_state, at = entry["actor"], entry["to_state"], entry["at"]
        by_detector = is_detector(actor)
        is_person = actor not in MACHINES and not by_detector
        person = person or is_person
        if entry["step_key"] is not None:
            judged = is_person or (by_detector and DISMISSED in str(entry["reason"]))
            if to_state == "undone" and judged and entry["step_key"] in containing_keys:
                case.overridden = True
            continue
        _remediation_moment(case, entry, is_person, at)
    case.automatic = case.ended and not person
    return case


def _remediation_moment(
    case: Case, entry: Mapping[str, Any], is_person: bool, at: datetime
) -> None:
    to_state, from_state = entry["to_state"], entry["from_state"]
    # Closed at the source before anyone approved: nobody acknowledged it.
    # Rejected by the approval timeout or by the detector: nobody looked at it.
    unattended = to_state == _REJECTED and (
        is_detector(entry["actor"]) or entry["actor"] == "timeout"
    )
    if (
        case.acknowledged_at is None
        and to_state in _STARTED
        and to_state != from_state
        and not unattended
    ):
        case.acknowledged_at = at
    if case.closed_at is None and to_state in CLOSED:
        case.closed_at = at
    if to_state == "failed" and str(entry["reason"]).startswith("verification failed"):
        case.verification_failed = True
    if to_state == _WAITING and from_state != _WAITING and case.waited_from is None:
        case.waited_from = at
    if from_state == _WAITING and to_state != _WAITING and case.waited_until is None:
        case.waited_until = at
        case.approval_timed_out = entry["actor"] == "timeout"


def mark_recurrence(cases: Iterable[Case], seen: Mapping[str, list[datetime]]) -> None:
    """Set `recurred_at` from the sorted receive times of findings per fingerprint."""
    for case in cases:
        if case.closed_at is None:
            continue
        times = seen.get(case.fingerprint, [])
        after = bisect_right(times, case.closed_at)
        if after < len(times):
            case.recurred_at = times[after]
