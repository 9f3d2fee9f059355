"""Background snapshots: a page never waits for a measurement, and stale ones are refreshed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from clampdown.effectiveness.model import Effectiveness, Figures
from clampdown.effectiveness.snapshots import Snapshots

DAY = timedelta(days=1)


def _result(n: int) -> Effectiveness:
    now = datetime.now(UTC)
    return Effectiveness(
        since=now - DAY,
        until=now,
        generated_at=now,
        approval_wait_limit_seconds=1800,
        playbooks=[],
        overall=Figures(remediations=n),
        by_playbook=[],
        by_target=[],
        by_alert_type=[],
        timeline=[],
        bucket_seconds=3600,
        recurring=[],
        collateral=[],
    )


def test_first_ask_starts_measuring_and_returns_none() -> None:
    release = threading.Event()
    calls: list[timedelta] = []

    def measure(span: timedelta) -> Effectiveness:
        calls.append(span)
        release.wait(5)
        return _result(len(calls))

    snapshots = Snapshots(measure, max_age=60)
    try:
        assert snapshots.latest(DAY) is None
        assert snapshots.latest(DAY) is None  # one measurement at a time per period
        release.set()
        done = snapshots.wait(DAY, timeout=5)
        assert done is not None
        assert done.overall.remediations == 1
        assert snapshots.latest(DAY) is done  # fresh: no new measurement
        assert calls == [DAY]
    finally:
        snapshots.close()


def test_stale_snapshot_is_served_while_a_new_one_is_measured() -> None:
    count = iter(range(1, 100))
    snapshots = Snapshots(lambda span: _result(next(count)), max_age=0)
    try:
        snapshots.latest(DAY)
        first = snapshots.wait(DAY, timeout=5)
        assert first is not None
        threading.Event().wait(0.05)  # longer than ten times the (instant) measurement
        served = snapshots.latest(DAY)  # stale (max_age 0): served, and refreshed
        assert served is first
        second = snapshots.wait(DAY, timeout=5)
        assert second is not None
        assert second.overall.remediations == 2
    finally:
        snapshots.close()


def test_a_failed_measurement_keeps_the_previous_figures() -> None:
    outcomes: list[Effectiveness | Exception] = [_result(1), RuntimeError("database gone")]

    def measure(span: timedelta) -> Effectiveness:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    snapshots = Snapshots(measure, max_age=0)
    try:
        snapshots.latest(DAY)
        first = snapshots.wait(DAY, timeout=5)
        threading.Event().wait(0.05)
        snapshots.latest(DAY)
        assert snapshots.wait(DAY, timeout=5) is first
        assert outcomes == []  # the failing measurement did run
    finally:
        snapshots.close()


def test_a_slow_measurement_is_repeated_less_often() -> None:
    calls: list[timedelta] = []

    def slow(span: timedelta) -> Effectiveness:
        calls.append(span)
        threading.Event().wait(0.2)  # ten times this (2 s) must pass before the next one
        return _result(len(calls))

    snapshots = Snapshots(slow, max_age=0)
    try:
        snapshots.latest(DAY)
        first = snapshots.wait(DAY, timeout=5)
        assert snapshots.latest(DAY) is first
        assert snapshots.wait(DAY, timeout=5) is first
        assert calls == [DAY]
    finally:
        snapshots.close()
