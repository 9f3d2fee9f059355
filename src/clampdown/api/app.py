"""The REST API: routes, error translation, and the engine running beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from clampdown import __version__, console
from clampdown.api import decisions, effectiveness, ingest, links, metrics, resources, sources
from clampdown.api.deps import BEARER
from clampdown.api.fastpath import DecisionFastPath
from clampdown.api.responses import Json, error
from clampdown.collectors.runner import running_sources
from clampdown.engine.worker import Worker
from clampdown.errors import (
    ClampdownError,
    ConflictError,
    ForbiddenError,
    InputError,
    NormalizationError,
    NotFoundError,
)
from clampdown.metrics.app import AppMetrics
from clampdown.ownership.refresher import refreshing
from clampdown.services import Clampdown

log = structlog.get_logger("clampdown.api")


class ClampdownAPI(FastAPI):
    """FastAPI, with the decision checks answered first by the fast path (fastpath.py)."""

    fast_path: DecisionFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and await fast.answer(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(
    clampdown: Clampdown, *, run_worker: bool = True, fast_decisions: bool = True
) -> FastAPI:
    """The ASGI app; with `run_worker`, the engine runs in the same event loop.

    With `fast_decisions` (the default), most decision checks skip FastAPI (see fastpath.py);
    without, every request goes through the FastAPI routes.
    """
    telemetry = AppMetrics(clampdown)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not run_worker:
            yield
            return
        worker = Worker(
            clampdown.db, clampdown.config, clampdown.decisions, metrics=telemetry.steps
        )
        loop = asyncio.get_running_loop()
        # Ingest commits in a thread; wake the worker on the loop's own thread.

        def wake() -> None:
            loop.call_soon_threadsafe(worker.poke)

        clampdown.on_work = wake
        # Ingest through the API runs on this loop: its jobs go straight to the worker.
        clampdown.lease_for_new_jobs = worker.lease_for_new_jobs
        clampdown.adopt = worker.adopt
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        app.state.worker = worker
        clampdown.engine_state = lambda: _engine_state(task, worker)
        try:
            async with running_sources(clampdown):  # a pulling task per enabled source
                yield
        finally:
            stop.set()
            await task

    app = ClampdownAPI(
        title="Clampdown",
        version=__version__,
        summary="Turns API threat detections into enforced, verified, reversible action.",
        lifespan=telemetry.lifespan(refreshing(clampdown.enricher, lifespan)),
        default_response_class=Json,
    )
    app.state.clampdown = clampdown
    app.state.metrics = telemetry
    if fast_decisions:
        app.fast_path = DecisionFastPath(clampdown, telemetry.decisions)
    app.include_router(ingest.router)
    app.include_router(resources.router)
    app.include_router(decisions.router)
    app.include_router(links.router)
    app.include_router(effectiveness.router)
    app.include_router(metrics.router)
    app.include_router(sources.router)
    console.install(app, clampdown)  # the web console: routes, stylesheet, sessions
    _install_error_handlers(app)
    _document_bearer_auth(app)
    return app


def _document_bearer_auth(app: FastAPI) -> None:
    """Declare the bearer-token scheme in the OpenAPI document, for every route but health."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                BEARER: {"type": "http", "scheme": "bearer", "description": "An API token"}
            }
            for path, operations in schema.get("paths", {}).items():
                if path != "/v1/healthz":
                    for operation in operations.values():
                        operation["security"] = [{BEARER: []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _engine_state(task: asyncio.Task[None], worker: Worker) -> str:
    if task.done():
        return "stopped"
    return "failing" if worker.failures else "running"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NormalizationError)
    async def _unreadable(_: Request, exc: NormalizationError) -> Json:
        return error(422, "unrecognized_finding", str(exc))

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> Json:
        return error(400, "bad_request", str(exc))

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> Json:
        return error(404, "not_found", str(exc))

    @app.exception_handler(ForbiddenError)
    async def _forbidden(_: Request, exc: ForbiddenError) -> Json:
        return error(403, "forbidden", str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> Json:
        return error(409, "conflict", str(exc))

    @app.exception_handler(ClampdownError)
    async def _other(_: Request, exc: ClampdownError) -> Json:
        log.error("request failed", error=str(exc))
        return error(503, "unavailable", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Json:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large"}
        return error(
            exc.status_code,
            code.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Json:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return error(422, "invalid_request", problems)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Json:
        # Never a traceback to the caller; the log keeps it for the operator.
        log.exception("unexpected error", error_type=type(exc).__name__)
        return error(500, "internal", "internal error; see the server log")
