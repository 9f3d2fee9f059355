"""Recent effectiveness figures, measured in the background for pages that must answer fast.

Measuring a busy week takes seconds; a page must answer in well under 200 ms. A page asks for
the latest snapshot of a period (24 h, 7 d, ...): it gets what was measured last (and when),
and a measurement starts in a background thread when that is older than `max_age`, or than
ten times what the last measurement took: measuring shares the process (and its decision
checks), so it may use a tenth of a core at most. One measurement per period runs at a time.
The first request of a period gets None ("being measured") rather than waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import structlog

from clampdown.effectiveness.model import Effectiveness

log = structlog.get_logger("clampdown.effectiveness")
_SHARE = 10
"""Wait at least this many times a measurement's duration before the next one."""


class Snapshots:
    """The latest measurement per period, refreshed in the background."""

    def __init__(
        self, measure: Callable[[timedelta], Effectiveness], *, max_age: float = 60.0
    ) -> None:
        self._measure = measure
        self._max_age = max_age
        self._lock = threading.Lock()
        # Per period: when the last measurement ended, how long it took, and its result.
        self._latest: dict[timedelta, tuple[float, float, Effectiveness]] = {}
        self._running: dict[timedelta, Future[None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="effectiveness")

    def latest(self, span: timedelta) -> Effectiveness | None:
        """The last measurement of the `span` before now; starts a fresh one when stale."""
        with self._lock:
            found = self._latest.get(span)
            stale = found is None or time.monotonic() - found[0] > max(
                self._max_age, _SHARE * found[1]
            )
            if stale and span not in self._running:
                self._running[span] = self._pool.submit(self._refresh, span)
        return found[2] if found else None

    def wait(self, span: timedelta, timeout: float | None = None) -> Effectiveness | None:
        """Block until the running measurement of `span` (if any) ends; for tests and the CLI."""
        with self._lock:
            running = self._running.get(span)
        if running is not None:
            running.result(timeout)
        with self._lock:
            found = self._latest.get(span)
        return found[2] if found else None

    def close(self) -> None:
        """Stop taking work; a measurement under way finishes."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _refresh(self, span: timedelta) -> None:
        began = time.monotonic()
        try:
            result = self._measure(span)
        except Exception:
            # The page keeps the previous figures; the log says why they are old.
            log.exception("measuring effectiveness failed", span=str(span))
            result = None
        with self._lock:
            ended = time.monotonic()
            if result is not None:
                self._latest[span] = (ended, ended - began, result)
            self._running.pop(span, None)
