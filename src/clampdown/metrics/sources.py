"""Source health, read from the store when Prometheus scrapes (see docs/metrics.md).

- `clampdown_source_last_success_timestamp_seconds{source}`: when the last pull succeeded
  (0 before the first);
- `clampdown_source_lag_seconds{source}`: now minus the checkpoint (absent before the
  first success);
- `clampdown_source_errors_total{source}`: pulls that failed;
- `clampdown_source_findings_total{source}`: findings first stored from the source.

The `source` label takes the configured sources' names only; state left by a source no
longer configured is not shown. The counts are stored, so every process reports the same
values, CLI pulls included: aggregate with `max`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from clampdown.store import sources
from clampdown.store.db import Database

log = structlog.get_logger("clampdown.metrics")


class SourceCollector(Collector):
    """The source gauges and counters, computed on each scrape."""

    def __init__(
        self,
        db: Database,
        names: Iterable[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._names = list(names)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        if not self._names:
            return
        try:
            with self._db.read() as conn:
                states = sources.all_states(conn)
        except Exception:
            log.exception("metrics: the source state could not be read")
            return
        now = self._clock()
        success = GaugeMetricFamily(
            "clampdown_source_last_success_timestamp_seconds",
            "When the source's last pull succeeded, as a Unix time (0: never).",
            labels=["source"],
        )
        lag = GaugeMetricFamily(
            "clampdown_source_lag_seconds",
            "Now minus the source's checkpoint: how far behind the detector it may be.",
            labels=["source"],
        )
        errors = CounterMetricFamily(
            "clampdown_source_errors", "Pulls of the source that failed.", labels=["source"]
        )
        found = CounterMetricFamily(
            "clampdown_source_findings",
            "Findings first stored from the source.",
            labels=["source"],
        )
        for name in self._names:
            state = states.get(name)
            last = state.last_success_at if state else None
            success.add_metric([name], last.timestamp() if last else 0.0)
            if state is not None and state.checkpoint is not None:
                lag.add_metric([name], max(0.0, (now - state.checkpoint).total_seconds()))
            errors.add_metric([name], state.errors_total if state else 0)
            found.add_metric([name], state.ingested_total if state else 0)
        yield from (success, lag, errors, found)
