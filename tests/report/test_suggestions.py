"""Each suggestion fires at its threshold, with enough behind it, and not just under."""

from __future__ import annotations

from typing import Any

import pytest

from clampdown.effectiveness.model import Collateral, Durations, Effectiveness, Figures, Group
from clampdown.report import suggestions as s
from clampdown.report.suggestions import Kind, Priority, Suggestion, suggest
from tests.report.conftest import busy_week, effectiveness, playbook

NAME = "block-suspicious-ip"


def kinds(eff: Effectiveness) -> list[Kind]:
    return [found.kind for found in suggest(eff)]


def one(eff: Effectiveness, kind: Kind) -> Suggestion:
    [found] = [x for x in suggest(eff) if x.kind == kind]
    return found


def fires(kind: Kind, **figures: Any) -> bool:
    """Whether `kind` is suggested for a playbook with these figures (remediations given)."""
    return kind in kinds(playbook(NAME, remediations=50, **figures))


# -- never fires ---------------------------------------------------------------------------


def test_a_loaded_playbook_without_remediations_never_fires() -> None:
    eff = effectiveness(
        playbooks=["quiet", NAME],
        by_playbook=[
            Group(key=NAME, figures=Figures(remediations=1)),
            Group(key="quiet", figures=Figures()),
        ],
    )
    found = one(eff, Kind.NEVER_FIRES)
    assert found.playbook == "quiet"
    assert found.priority == Priority.LOW
    assert "Playbook quiet is loaded but opened no remediation" in found.message
    assert "`match.types`" in found.message
    assert "--since 2026-11-20T00:00:00Z --until 2026-11-27T00:00:00Z" in found.message


def test_a_loaded_playbook_missing_from_the_groups_never_fires() -> None:
    assert one(effectiveness(playbooks=["quiet"]), Kind.NEVER_FIRES).playbook == "quiet"


def test_one_remediation_is_enough_to_have_fired() -> None:
    assert Kind.NEVER_FIRES not in kinds(playbook(NAME, remediations=1))


# -- fails often ---------------------------------------------------------------------------


def test_fails_often_at_its_threshold() -> None:
    ended = s.FAILURE_MIN_ENDED
    eff = playbook(
        NAME, remediations=ended, ended=ended, outcomes={"failed": 1}, failure_rate=s.FAILURE_RATE
    )
    found = one(eff, Kind.FAILS_OFTEN)
    assert found.priority == Priority.HIGH
    assert found.playbook == NAME
    assert found.evidence == {"failed": 1, "ended": 5, "failure_rate": 0.2}
    assert f"Playbook {NAME} failed 1 of 5 ended remediations (20%)" in found.message
    assert "`retries`" in found.message
    assert "`on_failure: continue`" in found.message


def test_fails_often_not_just_under_its_thresholds() -> None:
    ended = s.FAILURE_MIN_ENDED
    assert not fires(Kind.FAILS_OFTEN, ended=ended, failure_rate=s.FAILURE_RATE - 0.01)
    assert not fires(Kind.FAILS_OFTEN, ended=ended - 1, failure_rate=1.0)


# -- verification fails --------------------------------------------------------------------


def test_verification_fails_at_its_threshold() -> None:
    ended, rate = s.VERIFICATION_MIN_ENDED, s.VERIFICATION_FAILURE_RATE
    assert fires(Kind.VERIFICATION_FAILS, ended=ended, verification_failure_rate=rate)
    found = one(playbook(NAME, ended=10, verification_failure_rate=0.3), Kind.VERIFICATION_FAILS)
    assert "found the effect missing in 30% of 10 ended remediations" in found.message
    assert "`with.target`" in found.message


def test_verification_fails_not_just_under_its_thresholds() -> None:
    ended, rate = s.VERIFICATION_MIN_ENDED, s.VERIFICATION_FAILURE_RATE
    assert not fires(Kind.VERIFICATION_FAILS, ended=ended, verification_failure_rate=rate - 0.01)
    assert not fires(Kind.VERIFICATION_FAILS, ended=ended - 1, verification_failure_rate=1.0)


# -- blocks recur --------------------------------------------------------------------------


def recurring(**changes: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "contained": 4,
        "contained_closed": s.RECURRENCE_MIN_CLOSED,
        "contained_recurred": 1,
        "contained_recurrence_rate": s.RECURRENCE_RATE,
        "time_to_recur": Durations(count=1, p50=5400.0, p90=5400.0),
    }
    return {**figures, **changes}


def test_blocks_recur_at_its_threshold() -> None:
    found = one(playbook(NAME, **recurring()), Kind.BLOCKS_RECUR)
    assert found.priority == Priority.MEDIUM
    assert "1 of 4 closed remediations that contained (25%) saw the same threat" in found.message
    assert "(half of them within 1h 30m)" in found.message
    assert "`expires`" in found.message
    assert "`ladder`" in found.message
    assert found.evidence["recurrence_rate"] == 0.25


def test_blocks_recur_not_just_under_its_thresholds() -> None:
    under = s.RECURRENCE_RATE - 0.01
    assert not fires(Kind.BLOCKS_RECUR, **recurring(contained_recurrence_rate=under))
    assert not fires(Kind.BLOCKS_RECUR, **recurring(contained_closed=s.RECURRENCE_MIN_CLOSED - 1))


def test_blocks_recur_only_counts_remediations_that_contained() -> None:
    # Notifications that recur say nothing about a block.
    others = {"closed": 10, "recurred": 10, "recurrence_rate": 1.0}
    assert not fires(Kind.BLOCKS_RECUR, **recurring(contained_recurrence_rate=None, **others))


# -- often overridden ----------------------------------------------------------------------


def test_often_overridden_at_its_threshold() -> None:
    eff = playbook(NAME, contained=5, overridden=1, override_rate=s.OVERRIDE_RATE)
    found = one(eff, Kind.OFTEN_OVERRIDDEN)
    assert found.priority == Priority.HIGH
    assert "1 of 5 containments were undone early by a person (20%)" in found.message
    assert "likely false positives" in found.message
    assert "`when`" in found.message
    assert "`mode: approval`" in found.message


def test_often_overridden_not_just_under_its_thresholds() -> None:
    contained, rate = s.OVERRIDE_MIN_CONTAINED, s.OVERRIDE_RATE
    assert fires(Kind.OFTEN_OVERRIDDEN, contained=contained, override_rate=rate)
    assert not fires(Kind.OFTEN_OVERRIDDEN, contained=contained, override_rate=rate - 0.01)
    assert not fires(Kind.OFTEN_OVERRIDDEN, contained=contained - 1, override_rate=1.0)


# -- approvals -----------------------------------------------------------------------------


def test_slow_approvals_at_their_threshold() -> None:
    eff = playbook(
        NAME,
        approvals=4,
        approvals_slow=1,
        approval_wait=Durations(count=4, p50=600.0, p90=4000.0),
    )
    found = one(eff, Kind.APPROVALS_SLOW)
    assert found.priority == Priority.MEDIUM
    assert "of 4 approvals, 1 waited longer than 30m (p90 wait 1h 06m)" in found.message
    assert "`approval.approvers`" in found.message
    assert "`approval.count`" in found.message
    assert found.evidence["slow_share"] == 0.25


def test_slow_approvals_not_just_under_their_threshold() -> None:
    assert not fires(Kind.APPROVALS_SLOW, approvals=5, approvals_slow=1)
    assert not fires(Kind.APPROVALS_SLOW, approvals=0)


def test_any_approval_timeout_is_suggested_first() -> None:
    eff = playbook(NAME, approvals=20, approvals_slow=0, approvals_timed_out=1)
    found = one(eff, Kind.APPROVALS_SLOW)
    assert found.priority == Priority.HIGH
    assert "of 20 approvals, 1 timed out and 0 waited longer than 30m" in found.message
    assert "`on_timeout: escalate`" in found.message


# -- low automation ------------------------------------------------------------------------


def test_low_automation_just_under_its_share() -> None:
    ended = s.AUTOMATION_MIN_ENDED
    eff = playbook(NAME, ended=ended, automatic=4, automatic_share=s.AUTOMATIC_SHARE - 0.01)
    found = one(eff, Kind.LOW_AUTOMATION)
    assert found.priority == Priority.LOW
    assert "only 4 of 10 ended remediations (49%) ran without a person" in found.message
    assert "`mode: automatic`" in found.message


def test_low_automation_not_for_playbooks_that_involve_people_by_design() -> None:
    low = {"ended": s.AUTOMATION_MIN_ENDED, "automatic": 0, "automatic_share": 0.0}
    for mode in ("approval", "guided"):
        eff = playbook(NAME, **low).model_copy(update={"modes": {NAME: mode}})
        assert not [x for x in suggest(eff) if x.kind == Kind.LOW_AUTOMATION]
    automatic = playbook(NAME, **low).model_copy(update={"modes": {NAME: "automatic"}})
    assert one(automatic, Kind.LOW_AUTOMATION)


def test_low_automation_not_at_its_share_nor_with_few_ended() -> None:
    ended = s.AUTOMATION_MIN_ENDED
    assert not fires(Kind.LOW_AUTOMATION, ended=ended, automatic_share=s.AUTOMATIC_SHARE)
    assert not fires(Kind.LOW_AUTOMATION, ended=ended - 1, automatic_share=0.0)


# -- collateral ----------------------------------------------------------------------------


def api(refused_share: float, allowed: int = 80) -> Effectiveness:
    return effectiveness(
        collateral=[
            Collateral(
                api="orders", allowed=allowed, denied=15, throttled=5, refused_share=refused_share
            )
        ]
    )


def test_collateral_at_its_threshold() -> None:
    found = one(api(s.COLLATERAL_REFUSED_SHARE), Kind.COLLATERAL)
    assert found.api == "orders"
    assert found.playbook is None
    assert found.priority == Priority.HIGH
    assert "API orders: 20% of its decisions were refused" in found.message
    assert "(15 denied, 5 throttled, 80 allowed): containments may be" in found.message
    assert "Review the containments scoped to it" in found.message


def test_collateral_not_just_under_its_threshold_nor_without_allowed_traffic() -> None:
    assert Kind.COLLATERAL not in kinds(api(s.COLLATERAL_REFUSED_SHARE - 0.01))
    assert Kind.COLLATERAL not in kinds(api(1.0, allowed=0))


# -- all together --------------------------------------------------------------------------


def test_unknown_rates_suggest_nothing() -> None:
    """A rate of None (nothing to divide) is no evidence, whatever the counts say."""
    assert suggest(playbook(NAME, remediations=100, ended=100, contained=100, closed=100)) == []


def test_most_pressing_first() -> None:
    assert [(x.priority, x.kind) for x in suggest(busy_week())] == [
        (Priority.HIGH, Kind.FAILS_OFTEN),
        (Priority.HIGH, Kind.COLLATERAL),
        (Priority.LOW, Kind.NEVER_FIRES),
    ]


@pytest.mark.parametrize("name", ["a`b", "x\ny"])
def test_names_in_messages_hold_no_backtick_nor_line_break(name: str) -> None:
    """Renderers show `...` as code: a name cannot open or close a code span."""
    [found] = suggest(effectiveness(playbooks=[name]))
    assert found.playbook == name
    assert "a'b" in found.message or "x y" in found.message
    assert found.message.count("`") % 2 == 0
