"""GET /metrics: Prometheus metrics, for a bearer token with the `read` scope.

Prometheus sends the token with `authorization: {credentials_file: ...}` in its scrape config
(docs/metrics.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import Reader
from clampdown.metrics.app import AppMetrics
from clampdown.metrics.decisions import DecisionTally

router = APIRouter(tags=["metrics"])


async def _metrics(request: Request) -> AppMetrics:
    metrics: AppMetrics = request.app.state.metrics
    return metrics


async def _tally(request: Request) -> DecisionTally:
    metrics: AppMetrics = request.app.state.metrics
    return metrics.decisions


Metrics = Annotated[AppMetrics, Depends(_metrics)]
Tally = Annotated[DecisionTally, Depends(_tally)]
"""The app's decision counts (for the decision routes)."""


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Every metric, in the Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(_t: Reader, telemetry: Metrics) -> Response:
    """Prometheus metrics: decisions, ingest, steps, time to contain, and store gauges."""
    body = await run_in_threadpool(telemetry.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
