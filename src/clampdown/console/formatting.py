"""How the console writes times, durations and values: UTC ISO plus "in 52 min" / "3 h ago"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson


def iso(when: datetime | None) -> str:
    """UTC ISO 8601 to the second, e.g. 2026-11-27T14:03:05Z; empty for None."""
    if when is None:
        return ""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def span(delta: timedelta) -> str:
    """A duration as people say it: 45 s, 52 min, 3 h 20 min, 26 h, 9 d."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 10:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} d"


def relative(when: datetime | None, now: datetime) -> str:
    """'in 52 min', '3 h ago' or 'now'; empty for None."""
    if when is None:
        return ""
    delta = when - now
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"in {span(delta)}" if delta > timedelta(0) else f"{span(delta)} ago"


def time_left(expires: datetime | None, now: datetime) -> str:
    """What is left of a containment: 'permanent', '52 min', or 'expired'."""
    if expires is None:
        return "permanent"
    if expires <= now:
        return "expired"
    return span(expires - now)


def value(item: object) -> str:
    """A parameter or output value as text: strings as they are, the rest as JSON."""
    if isinstance(item, str):
        return item
    return orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS).decode()


def short_id(identifier: object) -> str:
    """The first 8 characters of a 32-character id, enough to tell rows apart."""
    return str(identifier)[:8]
