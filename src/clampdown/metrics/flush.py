"""Writing the decision tallies to the store: every 10 seconds, and once more at shutdown.

The flusher runs in every API process, with or without the engine (`create_app(...,
run_worker=False)`): such a process answers decision checks, so it has counts to write. Counts
of a write that failed are held and written with the next ones; a process killed outright
loses at most the last interval's counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

import structlog

from clampdown.metrics.decisions import DecisionTally
from clampdown.store import tallies
from clampdown.store.db import Database

log = structlog.get_logger("clampdown.metrics")

FLUSH_INTERVAL = 10.0
"""Seconds between two writes of the decision tallies."""


class TallyFlusher:
    """Moves a tally's counts into `decision_tallies` (on the event loop that counts them)."""

    def __init__(
        self, tally: DecisionTally, db: Database, *, interval: float = FLUSH_INTERVAL
    ) -> None:
        self.tally = tally
        self.db = db
        self.interval = interval

    async def flush(self) -> int:
        """Write what was counted since the last flush; returns how many rows were added."""
        rows = self.tally.take()
        if not rows:
            return 0
        try:
            await self.db.run_async(partial(tallies.add, rows=rows))
        except Exception:
            self.tally.give_back(rows)
            raise
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `interval` until `stop` is set, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("decision tallies not written; trying again later")
