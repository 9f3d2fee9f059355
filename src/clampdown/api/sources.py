"""The configured sources' health over the REST API: the same data as `clampdown sources list`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import App, Reader
from clampdown.api.responses import Json
from clampdown.collectors.health import read_health

router = APIRouter(prefix="/v1")


@router.get("/sources", tags=["sources"])
async def list_sources(_t: Reader, app: App) -> Json:
    """Each configured source: status, checkpoint, lag, last success, last error, counts."""
    rows = await run_in_threadpool(read_health, app)
    return Json({"sources": rows})
