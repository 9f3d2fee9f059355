"""Durations as people write them in playbooks and configs: 30s, 15m, 1h30m, 1d, or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^(?:\d+\s*[smhdw]\s*)+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: str | int | float) -> timedelta:
    """Read '1h30m', '45s', '2d' or a number of seconds; ValueError names what was wrong."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '15m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    text = value.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration such as '30s', '15m', '1h30m' or '1d'")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text)))
