"""The worker loop: claim due jobs, run them concurrently, sleep until the next is due."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from sqlalchemy import Connection

from clampdown.config import Config
from clampdown.engine.decisions import DecisionCache
from clampdown.engine.executor import Executor
from clampdown.engine.ports import refresh_decisions
from clampdown.store import jobs
from clampdown.store.db import Database

log = structlog.get_logger("clampdown.worker")

_HOST = socket.gethostname()


def worker_id() -> str:
    """host:pid:nonce, so a restarted worker can tell its dead predecessors' leases."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str) -> bool:
    """True for a lease owner on this host whose process no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # an earlier process that had our pid; the caller skips its own id
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Worker:
    """Runs the engine inside an asyncio loop (the `serve` process or the CLI)."""

    def __init__(self, db: Database, config: Config, cache: DecisionCache) -> None:
        self.db = db
        self.config = config
        self.cache = cache
        self.owner = worker_id()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def poke(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then let running jobs finish."""
        await asyncio.to_thread(self._recover)
        settings = self.config.engine
        connector = aiohttp.TCPConnector(limit=settings.concurrency, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as session:
            executor = Executor(self.db, self.config, self.cache, session, wake=self.wake)
            while not stop.is_set():
                self.wake.clear()
                free = settings.concurrency - len(self._running)
                claimed = await self.db.run_async(self._claim(free)) if free > 0 else []
                for job in claimed:
                    task = asyncio.create_task(executor.run(job))
                    self._running.add(task)
                    task.add_done_callback(self._done)
                if claimed:
                    self.idle.clear()
                    continue
                if not self._running:
                    self.idle.set()
                await self._sleep(stop)
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.wake.set()

    def _recover(self) -> None:
        with self.db.write() as conn:
            freed = jobs.release_dead(
                conn, lambda owner: owner != self.owner and is_dead_local_owner(owner)
            )
        if freed:
            log.info("resumed work of a stopped worker", jobs=freed)
        refresh_decisions(self.db, self.cache)

    def _claim(self, limit: int) -> Callable[[Connection], list[jobs.Job]]:
        lease = timedelta(seconds=self.config.engine.lease_seconds)

        def claim(conn: Connection) -> list[jobs.Job]:
            now = datetime.now(UTC)
            return jobs.claim(conn, owner=self.owner, now=now, lease=lease, limit=limit)

        return claim

    async def _sleep(self, stop: asyncio.Event) -> None:
        timeout = self.config.engine.poll_interval
        due = await asyncio.to_thread(self._next_due)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - datetime.now(UTC)).total_seconds()))
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        # Other processes may have changed the list: follow the stream between jobs.
        await asyncio.to_thread(refresh_decisions, self.db, self.cache)

    def _next_due(self) -> datetime | None:
        with self.db.read() as conn:
            return jobs.next_due(conn)
