"""Exponential backoff with full jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random

RETRY_AFTER_CAP = 3600.0
"""A Retry-After longer than this is treated as this: a step never sleeps for days."""


def backoff(
    attempt: int, *, initial: float, maximum: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1).

    Full jitter spreads retries of many steps hitting one target; a Retry-After the
    target sent is a floor, never shortened by jitter nor by `maximum`.
    """
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay
