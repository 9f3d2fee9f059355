"""The metrics of one API app: its own registry, its instruments, and the tally flusher.

Each app has its own `CollectorRegistry` (not prometheus_client's global one), so that tests
and several apps in one process each count their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from clampdown.metrics.decisions import DecisionCollector, DecisionTally
from clampdown.metrics.flush import TallyFlusher
from clampdown.metrics.ingest import IngestInstruments
from clampdown.metrics.sources import SourceCollector
from clampdown.metrics.steps import StepInstruments
from clampdown.metrics.store import StoreCollector
from clampdown.services import Clampdown

# No `*_created` series beside each counter and histogram: they double the series for a
# start time that `process_start_time_seconds` already gives. (A process-wide setting.)
disable_created_metrics()  # type: ignore[no-untyped-call]

A = TypeVar("A")
Lifespan = Callable[[A], AbstractAsyncContextManager[None]]


class AppMetrics:
    """Everything /metrics shows for one app, and what feeds it."""

    def __init__(self, clampdown: Clampdown) -> None:
        self.clampdown = clampdown
        self.registry = CollectorRegistry()
        self.decisions = DecisionTally()
        self.registry.register(DecisionCollector(self.decisions))
        self.ingest = IngestInstruments(self.registry)
        self.steps = StepInstruments(
            self.registry, playbooks=[playbook.name for playbook in clampdown.playbooks]
        )
        self.registry.register(
            StoreCollector(
                clampdown.db,
                playbooks=lambda: (playbook.name for playbook in clampdown.playbooks),
                targets=clampdown.config.targets,
            )
        )
        self.registry.register(
            SourceCollector(clampdown.db, (s.name for s in clampdown.config.sources))
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.flusher = TallyFlusher(self.decisions, clampdown.db)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (reads the store: call off the loop)."""
        return generate_latest(self.registry)

    def lifespan(self, inner: Lifespan[A]) -> Lifespan[A]:
        """`inner`, with findings counted and the tallies flushed while the app runs.

        The flusher starts first and stops last: the final flush comes after the engine
        stopped and the server stopped answering.
        """

        @asynccontextmanager
        async def lifespan(app: A) -> AsyncIterator[None]:
            previous = self.clampdown.on_ingested
            self.clampdown.on_ingested = self.ingest.count
            stop = asyncio.Event()
            flushing = asyncio.create_task(self.flusher.run(stop))
            try:
                async with inner(app):
                    yield
            finally:
                stop.set()
                await flushing
                self.clampdown.on_ingested = previous

        return lifespan
