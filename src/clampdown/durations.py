"""Durations as people write them in playbooks and configs: 30s, 15m, 1h30m, 1d, or seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_HELP = "use for example 30s, 15m, 1h, 1d, 1h30m, or a number of seconds"


def parse_duration(value: object) -> timedelta:
    """Read '1h30m', '45s', '2d' or whole seconds; ValueError names what was wrong.

    Units go from largest to smallest, each at most once, so a typo such as '1m1h' is refused.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isascii() and text.isdigit():
            try:
                return timedelta(seconds=int(text))
            except OverflowError:
                raise ValueError(f"duration too long: {value!r}") from None
        found = _DURATION.fullmatch(text)
        if text and found:
            weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in found.groups())
            try:
                return timedelta(
                    weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
                )
            except OverflowError:
                raise ValueError(f"duration too long: {value!r}") from None
    raise ValueError(f"not a duration: {value!r} ({_HELP})")


def parse_instant(text: str, now: datetime) -> datetime:
    """A time given as a duration before `now` (7d, 24h) or as an ISO 8601 time (UTC when
    naive); ValueError names what was wrong."""
    try:
        return now - parse_duration(text)
    except OverflowError:
        raise ValueError(f"{text!r} reaches back before the year 1") from None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (7d, 24h) nor a time (2026-11-20T08:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
