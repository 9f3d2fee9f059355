"""Client-side rate limits: calls to one target wait their turn instead of failing.

A target's `rate_limit` (calls per second) spaces its calls evenly. A call that would wait
longer than the engine allows is not queued: the engine schedules it again for its turn.
"""

from __future__ import annotations

import time


class Pacer:
    """Spaces calls `1 / rate` seconds apart, in the order they asked."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    def reserve(self, *, longest: float, now: float | None = None) -> float | None:
        """Seconds to wait before calling, or None when that would exceed `longest`."""
        now = time.monotonic() if now is None else now
        start = max(now, self._next)
        wait = start - now
        if wait > longest:
            return None
        self._next = start + self.interval
        return wait

    def free_in(self, *, now: float | None = None) -> float:
        """Seconds until a call could start without waiting."""
        now = time.monotonic() if now is None else now
        return max(0.0, self._next - now)
