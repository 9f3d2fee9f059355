"""Gauges read from the store when Prometheus scrapes: what is stored, not what happened here.

Every API process reports the same values (they describe the shared database); aggregate them
with `max` rather than `sum`. The queries are in store/counts.py, each reading an index.

Labels are bounded: `playbook` is a playbook the app loaded (rows of any other count as
"other"), `target` a configured target (else "other"), `state` a remediation state and `kind`
a containment kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from clampdown.metrics.labels import Bounded
from clampdown.model import ContainmentKind, RemediationState
from clampdown.store import counts, jobs, summaries
from clampdown.store.db import Database

log = structlog.get_logger("clampdown.metrics")

STATES: tuple[str, ...] = tuple(state.value for state in RemediationState)
KINDS: tuple[str, ...] = tuple(kind.value for kind in ContainmentKind)
_AWAITING = RemediationState.AWAITING_APPROVAL.value
_state = Bounded(STATES)
_kind = Bounded(KINDS)


@dataclass(frozen=True)
class StoreCounts:
    """Everything the store gauges show, read in one transaction."""

    remediations: list[tuple[str, str, int]]
    waiting_since: datetime | None
    containments: list[tuple[str, str, int]]
    tasks_open: int
    jobs_due: int
    at: datetime

    @classmethod
    def read(cls, db: Database, now: datetime) -> StoreCounts:
        """Read the counts."""
        with db.read() as conn:
            return cls(
                remediations=[
                    (playbook, state, n)
                    for playbook, states in summaries.count_by_playbook_and_state(conn).items()
                    for state, n in states.items()
                ],
                waiting_since=counts.oldest_approval_wait_since(conn),
                containments=counts.active_containments(conn, now=now),
                tasks_open=counts.open_tasks(conn),
                jobs_due=jobs.due_count(conn, now),
                at=now,
            )


class StoreCollector(Collector):
    """The store gauges (see docs/metrics.md), computed on each scrape."""

    def __init__(
        self,
        db: Database,
        *,
        playbooks: Callable[[], Iterable[str]],
        targets: Iterable[str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._playbooks = playbooks
        self._target = Bounded(targets)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            got = StoreCounts.read(self._db, self._clock())
        except Exception:
            # The live metrics still answer; `clampdown_store_up 0` says why these are absent.
            log.exception("metrics: the store could not be read")
            yield _gauge("clampdown_store_up", "1 when the store gauges could be read.", 0)
            return
        yield _gauge("clampdown_store_up", "1 when the store gauges could be read.", 1)
        yield from self._families(got)

    def _families(self, got: StoreCounts) -> Iterator[Metric]:
        playbook = Bounded(self._playbooks())
        by_state = dict.fromkeys(STATES, 0)
        by_playbook: dict[tuple[str, str], int] = {}
        for name, stored, n in got.remediations:
            state = _state(stored)
            by_state[state] = by_state.get(state, 0) + n
            key = (playbook(name), state)
            by_playbook[key] = by_playbook.get(key, 0) + n
        states = GaugeMetricFamily(
            "clampdown_remediations", "Stored remediations, by state.", labels=["state"]
        )
        for state, n in by_state.items():
            states.add_metric([state], n)
        yield states
        playbooks = GaugeMetricFamily(
            "clampdown_remediations_by_playbook",
            "Stored remediations, by playbook and state.",
            labels=["playbook", "state"],
        )
        for (name, state), n in sorted(by_playbook.items()):
            playbooks.add_metric([name, state], n)
        yield playbooks
        yield _gauge(
            "clampdown_pending_approvals",
            "Remediations waiting for a person's approval.",
            by_state[_AWAITING],
        )
        waited = 0.0
        if got.waiting_since is not None:
            waited = max(0.0, (got.at - got.waiting_since).total_seconds())
        yield _gauge(
            "clampdown_oldest_pending_approval_seconds",
            "How long the remediation waiting longest for approval has waited (0: none waits).",
            waited,
        )
        active = GaugeMetricFamily(
            "clampdown_containments_active",
            "Containments in force (not lifted, not past their expiry), by target and kind.",
            labels=["target", "kind"],
        )
        by_target: dict[tuple[str, str], int] = {}
        for target, kind, n in got.containments:
            key = (self._target(target), _kind(kind))
            by_target[key] = by_target.get(key, 0) + n
        for (target, kind), n in sorted(by_target.items()):
            active.add_metric([target, kind], n)
        yield active
        yield _gauge("clampdown_tasks_open", "Guided tasks waiting for a person.", got.tasks_open)
        yield _gauge(
            "clampdown_jobs_due",
            "Engine jobs due now: running or waiting for a worker.",
            got.jobs_due,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
