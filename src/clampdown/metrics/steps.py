"""What the executor reports about step calls: outcomes, durations and time to contain.

The executor calls `step_ended` once per action call, right after the call returns and before
its outcome is recorded. `StepMetrics` (the default) records nothing, for CLI runs and tests;
`StepInstruments` feeds Prometheus instruments in an app's registry.

Labels are bounded: `action` is an action of the catalog (actions/registry.py), `outcome` one of
succeeded, failed or retried, `playbook` a playbook loaded when the app started; anything
else is reported as "other" (labels.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from clampdown.actions.contract import ActionResult
from clampdown.actions.registry import CATALOG
from clampdown.engine.safety import CONTAINING
from clampdown.metrics.labels import Bounded
from clampdown.model import StepState

CONTAINING_ACTIONS = CONTAINING
"""Actions whose first success in a remediation ends its time to contain."""

SUCCEEDED = "succeeded"
FAILED = "failed"
RETRIED = "retried"
OUTCOMES = (SUCCEEDED, FAILED, RETRIED)

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTAIN_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip
_HELD = (StepState.SUCCEEDED.value, StepState.UNDONE.value)
log = structlog.get_logger("clampdown.metrics")


class CallOutcome(Protocol):
    """How an action call ended, as the executor sees it."""

    @property
    def result(self) -> ActionResult | None: ...
    @property
    def retry(self) -> bool: ...
    @property
    def queued(self) -> bool: ...


def outcome_of(outcome: CallOutcome, *, attempts: int, max_attempts: int) -> str | None:
    """succeeded, failed or retried (as the executor then records it); None: not a call.

    A call the target's rate limit postponed (`queued`) never reached the action.
    """
    if outcome.result is not None:
        return SUCCEEDED
    if outcome.queued:
        return None
    return RETRIED if outcome.retry and attempts < max_attempts else FAILED


class StepMetrics:
    """The executor's view of step metrics; this one records nothing."""

    def step_ended(
        self,
        remediation: Mapping[str, Any],
        steps: Sequence[Mapping[str, Any]],
        step: Mapping[str, Any],
        outcome: CallOutcome,
        *,
        seconds: float,
        max_attempts: int,
    ) -> None:
        """One call of `step` (a row of `steps`, with its attempt counted) took `seconds`."""


IGNORED = StepMetrics()
"""The default of the executor and the worker: no metrics."""


class StepInstruments(StepMetrics):
    """Step calls and time to contain, counted in `registry`.

    - `clampdown_steps_total{action,outcome}`: action calls by how they ended.
    - `clampdown_step_duration_seconds{action}`: how long a call took.
    - `clampdown_time_to_contain_seconds{playbook}`: from the finding's receipt to the end of
      the remediation's first successful containing call.
    """

    def __init__(self, registry: CollectorRegistry, *, playbooks: Iterable[str]) -> None:
        self._action = Bounded(CATALOG)
        self._playbook = Bounded(playbooks)
        self.steps = Counter(
            "clampdown_steps",
            "Action calls of remediation steps, by action and outcome "
            "(retried: failed, and tried again later).",
            ["action", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "clampdown_step_duration_seconds",
            "How long one action call of a step took, by action.",
            ["action"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.time_to_contain = Histogram(
            "clampdown_time_to_contain_seconds",
            "From a finding's receipt to the first containing action of its remediation "
            "that succeeded, by playbook.",
            ["playbook"],
            buckets=CONTAIN_BUCKETS,
            registry=registry,
        )

    def step_ended(
        self,
        remediation: Mapping[str, Any],
        steps: Sequence[Mapping[str, Any]],
        step: Mapping[str, Any],
        outcome: CallOutcome,
        *,
        seconds: float,
        max_attempts: int,
    ) -> None:
        try:
            self._observe(remediation, steps, step, outcome, seconds, max_attempts)
        except Exception:
            # Counting must never fail a step: the call already happened.
            log.exception("metrics: a step call was not counted", action=step.get("action"))

    def _observe(
        self,
        remediation: Mapping[str, Any],
        steps: Sequence[Mapping[str, Any]],
        step: Mapping[str, Any],
        outcome: CallOutcome,
        seconds: float,
        max_attempts: int,
    ) -> None:
        ended = outcome_of(outcome, attempts=step["attempts"], max_attempts=max_attempts)
        if ended is None:
            return
        action = self._action(step["action"])
        self.steps.labels(action, ended).inc()
        self.duration.labels(action).observe(seconds)
        if (
            outcome.result is not None
            and not outcome.result.waiting
            and step["action"] in CONTAINING_ACTIONS
            and not _contained_before(steps, step)
        ):
            # Planning stores a remediation with the receipt time of the finding that opened
            # it (the same instant as the findings row's received_at): no read needed here.
            received: datetime = remediation["created_at"]
            waited = (datetime.now(UTC) - received).total_seconds()
            self.time_to_contain.labels(self._playbook(remediation["playbook"])).observe(
                max(0.0, waited)
            )


def _contained_before(steps: Sequence[Mapping[str, Any]], step: Mapping[str, Any]) -> bool:
    """Whether another containing step of the remediation already took effect."""
    return any(
        other["key"] != step["key"]
        and other["action"] in CONTAINING_ACTIONS
        and other["state"] in _HELD
        for other in steps
    )
