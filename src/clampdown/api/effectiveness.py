"""Effectiveness figures over the REST API: the same numbers as the report and the console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import App, Reader
from clampdown.api.responses import Json
from clampdown.durations import parse_duration
from clampdown.errors import InputError

router = APIRouter(prefix="/v1")


@router.get("/effectiveness", tags=["effectiveness"])
async def effectiveness(
    _t: Reader,
    app: App,
    since: Annotated[str, Query(description="How far back, e.g. 24h or 7d", max_length=20)] = "7d",
    until: Annotated[datetime | None, Query(description="End of the period (default now)")] = None,
) -> Json:
    """Figures per playbook, target, alert type and period for remediations opened in it."""
    try:
        span = parse_duration(since)
    except ValueError as exc:
        raise InputError(f"since: {exc}") from None
    if until is not None and until.tzinfo is None:
        raise InputError("until: give a time zone, e.g. 2026-12-01T10:00:00Z")
    end = until or datetime.now(UTC)
    try:
        start = end - span
    except OverflowError:
        raise InputError(f"since: {since!r} reaches back before the year 1") from None
    result = await run_in_threadpool(lambda: app.effectiveness(since=start, until=end))
    return Json(result.model_dump(mode="json"))
