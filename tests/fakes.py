"""Fakes of the outside systems Clampdown calls, shared by every test (HTTP level, localhost)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Delivery:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """What the receiver answers: a status, headers and a text body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay: float = 0.0


class WebhookReceiver:
    """An HTTP endpoint that records every POST and answers from a script of replies.

    Replies are consumed in order; when the script runs out, `default` answers. It serves the
    generic webhook and the Logic Apps / Power Automate trigger (202 with no body).
    """

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script: list[Reply] = []
        self.deliveries: list[Delivery] = []
        self.port = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def keys(self) -> list[str]:
        """The Idempotency-Key of every delivery, in arrival order."""
        with self._lock:
            return [d.headers.get("Idempotency-Key", "") for d in self.deliveries]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.deliveries.append(Delivery(request.path, dict(request.headers), body))
            reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        """Serve on 127.0.0.1 (a free port) in a background thread while the block runs."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner_box: dict[str, web.AppRunner] = {}

        async def start() -> None:
            app = web.Application()
            app.router.add_route("POST", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            sockets = site._server.sockets  # type: ignore[union-attr]
            self.port = sockets[0].getsockname()[1]
            runner_box["runner"] = runner

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner_box["runner"].cleanup())
            loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
