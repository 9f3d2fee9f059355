"""Connections: SQLite (WAL, one file) by default, PostgreSQL by URL; schema by migrations."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

import orjson
import structlog
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError

from clampdown.errors import ConfigError

T = TypeVar("T")
log = structlog.get_logger("clampdown.store")
_WRITE = "clampdown_write"

MAX_BATCH = 256
"""Most write functions committed together by the group-commit writer."""


@dataclass
class _Write(Generic[T]):
    fn: Callable[[Connection], T]
    future: Future[T] = field(default_factory=Future)


class Database:
    """One database, with a write path that serializes writers where the backend needs it.

    `run` and `run_async` hand a function to one writer thread, which runs every function
    waiting at that moment in a single transaction (group commit): each caller resumes once
    the transaction holding its writes is committed. `write` is a plain transaction, for
    rare writes and for tools.
    """

    def __init__(self, url: str, *, synchronous: str = "NORMAL") -> None:
        url = _driver_url(url)
        try:
            self.engine: Engine = _make_engine(url, synchronous)
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(f"not a usable database URL: {exc}") from exc
        except ImportError as exc:
            raise ConfigError(f"no driver for this database URL: {exc.name}") from exc
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite allows one writer: a process-wide lock avoids "database is locked" retries.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._queue: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_guard = threading.Lock()

    def submit(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue `fn` for the group-commit writer; the future resolves after the commit."""
        if self._writer is None:
            self._start_writer()
        item: _Write[T] = _Write(fn)
        self._queue.put(item)
        return item.future

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a group-committed write transaction and return its result."""
        return self.submit(fn).result()

    async def run_async(self, fn: Callable[[Connection], T]) -> T:
        """`run` for coroutines: the event loop is not blocked while waiting."""
        return await asyncio.wrap_future(self.submit(fn))

    def _start_writer(self) -> None:
        with self._writer_guard:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="clampdown-writer", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch: list[_Write[Any]] = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit_safely(batch)
                    return
                batch.append(item)
            self._commit_safely(batch)

    def _commit_safely(self, batch: list[_Write[Any]]) -> None:
        # A caller that gave up (its coroutine was cancelled) is dropped before anything runs;
        # the others can no longer be cancelled, so their results can always be delivered.
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        try:
            self._commit(live)
        except BaseException as exc:
            # The writer must outlive any failure, or every later write would wait forever.
            log.exception("group commit failed")
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)

    def _commit(self, batch: list[_Write[Any]]) -> None:
        if not batch:
            return
        results: list[Any] = []
        try:
            with self.write() as conn:
                for item in batch:
                    results.append(item.fn(conn))
        except Exception:
            # Something in the batch failed: run each alone, so that only that one fails.
            for item in batch:
                self._one(item)
            return
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)

    def _one(self, item: _Write[Any]) -> None:
        try:
            with self.write() as conn:
                result = item.fn(conn)
        except Exception as exc:  # handed to the waiting caller
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends without an exception."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        # BEGIN IMMEDIATE (see _make_engine): a transaction that reads before it writes must
        # not fail when another process (the CLI beside `serve`) wrote in between.
        with (
            self._write_lock,
            self.engine.connect().execution_options(**{_WRITE: True}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection."""
        with self.engine.connect() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema up to date (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option(
            "script_location", str(resources.files("clampdown.store") / "migrations")
        )
        try:
            with self.write() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise ConfigError(f"cannot open the database: {exc.orig}") from exc

    def dispose(self) -> None:
        """Stop the writer (after the writes already queued) and close every connection."""
        with self._writer_guard:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()
        self.engine.dispose()


def _driver_url(url: str) -> str:
    # Users write postgresql://; psycopg 3 is the driver we ship.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


_JSON = {"json_serializer": _json, "json_deserializer": orjson.loads}


def _make_engine(url: str, synchronous: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **_JSON)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ConfigError("an in-memory SQLite database is not durable; give a file path")
    engine = create_engine(url, pool_size=10, max_overflow=20, **kwargs, **_JSON)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN be the only transaction control (pysqlite otherwise defers it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN"
        )

    return engine
