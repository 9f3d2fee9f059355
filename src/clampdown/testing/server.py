"""A localhost aiohttp server run from a background thread, the base of every fake."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import orjson
from aiohttp import web


@dataclass
class Fault:
    """One fault-injection rule: answer the next `times` matching requests with `status`.

    A rule matches a request whose method is `method` (any when None; stored upper-case)
    and whose path contains `path_contains` (any when None). Each fake renders the fault
    with its own vendor error body, using `message` and `code` when given.
    """

    status: int
    method: str | None = None
    path_contains: str | None = None
    retry_after: int | str | None = None
    times: int = 1
    message: str | None = None
    code: str | None = None
    delay: float = 0.0


class FakeServer:
    """Subclasses add their routes in `routes`; `running()` serves them on a free port."""

    def __init__(self) -> None:
        self.port = 0
        self.lock = threading.Lock()
        self._faults: list[Fault] = []

    def _add_fault(self, fault: Fault) -> None:
        """Queue a fault rule, after those already queued."""
        with self.lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str, *, scoped_only: bool = False) -> Fault | None:
        """The first rule matching a request, with one of its `times` used up (hold `lock`).

        With `scoped_only`, rules without a `path_contains` do not match.
        """
        for fault in self._faults:
            if fault.method not in (None, method):
                continue
            if fault.path_contains is None:
                if scoped_only:
                    continue
            elif fault.path_contains not in path:
                continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        """Add this fake's handlers to `app`."""
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[Self]:
        """Serve on 127.0.0.1 (a free port) in a background thread while the block runs."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner_box: dict[str, web.AppRunner] = {}

        async def start() -> None:
            app = web.Application()
            self.routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
            runner_box["runner"] = runner

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner_box["runner"].cleanup())
            loop.close()

        thread = threading.Thread(target=serve, daemon=True, name=type(self).__name__)
        thread.start()
        if not started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


class RestFakeServer(FakeServer):
    """A fake whose faults are matched by method and path, with the common `fail_next`."""

    def fail_next(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        status: int = 503,
        retry_after: int | str | None = None,
        times: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` and the vendor's error body.

        Nothing changes on a failed request. Rules are tried in the order they were added.
        """
        self._add_fault(
            Fault(
                status,
                method.upper() if method else None,
                path_contains,
                retry_after,
                times,
                message,
            )
        )


async def read_json(request: web.Request) -> tuple[Any, bool]:
    """The request's JSON body (None when empty), and whether it failed to parse (then the
    body is returned as text, for the request log)."""
    raw = await request.read()
    if not raw.strip():
        return None, False
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace"), True
