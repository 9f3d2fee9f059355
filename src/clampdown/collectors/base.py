"""What every source type provides, and one pull: page fully, ingest, then checkpoint.

A pull reads from `checkpoint - overlap` (the first one from `now - lookback - overlap`),
ingests each page as it arrives (through `Clampdown.ingest_async`, so normalization,
idempotency and planning are those of any delivery), and moves the checkpoint to the time
the pull started only once every page was ingested. A pull that fails or is interrupted
leaves the checkpoint: the next one reads the same records again, and ingest being
idempotent, nothing is duplicated or missed. The overlap absorbs the detector's delay
between an alert's time and the moment the API lists it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog

from clampdown.actions.contract import HttpPort
from clampdown.collectors.client import Sleep, SourceClient
from clampdown.collectors.settings import SourceSettings
from clampdown.errors import ClampdownError, NormalizationError
from clampdown.services import Clampdown, IngestedFinding
from clampdown.store import sources
from clampdown.targets.azure.token import Identity, TokenCache

log = structlog.get_logger("clampdown.collectors")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class PullError(ClampdownError):
    """A pull or a check of a source failed; the message names the source and why."""


@dataclass(frozen=True)
class PullResult:
    """What one pull read and ingested."""

    source: str
    since: datetime
    checkpoint: datetime
    pages: int
    received: int
    """Records the detector listed."""
    kept: int
    """Records this source's filters kept, handed to ingest."""
    new: int
    """Findings stored for the first time."""
    repeats: int
    """Findings already stored (the overlap, or records read again)."""
    rejected: int
    """Records no normalizer could read (logged, skipped)."""

    def as_json(self) -> dict[str, Any]:
        """A plain dict for --json output."""
        out = asdict(self)
        out["since"] = self.since.isoformat()
        out["checkpoint"] = self.checkpoint.isoformat()
        return out


class Collector(ABC):
    """One configured source: where its records are, which to keep, how they are shaped."""

    type: ClassVar[str]
    shape: ClassVar[str]
    """The delivery shape its records are ingested as."""
    token_scope: ClassVar[str]
    next_key: ClassVar[str] = "nextLink"
    headers: ClassVar[dict[str, str]] = {}
    forbidden_hint: ClassVar[str]
    """What a 403 means for this type: the permission the application lacks."""

    def __init__(self, settings: SourceSettings, http: HttpPort, *, sleep: Sleep = asyncio.sleep):
        self.settings = settings
        identity = Identity.of(settings.name, settings.identity, self.token_scope)
        tokens = TokenCache(identity, http, timeout=settings.identity.timeout)
        self.client = SourceClient(
            settings.name,
            settings.base_url(),
            tokens,
            http,
            timeout=settings.identity.timeout,
            max_attempts=settings.max_attempts,
            headers=self.headers,
            forbidden_hint=self.forbidden_hint,
            sleep=sleep,
        )

    @property
    def name(self) -> str:
        """The source's configured name."""
        return self.settings.name

    @abstractmethod
    def first_url(self, since: datetime) -> str:
        """The URL of the first page of records changed at or after `since`."""

    def keep(self, record: dict[str, Any], since: datetime) -> bool:
        """Whether a listed record is one this source ingests."""
        return True

    async def pages(self, since: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of records listed since `since`, before `keep` filters them."""
        async for page in self.client.pages(self.first_url(since), self.next_key):
            yield page

    async def check(self, *, now: datetime) -> str:
        """Sign in and read the first page, ingesting nothing; what was seen, in words."""
        since = now - self.settings.lookback - self.settings.overlap
        body = await self.client.get_json(self.first_url(since))
        value = body.get("value")
        if not isinstance(value, list):
            raise PullError(f"source {self.name}: a page without a 'value' list")
        kept = sum(1 for r in value if isinstance(r, dict) and self.keep(r, since))
        more = ", more pages follow" if body.get(self.next_key) else ""
        return f"signed in; first page: {len(value)} records, {kept} kept{more}"


def describe(exc: BaseException, source: str) -> str:
    """The message of a failure, naming the source (the shared Azure helpers say "target")."""
    if not isinstance(exc, ClampdownError):
        return f"source {source}: unexpected {type(exc).__name__}; see the log"
    text = str(exc)
    for old, new in (
        (f"target {source} client_secret:", f"source {source}: identity.client_secret:"),
        (f"target {source}:", f"source {source}:"),
        ("check the target's management_url", "check the source's service URL"),
        ("check the target's ", "check identity."),
    ):
        text = text.replace(old, new)
    return text if text.startswith(f"source {source}") else f"source {source}: {text}"


async def pull(app: Clampdown, collector: Collector, *, clock: Clock = utc_now) -> PullResult:
    """One pull of `collector`'s source into `app`; PullError (recorded) when it fails."""
    name, settings = collector.name, collector.settings
    started = clock()
    state = await asyncio.to_thread(_state, app, name)
    await app.db.run_async(lambda conn: sources.attempted(conn, name, now=started))
    base = state.checkpoint if state and state.checkpoint else started - settings.lookback
    # A checkpoint ahead of our clock (it ran fast, then was corrected) must not hide what
    # the detector changes meanwhile: never start later than now.
    since = min(base, started) - settings.overlap
    pages = received = kept = new = repeats = rejected = 0
    try:
        async for page in collector.pages(since):
            pages += 1
            received += len(page)
            records = [record for record in page if collector.keep(record, since)]
            kept += len(records)
            results, bad = await _ingest(app, records, collector)
            new += sum(1 for r in results if r.new)
            repeats += sum(1 for r in results if not r.new)
            rejected += bad
    except Exception as exc:
        message = describe(exc, name)
        if not isinstance(exc, ClampdownError):
            log.exception("source pull failed", source=name)
        else:
            log.warning("source pull failed", source=name, error=message)
        failed_at = clock()
        await app.db.run_async(
            lambda conn: sources.failed(conn, name, error=message, now=failed_at)
        )
        raise PullError(message) from exc
    ended = clock()
    await app.db.run_async(
        lambda conn: sources.succeeded(
            conn, name, checkpoint=started, pulled=received, ingested=new, now=ended
        )
    )
    result = PullResult(name, since, started, pages, received, kept, new, repeats, rejected)
    log.info("source pulled", **result.as_json())
    return result


def _state(app: Clampdown, name: str) -> sources.SourceState | None:
    with app.db.read() as conn:
        return sources.get(conn, name)


async def _ingest(
    app: Clampdown, records: list[dict[str, Any]], collector: Collector
) -> tuple[list[IngestedFinding], int]:
    """Ingest a page; a record no normalizer reads is skipped (and logged), not fatal."""
    if not records:
        return [], 0
    try:
        return await app.ingest_async(records, shape=collector.shape), 0
    except NormalizationError:
        pass
    # One record spoils the batch: take the others one by one, or one bad record would
    # stop the source for good.
    results: list[IngestedFinding] = []
    rejected = 0
    for record in records:
        try:
            results.extend(await app.ingest_async(record, shape=collector.shape))
        except NormalizationError as exc:
            rejected += 1
            log.warning("source record skipped", source=collector.name, error=str(exc))
    return results, rejected
