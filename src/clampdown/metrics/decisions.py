"""Decision counts: totals per verdict, and per-hour tallies per API for the collateral signal.

A gateway asks for a decision once per request it forwards, tens of thousands of times a
second, so counting one costs a clock read and two list increments, with no lock: every
decision is answered, and so counted, on the event loop's thread, and the tallies are taken
(`take`) on that same thread by the flusher (flush.py). Nothing here touches the database.

Labels and keys are bounded: the verdict is one of allow, deny or throttle; the API is the
`api` of the check request as the gateway names it ("*" when it names none), at most
`cap` distinct names per hour, the rest counted under "other".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from clampdown.metrics.labels import OTHER
from clampdown.model import Decision

log = structlog.get_logger("clampdown.metrics")

ANY_API = "*"
"""The tally key of requests that name no API."""
API_CAP = 1000
"""Distinct API names tallied per hour; later ones count under "other"."""
MAX_HOURS = 48
"""Hours of tallies held while they cannot be written; older ones are dropped."""
HOUR = 3600

VERDICTS: tuple[str, ...] = tuple(d.value for d in Decision)
"""The verdicts, in the order of the counts lists: allow, deny, throttle."""
_ALLOW, _DENY = Decision.ALLOW, Decision.DENY

Counts = list[int]
"""[allowed, denied, throttled]"""


class DecisionTally:
    """Counts decisions, in total and per hour and API, until the flusher takes them."""

    def __init__(self, *, cap: int = API_CAP, clock: Callable[[], float] = time.time) -> None:
        self.totals: Counts = [0, 0, 0]
        """Every decision counted by this process, per verdict (never reset)."""
        self._cap = cap
        self._clock = clock
        self._hour = -1
        # The current hour's counts since the last `take`, keyed by the API as the gateway
        # sent it ("" included): the common case is one dictionary look-up.
        self._now: dict[str, Counts] = {}
        # The API names admitted this hour, kept across `take`s: the cap is per hour.
        self._names: set[str] = set()
        # Counts not yet taken (earlier hours) or given back after a failed write.
        self._held: dict[int, dict[str, Counts]] = {}

    def count(self, api: str, decision: Decision) -> None:
        """Count one decision on a request for `api` (on the event loop's thread)."""
        hour = int(self._clock()) // HOUR
        if hour != self._hour:
            self._roll(hour)
        counts = self._now.get(api)
        if counts is None:
            counts = self._open(api)
        # Identity tests: hashing an enum member runs Python code, a dict look-up would cost more.
        index = 0 if decision is _ALLOW else 1 if decision is _DENY else 2
        counts[index] += 1
        self.totals[index] += 1

    def _open(self, api: str) -> Counts:
        if api not in self._names:
            if len(self._names) >= self._cap:
                api = OTHER
            else:
                self._names.add(api)
        counts = self._now.get(api)
        if counts is None:
            counts = self._now[api] = [0, 0, 0]
        return counts

    def _roll(self, hour: int) -> None:
        if self._now:
            _merge(self._held.setdefault(self._hour, {}), self._now)
        self._now = {}
        self._names = set()
        self._hour = hour
        self._bound()

    def take(self) -> list[dict[str, Any]]:
        """The counts since the last `take`, as `decision_tallies` rows, and forget them."""
        if self._now:
            _merge(self._held.setdefault(self._hour, {}), self._now)
            self._now = {}
        held, self._held = self._held, {}
        return [
            {
                "bucket_start": datetime.fromtimestamp(hour * HOUR, UTC),
                "api": api or ANY_API,
                "allowed": counts[0],
                "denied": counts[1],
                "throttled": counts[2],
            }
            for hour, apis in sorted(held.items())
            for api, counts in apis.items()
        ]

    def give_back(self, rows: list[dict[str, Any]]) -> None:
        """Hold taken rows again (their write failed) to be taken with the next ones."""
        for row in rows:
            hour = int(row["bucket_start"].timestamp()) // HOUR
            counts = self._held.setdefault(hour, {}).setdefault(row["api"], [0, 0, 0])
            counts[0] += row["allowed"]
            counts[1] += row["denied"]
            counts[2] += row["throttled"]
        self._bound()

    def _bound(self) -> None:
        while len(self._held) > MAX_HOURS:
            oldest = min(self._held)
            log.warning(
                "decision tallies dropped: they could not be written in time",
                hour=datetime.fromtimestamp(oldest * HOUR, UTC).isoformat(),
            )
            del self._held[oldest]


def _merge(into: dict[str, Counts], counts: dict[str, Counts]) -> None:
    for api, (allowed, denied, throttled) in counts.items():
        total = into.setdefault(api, [0, 0, 0])
        total[0] += allowed
        total[1] += denied
        total[2] += throttled


class DecisionCollector(Collector):
    """`clampdown_decisions_total{verdict}`, read from a tally's totals at scrape time."""

    def __init__(self, tally: DecisionTally) -> None:
        self._tally = tally

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "clampdown_decisions",
            "Decision checks answered by this process, by verdict.",
            labels=["verdict"],
        )
        for verdict, value in zip(VERDICTS, list(self._tally.totals), strict=True):
            family.add_metric([verdict], value)
        yield family
