"""Ingest routes: one that detects the delivery shape, and one per shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from clampdown.api.deps import App, Body, Ingester
from clampdown.api.responses import Json
from clampdown.services import Clampdown, parse_json
from clampdown.sources import SHAPES

router = APIRouter(prefix="/v1/ingest", tags=["ingest"])

_DOC = (
    "Stores every finding in the payload durably before answering, then plans its "
    "remediations. Delivering the same alert again is harmless: it is reported as a duplicate."
)


async def _ingest(app: Clampdown, body: bytes, shape: str | None) -> Json:
    payload = parse_json(body)
    results = await app.ingest_async(payload, shape=shape)
    content: dict[str, Any] = {"findings": [r.as_json() for r in results]}
    return Json(content, status_code=status.HTTP_202_ACCEPTED)


@router.post("", status_code=status.HTTP_202_ACCEPTED, summary="Ingest (shape detected)")
async def ingest_any(_token: Ingester, app: App, body: Body) -> Json:
    """Accept an alert or recommendation in any supported shape, detected automatically."""
    return await _ingest(app, body, None)


def _shape_route(shape: str) -> None:
    async def ingest_shape(_token: Ingester, app: App, body: Body) -> Json:
        return await _ingest(app, body, shape)

    ingest_shape.__doc__ = f"Accept a payload in the {shape} shape. {_DOC}"
    router.add_api_route(
        f"/{shape}",
        ingest_shape,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        summary=f"Ingest ({shape})",
        name=f"ingest_{shape.replace('-', '_')}",
    )


for _shape in SHAPES:
    _shape_route(_shape)
