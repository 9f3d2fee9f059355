"""Figures over constructed cases: every measurement with its exact expected value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clampdown.effectiveness.cases import Case, case_of, mark_recurrence
from clampdown.effectiveness.figures import durations, figures, groups, recurring, timeline
from clampdown.effectiveness.model import Durations
from tests.effectiveness.histories import T0, Story, at, automatic_block

LIMIT = timedelta(minutes=30)
NOW = at(10_000)


def _slow_approval() -> Story:
    story = Story("b", received=0, playbook="retire-endpoint", alert_type="unused")
    story.move(0, "planned", actor="system").move(1, "awaiting_approval", actor="system")
    story.move(2701, "running", actor="token:alice")
    story.step("disable", "gateway.disable_endpoint", finished=2702, target="apim")
    return story.move(2703, "succeeded")


def _verification_failure() -> Story:
    story = Story("c", received=0).move(0, "planned", actor="system").move(1, "running")
    story.step("block", "gateway.block", finished=2)
    return story.move(3, "failed", reason="verification failed: block: not in effect")


def _overridden() -> Story:
    story = automatic_block("d")
    story.step_event(600, "block", "undone", actor="console:bob")
    return story.move(601, "rolled_back", actor="console:bob")


def _timed_out() -> Story:
    story = Story("e", received=0).move(0, "planned", actor="system")
    story.move(0, "awaiting_approval", actor="system")
    return story.move(900, "rejected", actor="timeout")


def _dry_run() -> Story:
    return Story("f", received=0, created=5).move(5, "dry_run", actor="system")


def _cases() -> list[Case]:
    stories = [
        automatic_block("a"),
        _slow_approval(),
        _verification_failure(),
        _overridden(),
        _timed_out(),
        _dry_run(),
    ]
    cases = [case_of(*s.rows()) for s in stories]
    mark_recurrence(cases, {"fp-1": [at(400)]})
    return cases


def test_durations_use_nearest_rank() -> None:
    assert durations([]) == Durations()
    assert durations([5.0, 1.0, 3.0, 2.0]) == Durations(count=4, mean=2.75, p50=2, p90=5, max=5)


def test_every_figure_of_a_mixed_history() -> None:
    f = figures(_cases(), now=NOW, approval_limit=LIMIT)
    assert f.remediations == 6
    assert f.open == 0
    assert f.outcomes == {
        "dry_run": 1,
        "failed": 1,
        "rejected": 1,
        "rolled_back": 1,
        "succeeded": 2,
    }
    assert (f.ended, f.automatic, f.automatic_share) == (4, 2, 0.5)
    assert (f.success_rate, f.failure_rate, f.verification_failure_rate) == (0.5, 0.25, 0.25)
    # E was rejected by its timeout: never acknowledged.
    assert f.time_to_acknowledge == Durations(count=4, mean=691, p50=31, p90=2701, max=2701)
    assert f.time_to_contain == Durations(count=4, mean=692, p50=32, p90=2702, max=2702)
    assert f.time_to_close == Durations(count=5, mean=734.4, p50=33, p90=2703, max=2703)
    assert (f.contained, f.overridden, f.override_rate) == (4, 1, 0.25)
    assert (f.closed, f.recurred, f.recurrence_rate) == (5, 3, 0.6)
    assert f.time_to_recur == Durations(count=3, mean=377, p50=367, p90=397, max=397)
    # E (rejected by timeout) never contained: blocks that came back are A, C and D of A-D.
    assert (f.contained_closed, f.contained_recurred, f.contained_recurrence_rate) == (4, 3, 0.75)
    assert (f.approvals, f.approvals_slow, f.approvals_timed_out) == (2, 1, 1)
    assert f.approval_wait == Durations(count=2, mean=1800, p50=900, p90=2700, max=2700)


def test_a_pending_approval_waits_until_now() -> None:
    story = Story("w", received=0).move(0, "planned", actor="system")
    story.move(0, "awaiting_approval", actor="system")
    f = figures([case_of(*story.rows())], now=at(3600), approval_limit=LIMIT)
    assert (f.open, f.approvals, f.approvals_slow) == (1, 1, 1)
    assert f.approval_wait.max == 3600
    assert f.automatic_share is None  # nothing ended: no rate, rather than a misleading 0


def test_groups_per_playbook_target_and_type() -> None:
    cases = _cases()
    by_playbook = groups(
        cases,
        lambda c: [c.playbook],
        now=NOW,
        approval_limit=LIMIT,
        include=["block-ip", "never-fires"],
    )
    assert [(g.key, g.figures.remediations) for g in by_playbook] == [
        ("block-ip", 5),
        ("never-fires", 0),
        ("retire-endpoint", 1),
    ]
    by_target = groups(cases, lambda c: c.targets, now=NOW, approval_limit=LIMIT)
    assert [(g.key, g.figures.contained) for g in by_target] == [("apim", 1), ("builtin", 3)]
    by_type = groups(cases, lambda c: [c.alert_type], now=NOW, approval_limit=LIMIT)
    assert [(g.key, g.figures.remediations) for g in by_type] == [
        ("API_AccessFromSuspiciousIP", 5),
        ("unused", 1),
    ]


def test_timeline_buckets_by_opening_time() -> None:
    late = automatic_block("late")
    late.created = 2 * 3600 + 10
    cases = [*_cases(), case_of(*late.rows())]
    buckets = timeline(
        cases,
        since=T0,
        until=T0 + timedelta(hours=3),
        step=timedelta(hours=1),
        now=NOW,
        approval_limit=LIMIT,
    )
    assert [(b.start, b.figures.remediations) for b in buckets] == [
        (T0, 6),
        (T0 + timedelta(hours=1), 0),
        (T0 + timedelta(hours=2), 1),
    ]


def test_timeline_starts_on_a_whole_period() -> None:
    buckets = timeline(
        _cases(),
        since=T0 + timedelta(minutes=20),
        until=T0 + timedelta(hours=2),
        step=timedelta(hours=1),
        now=NOW,
        approval_limit=LIMIT,
    )
    assert [b.start for b in buckets] == [T0, T0 + timedelta(hours=1)]


def test_recurring_threats_most_first() -> None:
    other = automatic_block("x", fingerprint="fp-2", title="<b>another</b>")
    cases = [case_of(*automatic_block("a").rows()), case_of(*other.rows())]
    seen = {"fp-1": [at(100)], "fp-2": [at(50), at(60), at(70)]}
    mark_recurrence(cases, seen)
    found = recurring(cases, seen)
    assert [(r.fingerprint, r.recurrences, r.first_after_seconds) for r in found] == [
        ("fp-2", 3, 17),
        ("fp-1", 1, 67),
    ]
    assert found[0].title == "<b>another</b>"  # data stays data; renderers escape it
    assert found[0].last_seen == at(70)


@pytest.mark.parametrize("top", [1, 2])
def test_recurring_is_capped(top: int) -> None:
    cases = [case_of(*automatic_block(f"r{i}", fingerprint=f"fp{i}").rows()) for i in range(3)]
    seen = {f"fp{i}": [at(100)] for i in range(3)}
    mark_recurrence(cases, seen)
    assert len(recurring(cases, seen, top=top)) == top
