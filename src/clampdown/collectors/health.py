"""How each configured source is doing: last success, lag behind the detector, last error.

`status` is `ok` when the latest pull succeeded, `failing` when it failed, `pending` before
a first pull ends, and `disabled` for a source `serve` does not pull. `lag_seconds` is
now minus the checkpoint: how far behind the detector Clampdown may be (none before a first
success).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from clampdown.collectors.base import utc_now
from clampdown.collectors.settings import SourceSettings
from clampdown.services import Clampdown
from clampdown.store import sources
from clampdown.store.sources import SourceState


def read_health(app: Clampdown, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The health of every configured source, in configuration order."""
    with app.db.read() as conn:
        states = sources.all_states(conn)
    return source_health(app.config.sources, states, now or utc_now())


def source_health(
    configured: Sequence[SourceSettings], states: Mapping[str, SourceState], now: datetime
) -> list[dict[str, Any]]:
    """One entry per configured source, from its stored state."""
    return [_entry(settings, states.get(settings.name), now) for settings in configured]


def _entry(settings: SourceSettings, state: SourceState | None, now: datetime) -> dict[str, Any]:
    checkpoint = state.checkpoint if state else None
    return {
        "name": settings.name,
        "type": settings.type,
        "enabled": settings.enabled,
        "status": _status(settings, state),
        "interval_seconds": settings.interval.total_seconds(),
        "checkpoint": checkpoint,
        "lag_seconds": max(0.0, (now - checkpoint).total_seconds()) if checkpoint else None,
        "last_attempt_at": state.last_attempt_at if state else None,
        "last_success_at": state.last_success_at if state else None,
        "last_error": state.last_error if state else None,
        "last_error_at": state.last_error_at if state else None,
        "pulled": state.pulled if state else 0,
        "ingested_total": state.ingested_total if state else 0,
        "errors_total": state.errors_total if state else 0,
    }


def _status(settings: SourceSettings, state: SourceState | None) -> str:
    if not settings.enabled:
        return "disabled"
    if state is None or (state.last_success_at is None and state.last_error_at is None):
        return "pending"
    if state.last_error_at is None:
        return "ok"
    if state.last_success_at is None or state.last_error_at > state.last_success_at:
        return "failing"
    return "ok"
