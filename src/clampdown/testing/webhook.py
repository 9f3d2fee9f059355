"""A generic webhook receiver: records every POST and answers from a script of replies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from clampdown.testing.server import FakeServer


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


class WebhookReceiver(FakeServer):
    """An HTTP endpoint that records every POST and answers from a script of replies.

    Replies are consumed in order; when the script runs out, `default` answers. It serves the
    generic webhook and the Logic Apps / Power Automate trigger (202 with no body).
    """

    def __init__(self, default: Reply | None = None) -> None:
        super().__init__()
        self.default = default or Reply()
        self.script: list[Reply] = []
        self.deliveries: list[Delivery] = []

    @property
    def url(self) -> str:
        return f"{super().url}/hook"

    def keys(self) -> list[str]:
        """The Idempotency-Key of every delivery, in arrival order."""
        with self.lock:
            return [d.headers.get("Idempotency-Key", "") for d in self.deliveries]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        with self.lock:
            self.deliveries.append(Delivery(request.path, dict(request.headers), body))
            reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("POST", "/{tail:.*}", self._handle)
