"""A localhost aiohttp server run from a background thread, the base of every fake."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from aiohttp import web


class FakeServer:
    """Subclasses add their routes in `routes`; `running()` serves them on a free port."""

    def __init__(self) -> None:
        self.port = 0
        self.lock = threading.Lock()

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
