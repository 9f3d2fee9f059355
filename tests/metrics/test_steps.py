"""Step metrics as the executor reports them: outcomes, and labels kept to bounded sets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clampdown.actions.contract import ActionResult
from clampdown.actions.registry import CATALOG
from clampdown.metrics.steps import CONTAINING_ACTIONS, StepInstruments, outcome_of
from tests.metrics.conftest import samples, value


@dataclass(frozen=True)
class Outcome:
    result: ActionResult | None = None
    retry: bool = False
    queued: bool = False


OK = Outcome(ActionResult())


def test_containing_actions_are_actions_of_the_catalog() -> None:
    assert set(CATALOG) >= CONTAINING_ACTIONS


@pytest.mark.parametrize(
    ("outcome", "attempts", "expected"),
    [
        (OK, 1, "succeeded"),
        (Outcome(retry=True), 1, "retried"),
        (Outcome(retry=True), 3, "failed"),  # the last attempt allowed
        (Outcome(retry=False), 1, "failed"),
        (Outcome(retry=True, queued=True), 1, None),  # never called: not an attempt
    ],
)
def test_outcome_of_a_call(outcome: Outcome, attempts: int, expected: str | None) -> None:
    assert outcome_of(outcome, attempts=attempts, max_attempts=3) == expected


def step(key: str, action: str, state: str = "running", attempts: int = 1) -> dict[str, Any]:
    return {"key": key, "action": action, "state": state, "attempts": attempts}


def remediation(playbook: str, age: float = 30.0) -> dict[str, Any]:
    return {"playbook": playbook, "created_at": datetime.now(UTC) - timedelta(seconds=age)}


def test_labels_outside_the_loaded_playbooks_and_the_catalog_are_other() -> None:
    registry = CollectorRegistry()
    metrics = StepInstruments(registry, playbooks=["known"])
    block = step("block", "gateway.block")
    metrics.step_ended(remediation("gone"), [block], block, OK, seconds=0.1, max_attempts=3)
    odd = step("odd", "custom.thing")
    metrics.step_ended(remediation("known"), [odd], odd, OK, seconds=0.2, max_attempts=3)
    got = samples(registry.collect())
    assert value(got, "clampdown_time_to_contain_seconds_count", playbook="other") == 1
    assert value(got, "clampdown_steps_total", action="gateway.block", outcome="succeeded") == 1
    assert value(got, "clampdown_steps_total", action="other", outcome="succeeded") == 1
    names = {dict(labels).get("playbook") for (name, labels) in got if "contain" in name}
    assert names == {"other"}


def test_time_to_contain_counts_the_first_containing_success_only() -> None:
    registry = CollectorRegistry()
    metrics = StepInstruments(registry, playbooks=["p"])
    rem = remediation("p", age=30.0)
    block = step("block", "gateway.block", state="succeeded")
    revoke = step("revoke", "credential.revoke")
    notify = step("tell", "notify.send")
    steps = [block, revoke, notify]
    # The block already held: the revoke's success is not a new containment.
    metrics.step_ended(rem, steps, revoke, OK, seconds=0.1, max_attempts=3)
    metrics.step_ended(rem, steps, notify, OK, seconds=0.1, max_attempts=3)
    first = step("block", "gateway.block")
    metrics.step_ended(rem, [first, notify], first, OK, seconds=0.1, max_attempts=3)
    got = samples(registry.collect())
    assert value(got, "clampdown_time_to_contain_seconds_count", playbook="p") == 1
    assert value(got, "clampdown_time_to_contain_seconds_sum", playbook="p") >= 30.0


def test_a_failed_containing_call_is_no_containment() -> None:
    registry = CollectorRegistry()
    metrics = StepInstruments(registry, playbooks=["p"])
    block = step("block", "gateway.block")
    failed = Outcome(retry=False)
    metrics.step_ended(remediation("p"), [block], block, failed, seconds=0.1, max_attempts=3)
    got = samples(registry.collect())
    assert value(got, "clampdown_steps_total", action="gateway.block", outcome="failed") == 1
    assert ("clampdown_time_to_contain_seconds_count", frozenset({("playbook", "p")})) not in got


def test_a_bad_row_is_logged_not_raised() -> None:
    """Counting runs inside the executor's loop: it must never fail the step."""
    registry = CollectorRegistry()
    metrics = StepInstruments(registry, playbooks=[])
    metrics.step_ended({}, [], {"action": "gateway.block"}, OK, seconds=0.1, max_attempts=3)
    counted = [v for (name, _), v in samples(registry.collect()).items() if name.endswith("_total")]
    assert counted == []
