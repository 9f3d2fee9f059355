"""Effectiveness reads the detector's reports: not a person, and a dismissal is an override."""

from __future__ import annotations

from clampdown.effectiveness.cases import case_of
from clampdown.engine.detector import DISMISSED
from tests.effectiveness.histories import Story, at

DETECTOR = "detector:defender"


def _undone_by_detector(says: str) -> Story:
    story = Story("r1", received=0)
    story.move(0, "planned", actor="system").move(0, "running", actor="system")
    story.step("block", "gateway.block", finished=1, state="undone")
    story.move(2, "verifying").move(2, "succeeded", reason="verified")
    story.move(60, "succeeded", actor=DETECTOR, reason=says)
    story.history.append(
        {
            "step_key": "block",
            "at": at(61),
            "from_state": "succeeded",
            "to_state": "undone",
            "reason": f"undone early (undo requested: {says})",
            "actor": DETECTOR,
        }
    )
    story.move(61, "rolled_back", actor=DETECTOR, reason=f"a containment was undone early: {says}")
    return story


def test_an_undo_for_a_dismissal_is_an_override_yet_automatic() -> None:
    case = case_of(*_undone_by_detector(DISMISSED).rows())
    assert case.overridden is True
    assert case.automatic is True
    assert case.closed_at == at(2)


def test_an_undo_for_a_resolution_is_no_override() -> None:
    case = case_of(*_undone_by_detector("the detector reports the alert Resolved").rows())
    assert case.overridden is False
    assert case.automatic is True


def test_closed_at_the_source_before_approval_was_never_acknowledged() -> None:
    story = Story("r2", received=0)
    story.move(0, "planned", actor="system").move(0, "awaiting_approval", actor="system")
    story.move(900, "awaiting_approval", actor=DETECTOR, reason="the detector reports ...")
    story.move(900, "rejected", actor=DETECTOR, reason="rejected: resolved at the source")
    story.step("disable", "gateway.disable_endpoint", finished=None, state="skipped")
    case = case_of(*story.rows())
    assert case.acknowledged_at is None
    assert (case.closed_at, case.waited_until) == (at(900), at(900))
    assert case.automatic is False  # rejected: it never ended for real
