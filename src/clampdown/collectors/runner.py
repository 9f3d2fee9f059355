"""Collectors of the configured sources: one pull, a read-only check, and the `serve` loop.

In `serve`, each enabled source has a task that pulls, waits `interval`, and pulls again; the
first pull comes `interval` after the last attempt recorded (at once for a new source), so
restarting the server does not hammer the detector. Stopping cancels the tasks: a pull cut
short leaves its checkpoint, and the next one reads the same records again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime

import aiohttp
import structlog

from clampdown.actions.http import TargetHttp
from clampdown.collectors.base import (
    Clock,
    Collector,
    PullError,
    PullResult,
    describe,
    pull,
    utc_now,
)
from clampdown.collectors.client import Sleep
from clampdown.collectors.defender_alerts import DefenderAlerts
from clampdown.collectors.defender_assessments import DefenderAssessments
from clampdown.collectors.graph_alerts import GraphAlerts
from clampdown.collectors.settings import SourceSettings
from clampdown.config import Config
from clampdown.errors import InputError
from clampdown.services import Clampdown
from clampdown.store import sources

log = structlog.get_logger("clampdown.collectors")

COLLECTORS: dict[str, type[Collector]] = {
    kind.type: kind for kind in (DefenderAlerts, GraphAlerts, DefenderAssessments)
}


def make_collector(
    settings: SourceSettings, session: aiohttp.ClientSession, *, sleep: Sleep = asyncio.sleep
) -> Collector:
    """The collector of one source; its calls reach only its service and login addresses."""
    http = TargetHttp(session, settings.origins(), settings.name)
    return COLLECTORS[settings.type](settings, http, sleep=sleep)


def find(config: Config, name: str) -> SourceSettings:
    """The configured source `name`; InputError naming the ones there are."""
    for settings in config.sources:
        if settings.name == name:
            return settings
    known = ", ".join(s.name for s in config.sources) or "none are configured"
    raise InputError(f"no source named {name!r} ({known})")


async def pull_once(
    app: Clampdown, name: str, *, sleep: Sleep = asyncio.sleep, clock: Clock = utc_now
) -> PullResult:
    """Pull source `name` once (enabled or not); PullError when it fails."""
    settings = find(app.config, name)
    async with aiohttp.ClientSession() as session:
        return await pull(app, make_collector(settings, session, sleep=sleep), clock=clock)


async def check_sources(
    config: Config,
    names: Iterable[str] | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
    timeout: float = 60.0,
) -> dict[str, tuple[bool, str]]:
    """Sign in and read one page of each source named (default: every enabled one).

    Nothing is ingested. Each answer is (ok, what was seen or why it failed).
    """
    chosen = (
        [find(config, name) for name in names]
        if names is not None
        else [s for s in config.sources if s.enabled]
    )
    async with aiohttp.ClientSession() as session:

        async def one(settings: SourceSettings) -> tuple[bool, str]:
            try:
                async with asyncio.timeout(timeout):
                    collector = make_collector(settings, session, sleep=sleep)
                    return True, await collector.check(now=utc_now())
            except TimeoutError:
                return False, f"source {settings.name}: no answer within {timeout:g}s"
            except Exception as exc:
                return False, describe(exc, settings.name)

        results = await asyncio.gather(*(one(settings) for settings in chosen))
    return {s.name: result for s, result in zip(chosen, results, strict=True)}


@asynccontextmanager
async def running_sources(app: Clampdown, *, sleep: Sleep = asyncio.sleep) -> AsyncIterator[None]:
    """Pull every enabled source on its interval while the block runs."""
    enabled = [s for s in app.config.sources if s.enabled]
    if not enabled:
        yield
        return
    async with aiohttp.ClientSession() as session:
        tasks = [
            asyncio.create_task(_loop(app, make_collector(s, session, sleep=sleep)), name=s.name)
            for s in enabled
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _loop(app: Clampdown, collector: Collector) -> None:
    interval = collector.settings.interval.total_seconds()
    try:
        delay = await asyncio.to_thread(_first_delay, app, collector.name, interval, utc_now())
    except Exception:
        log.exception("source state unreadable", source=collector.name)
        delay = 0.0
    while True:
        await asyncio.sleep(delay)
        try:
            await pull(app, collector)
        except PullError:
            pass  # recorded and logged by the pull
        except Exception:
            # Recording the failure itself failed (the database, say): try again next time.
            log.exception("source pull failed", source=collector.name)
        delay = interval


def _first_delay(app: Clampdown, name: str, interval: float, now: datetime) -> float:
    with app.db.read() as conn:
        state = sources.get(conn, name)
    if state is None or state.last_attempt_at is None:
        return 0.0
    since = (now - state.last_attempt_at).total_seconds()
    return min(interval, max(0.0, interval - since))
