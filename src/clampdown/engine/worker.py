"""The worker loop: claim due jobs, run them concurrently, sleep until the next is due."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from sqlalchemy import Connection

from clampdown.config import Config
from clampdown.engine.decisions import DecisionCache
from clampdown.engine.executor import Adopted, Executor
from clampdown.engine.ports import refresh_decisions
from clampdown.metrics.steps import IGNORED, StepMetrics
from clampdown.store import jobs
from clampdown.store.db import Database

log = structlog.get_logger("clampdown.worker")

_HOST = socket.gethostname()


def _started(pid: int) -> str:
    """When a process started (clock ticks since boot), or "" where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may hold spaces, so count from its closing ')'.
    return stat.rpartition(")")[2].split()[19]


def worker_id() -> str:
    """host:pid:start:nonce, so that a restarted worker can tell its dead predecessors' leases.

    The start time tells a process apart from an earlier one that had the same pid (a
    restarted container's pid 1).
    """
    pid = os.getpid()
    return f"{_HOST}:{pid}:{_started(pid)}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str) -> bool:
    """True for a lease owner on this host whose process no longer runs."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    pid, started = int(parts[1]), parts[2]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # The pid runs: it is the owner only if it started when the owner did.
    return bool(started) and _started(pid) not in ("", started)


class Worker:
    """Runs the engine inside an asyncio loop (the `serve` process or the CLI).

    Jobs reach it two ways: adopted straight from planning in this process (already leased to
    this worker, with their finding at hand), or claimed from the job table when something
    may be waiting there: at start, when poked, when a retry or an expiry falls due, and
    every `poll_interval` for work from other processes.
    """

    def __init__(
        self, db: Database, config: Config, cache: DecisionCache, *, metrics: StepMetrics = IGNORED
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.config = config
        self.cache = cache
        self.owner = worker_id()
        self.lease = timedelta(seconds=config.engine.lease_seconds)
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._adopted: list[Adopted] = []
        self._look = True
        self._starved = False
        self._next_look: datetime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failures = 0
        """Consecutive failed passes (database unreachable, ...); 0 when healthy."""

    def poke(self) -> None:
        """Work was committed to the job table: claim it now rather than at the next poll."""
        self._look = True
        self.wake.set()

    def lease_for_new_jobs(self) -> tuple[str, datetime]:
        """The lease that jobs created in this process take, so that this worker runs them."""
        return self.owner, datetime.now(UTC) + self.lease

    def adopt(self, items: list[Adopted]) -> None:
        """Run jobs leased to this worker when they were created (call on the loop's thread)."""
        self._adopted.extend(items)
        self.wake.set()

    def _due(self, when: datetime) -> None:
        # Called from the writer thread when a retry or an expiry is scheduled.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._look_at, when)

    def _look_at(self, when: datetime) -> None:
        if self._next_look is None or when < self._next_look:
            self._next_look = when
            self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then let running jobs finish."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._recover)
        settings = self.config.engine
        connector = aiohttp.TCPConnector(limit=settings.concurrency, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as session:
            executor = Executor(
                self.db, self.config, self.cache, session, due=self._due, metrics=self.metrics
            )
            while not stop.is_set():
                try:
                    await self._turn(executor, stop)
                except Exception:
                    # A database outage must not end the engine: log, wait, and look again.
                    log.exception("worker pass failed; retrying")
                    self.failures += 1
                    self._look = True
                    await asyncio.sleep(self.config.engine.poll_interval)
                else:
                    self.failures = 0
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            await executor.drivers.close()

    async def _turn(self, executor: Executor, stop: asyncio.Event) -> None:
        """One pass: start handed-over jobs, claim when due, then sleep if nothing is left."""
        self.wake.clear()
        adopted, self._adopted = self._adopted, []
        for item in adopted:
            self._spawn(executor.run(item.job, item))
        if self._look:
            await self._claim_into(executor)
        busy = bool(self._running or self._adopted or self._look)
        if busy:
            self.idle.clear()
        else:
            self.idle.set()
        if not (self._adopted or self._look):
            await self._sleep(stop)

    async def _claim_into(self, executor: Executor) -> None:
        self._look = False
        free = self.config.engine.concurrency - len(self._running)
        self._starved = free <= 0
        if self._starved:
            return
        claimed = await self.db.run_async(self._claim(free))
        for job in claimed:
            self._spawn(executor.run(job))
        # A full batch means more may be waiting.
        self._look = len(claimed) == free

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._starved:
            self._look = True
        self.wake.set()

    def _recover(self) -> None:
        with self.db.write() as conn:
            freed = jobs.release_dead(conn, is_dead_local_owner)
        if freed:
            log.info("resumed work of a stopped worker", jobs=freed)
        refresh_decisions(self.db, self.cache)

    def _claim(self, limit: int) -> Callable[[Connection], list[jobs.Job]]:
        def claim(conn: Connection) -> list[jobs.Job]:
            now = datetime.now(UTC)
            return jobs.claim(conn, owner=self.owner, now=now, lease=self.lease, limit=limit)

        return claim

    async def _sleep(self, stop: asyncio.Event) -> None:
        """Wait for a wake-up, the next known due time, or the poll interval."""
        timeout = self.config.engine.poll_interval
        if self._next_look is not None:
            timeout = min(timeout, max(0.0, (self._next_look - datetime.now(UTC)).total_seconds()))
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if done:
            return
        # Timed out: something may be due, and other processes may have changed the list.
        self._look = True
        if self._next_look is not None and self._next_look <= datetime.now(UTC):
            self._next_look = None
        await asyncio.to_thread(refresh_decisions, self.db, self.cache)
