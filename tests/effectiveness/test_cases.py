"""Each moment of a remediation read from its rows: exact values on constructed histories."""

from __future__ import annotations

from clampdown.effectiveness.cases import case_of, mark_recurrence
from tests.effectiveness.histories import Story, at, automatic_block


def test_automatic_block_moments() -> None:
    case = case_of(*automatic_block().rows())
    assert case.detected_at == at(0)
    assert case.acknowledged_at == at(31)
    assert case.contained_at == at(32)
    assert case.closed_at == at(33)
    assert case.automatic is True
    assert case.ended is True
    assert case.targets == ("builtin",)
    assert (case.overridden, case.verification_failed, case.waited_from) == (False, False, None)


def test_detection_time_never_after_receipt() -> None:
    story = automatic_block()
    story.first_seen = 40  # a detector clock ahead of ours
    assert case_of(*story.rows()).detected_at == at(30)
    story.first_seen = None
    assert case_of(*story.rows()).detected_at == at(30)


def test_approved_by_a_person_is_not_automatic_and_waits() -> None:
    story = Story("r2", received=0)
    story.move(0, "planned", actor="system").move(1, "awaiting_approval", actor="system")
    story.move(1, "awaiting_approval", actor="token:bob", reason="approval 1 of 2")
    story.move(2701, "running", actor="token:alice")
    story.step("block", "gateway.block", finished=2702)
    story.move(2703, "succeeded")
    case = case_of(*story.rows())
    assert (case.waited_from, case.waited_until) == (at(1), at(2701))
    assert case.acknowledged_at == at(2701)
    assert case.automatic is False
    assert case.approval_timed_out is False


def test_timeout_rejection_is_closed_but_not_ended() -> None:
    story = Story("r3", received=0)
    story.move(0, "planned", actor="system").move(0, "awaiting_approval", actor="system")
    story.move(900, "rejected", actor="timeout", reason="approval timed out")
    story.step("block", "gateway.block", finished=None, state="skipped")
    case = case_of(*story.rows())
    assert case.approval_timed_out is True
    assert case.closed_at == at(900)
    assert case.acknowledged_at is None  # nobody looked at it: the timeout decided
    assert case.ended is False
    assert case.automatic is False
    assert case.contained_at is None


def test_verification_failure() -> None:
    story = Story("r4", received=0).move(0, "planned", actor="system").move(1, "running")
    story.step("block", "gateway.block", finished=2)
    story.move(2, "verifying").move(3, "failed", reason="verification failed: block: not in effect")
    case = case_of(*story.rows())
    assert case.verification_failed is True
    assert case.automatic is True
    assert case.closed_at == at(3)


def test_undone_early_by_a_person_is_an_override() -> None:
    story = automatic_block()
    story.step_event(600, "block", "succeeded", actor="console:bob")
    story.step_event(601, "block", "undone", actor="console:bob")
    story.move(601, "rolled_back", actor="console:bob")
    story.steps[0]["state"] = "undone"
    case = case_of(*story.rows())
    assert case.overridden is True
    assert case.contained_at == at(32)  # an undone step still contained, for a while
    assert case.closed_at == at(33)
    assert case.automatic is False


def test_expiry_undo_by_the_engine_is_not_an_override() -> None:
    story = automatic_block()
    story.step_event(3600, "block", "undone").move(3600, "expired")
    story.steps[0]["state"] = "undone"
    case = case_of(*story.rows())
    assert (case.overridden, case.automatic, case.state) == (False, True, "expired")


def test_non_containing_steps_do_not_contain() -> None:
    story = Story("r5", received=0).move(0, "planned", actor="system").move(1, "running")
    story.step("ticket", "ticket.create", finished=2, target="snow")
    story.step("tell", "notify.send", finished=3, target="teams")
    story.move(3, "succeeded")
    case = case_of(*story.rows())
    assert case.contained_at is None
    assert case.targets == ("snow", "teams")


def test_recurrence_is_the_next_sighting_after_the_close() -> None:
    cases = [case_of(*automatic_block().rows())]
    still_open = Story("r6", fingerprint="fp-2").move(0, "planned").move(1, "running")
    cases.append(case_of(*still_open.rows()))
    mark_recurrence(cases, {"fp-1": [at(10), at(33), at(400), at(900)], "fp-2": [at(500)]})
    assert cases[0].recurred_at == at(400)
    assert cases[1].recurred_at is None
