"""Decision tallies in memory: per hour and API, capped, taken and given back."""

from __future__ import annotations

from datetime import UTC, datetime

from clampdown.metrics.decisions import DecisionCollector, DecisionTally
from clampdown.model import Decision
from tests.metrics.conftest import samples, value

ALLOW, DENY, THROTTLE = Decision.ALLOW, Decision.DENY, Decision.THROTTLE
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC).timestamp()


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float = T0 + 60) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hour(h: int) -> datetime:
    return datetime(2026, 11, 27, h, 0, tzinfo=UTC)


def by_key(rows: list[dict[str, object]]) -> dict[tuple[object, object], tuple[object, ...]]:
    return {
        (r["bucket_start"], r["api"]): (r["allowed"], r["denied"], r["throttled"]) for r in rows
    }


def test_counts_per_api_and_verdict_with_no_api_as_star() -> None:
    tally = DecisionTally(clock=Clock())
    for api, decision in [("orders", ALLOW), ("orders", ALLOW), ("orders", DENY), ("", DENY)]:
        tally.count(api, decision)
    tally.count("", THROTTLE)
    assert by_key(tally.take()) == {
        (hour(10), "orders"): (2, 1, 0),
        (hour(10), "*"): (0, 1, 1),
    }
    assert tally.totals == [2, 2, 1]


def test_take_empties_but_totals_stay() -> None:
    tally = DecisionTally(clock=Clock())
    tally.count("orders", DENY)
    assert len(tally.take()) == 1
    assert tally.take() == []
    tally.count("orders", ALLOW)
    assert by_key(tally.take()) == {(hour(10), "orders"): (1, 0, 0)}
    assert tally.totals == [1, 1, 0]


def test_each_hour_is_its_own_bucket() -> None:
    clock = Clock()
    tally = DecisionTally(clock=clock)
    tally.count("orders", DENY)
    clock.now = T0 + 3600 + 5
    tally.count("orders", ALLOW)
    tally.count("orders", ALLOW)
    assert by_key(tally.take()) == {
        (hour(10), "orders"): (0, 1, 0),
        (hour(11), "orders"): (2, 0, 0),
    }


def test_api_names_past_the_cap_count_as_other() -> None:
    tally = DecisionTally(cap=3, clock=Clock())
    for api in ["a", "b", "c", "d", "e", "a", "d"]:
        tally.count(api, DENY)
    assert by_key(tally.take()) == {
        (hour(10), "a"): (0, 2, 0),
        (hour(10), "b"): (0, 1, 0),
        (hour(10), "c"): (0, 1, 0),
        (hour(10), "other"): (0, 3, 0),
    }


def test_the_cap_holds_for_the_whole_hour_across_takes() -> None:
    """Taking the counts every few seconds must not admit 1000 new names each time."""
    clock = Clock()
    tally = DecisionTally(cap=2, clock=clock)
    tally.count("a", ALLOW)
    tally.count("b", ALLOW)
    tally.take()
    tally.count("c", ALLOW)
    tally.count("a", ALLOW)
    assert by_key(tally.take()) == {(hour(10), "other"): (1, 0, 0), (hour(10), "a"): (1, 0, 0)}
    clock.now = T0 + 3600
    tally.count("c", ALLOW)
    assert by_key(tally.take()) == {(hour(11), "c"): (1, 0, 0)}


def test_given_back_rows_are_taken_again_merged_with_new_counts() -> None:
    tally = DecisionTally(clock=Clock())
    tally.count("orders", DENY)
    rows = tally.take()
    tally.count("orders", DENY)
    tally.count("orders", ALLOW)
    tally.give_back(rows)
    assert by_key(tally.take()) == {(hour(10), "orders"): (1, 2, 0)}


def test_held_hours_are_bounded_when_nothing_is_written() -> None:
    clock = Clock()
    tally = DecisionTally(clock=clock)
    for h in range(60):
        clock.now = T0 + h * 3600
        tally.count("orders", DENY)
    buckets = {row["bucket_start"] for row in tally.take()}
    assert len(buckets) == 49  # 48 held hours and the current one
    assert min(buckets) == datetime.fromtimestamp(T0 + 11 * 3600, UTC)


def test_collector_reports_totals_per_verdict() -> None:
    tally = DecisionTally(clock=Clock())
    tally.count("x", DENY)
    tally.count("y", DENY)
    tally.count("x", THROTTLE)
    got = samples(DecisionCollector(tally).collect())
    assert value(got, "clampdown_decisions_total", verdict="allow") == 0
    assert value(got, "clampdown_decisions_total", verdict="deny") == 2
    assert value(got, "clampdown_decisions_total", verdict="throttle") == 1
