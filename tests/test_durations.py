"""Durations and instants as people write them; anything else is a ValueError, never a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clampdown.durations import parse_duration, parse_instant

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("2w", timedelta(days=14))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("²", "not a duration"),  # a digit to str.isdigit, not to int()
        ("1m1h", "not a duration"),
        ("99999999999999999999", "duration too long"),
        ("9999999999w", "duration too long"),
    ],
)
def test_bad_durations_are_value_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_instants() -> None:
    assert parse_instant("7d", NOW) == NOW - timedelta(days=7)
    assert parse_instant("2026-11-20T08:00", NOW) == datetime(2026, 11, 20, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="before the year 1"):
        parse_instant("999999999d", NOW)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_instant("last tuesday", NOW)
