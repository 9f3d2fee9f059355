"""Client-side rate limits: calls are spaced, and a long wait becomes a later turn."""

from __future__ import annotations

from clampdown.targets.pacing import Pacer


def test_calls_are_spaced_in_the_order_they_asked() -> None:
    pacer = Pacer(4.0)
    waits = [pacer.reserve(longest=10, now=100.0) for _ in range(4)]
    assert waits == [0.0, 0.25, 0.5, 0.75]
    assert pacer.free_in(now=100.0) == 1.0
    # Time passing frees the turns: a call after the queue drained waits for nothing.
    assert pacer.reserve(longest=10, now=102.0) == 0.0


def test_a_wait_beyond_the_longest_is_refused_and_reserves_nothing() -> None:
    pacer = Pacer(1.0)
    assert pacer.reserve(longest=1.5, now=0.0) == 0.0
    assert pacer.reserve(longest=1.5, now=0.0) == 1.0
    assert pacer.reserve(longest=1.5, now=0.0) is None
    assert pacer.free_in(now=0.0) == 2.0
