"""Each suggestion, from remediation histories built to trigger it, through the measurement."""

from __future__ import annotations

from datetime import timedelta

from clampdown.effectiveness.cases import case_of
from clampdown.effectiveness.measure import summarize
from clampdown.effectiveness.model import Collateral, Effectiveness
from clampdown.report.suggestions import Kind, suggest
from tests.effectiveness.histories import T0, Story, at, automatic_block


def _measure(
    stories: list[Story],
    *,
    modes: dict[str, str] | None = None,
    seen: dict[str, list[float]] | None = None,
    collateral: list[Collateral] | None = None,
) -> Effectiveness:
    names = {s.playbook for s in stories}
    return summarize(
        [case_of(*s.rows()) for s in stories],
        seen={fp: [at(t) for t in times] for fp, times in (seen or {}).items()},
        collateral=collateral or [],
        playbooks=modes or dict.fromkeys(names, "automatic"),
        since=T0 - timedelta(days=1),
        until=T0 + timedelta(days=1),
        approval_wait_limit=timedelta(minutes=30),
        now=at(86_000),
    )


def _kinds(eff: Effectiveness, playbook: str | None = None) -> set[Kind]:
    return {x.kind for x in suggest(eff) if playbook is None or x.playbook == playbook}


def _failed(rid: str, playbook: str, reason: str) -> Story:
    story = Story(rid, playbook=playbook).move(0, "planned", actor="system").move(1, "running")
    story.step("block", "gateway.block", finished=None, state="failed")
    return story.move(2, "failed", reason=reason)


def test_never_fires() -> None:
    eff = _measure([automatic_block()], modes={"block-ip": "automatic", "idle": "automatic"})
    assert Kind.NEVER_FIRES in _kinds(eff, "idle")
    assert Kind.NEVER_FIRES not in _kinds(eff, "block-ip")


def test_fails_often() -> None:
    stories = [_failed(f"f{i}", "flaky", "step block failed: 502") for i in range(5)]
    assert Kind.FAILS_OFTEN in _kinds(_measure(stories), "flaky")
    assert Kind.VERIFICATION_FAILS not in _kinds(_measure(stories), "flaky")


def test_verification_fails() -> None:
    reason = "verification failed: block: not in effect"
    stories = [_failed(f"v{i}", "leaky", reason) for i in range(5)]
    assert Kind.VERIFICATION_FAILS in _kinds(_measure(stories), "leaky")


def test_blocks_recur() -> None:
    stories = [automatic_block(f"b{i}", fingerprint=f"fp{i}") for i in range(4)]
    eff = _measure(stories, seen={"fp0": [600]})  # one of four came back after its close
    assert Kind.BLOCKS_RECUR in _kinds(eff, "block-ip")
    assert Kind.BLOCKS_RECUR not in _kinds(_measure(stories, seen={"fp0": [10]}), "block-ip")


def test_often_overridden() -> None:
    stories = [automatic_block(f"o{i}") for i in range(3)]
    stories[0].step_event(600, "block", "undone", actor="console:alice")
    stories[0].move(600, "rolled_back", actor="console:alice")
    assert Kind.OFTEN_OVERRIDDEN in _kinds(_measure(stories), "block-ip")


def test_approvals_wait_too_long() -> None:
    story = Story("a1", playbook="retire").move(0, "planned", actor="system")
    story.move(0, "awaiting_approval", actor="system").move(2700, "running", actor="token:bob")
    story.move(2701, "succeeded")
    eff = _measure([story], modes={"retire": "approval"})
    assert Kind.APPROVALS_SLOW in _kinds(eff, "retire")
    assert Kind.APPROVALS_SLOW not in _kinds(_measure([automatic_block()]))


def test_approvals_time_out() -> None:
    story = Story("t1", playbook="retire").move(0, "planned", actor="system")
    story.move(0, "awaiting_approval", actor="system").move(600, "rejected", actor="timeout")
    assert Kind.APPROVALS_SLOW in _kinds(_measure([story], modes={"retire": "approval"}))


def test_low_automation_only_for_automatic_playbooks() -> None:
    stories = [automatic_block(f"l{i}") for i in range(10)]
    for story in stories[:6]:  # a person stepped in on six of ten
        story.step_event(600, "block", "undone", actor="console:alice")
        story.move(600, "rolled_back", actor="console:alice")
    assert Kind.LOW_AUTOMATION in _kinds(_measure(stories), "block-ip")
    assert Kind.LOW_AUTOMATION not in _kinds(_measure(stories, modes={"block-ip": "approval"}))


def test_collateral() -> None:
    hit = Collateral(api="orders", allowed=60, denied=30, throttled=10, refused_share=0.4)
    eff = _measure([automatic_block()], collateral=[hit])
    [found] = [x for x in suggest(eff) if x.kind == Kind.COLLATERAL]
    assert "orders" in found.message
