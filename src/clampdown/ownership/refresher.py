"""Reads API facts in the background: APIM API tags and Defender for APIs collections.

Every `context.interval`, for each configured service: `GET /apis` then `GET
/apis/{api}/tags` (api-version 2022-08-01), and `GET /providers/Microsoft.Security/
apiCollections` under the service (2023-11-15), each paged by `nextLink`. What is read
replaces the service's facts in the cache ingest reads; a failed read keeps the last facts
and is retried sooner. 429 and 5xx answers are retried within a read, after Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import TargetHttp, origin
from clampdown.errors import ClampdownError, PermanentError, TransientError
from clampdown.model import ApiCollection
from clampdown.ownership.enrich import Enricher
from clampdown.ownership.facts import FactsCache, api_key
from clampdown.ownership.settings import ApimContext, ContextConfig
from clampdown.targets.azure.arm import ArmClient, ArmError
from clampdown.targets.azure.token import Identity, TokenCache

log = structlog.get_logger("clampdown.context")

ATTEMPTS = 4
"""Tries of one page request that ARM throttles or fails with a 5xx."""
MAX_PAGES = 1000
"""Pages of one listing at most: a nextLink loop cannot keep a read going forever."""
RETRY_SOONER = 60.0
"""Seconds before a failed read is tried again (when the interval is longer)."""
_COLLECTIONS = "/providers/Microsoft.Security/apiCollections"
_COUNTERS = {
    "endpoints": "numberOfApiEndpoints",
    "unauthenticated": "numberOfUnauthenticatedApiEndpoints",
    "inactive": "numberOfInactiveApiEndpoints",
    "external": "numberOfExternalApiEndpoints",
    "sensitive_data": "numberOfApiEndpointsWithSensitiveDataExposed",
}

A = TypeVar("A")
Lifespan = Callable[[A], AbstractAsyncContextManager[None]]


@dataclass
class ServiceStatus:
    """How reading one service goes."""

    name: str
    apis: int = 0
    collections: int = 0
    last_success: datetime | None = None
    last_error: str = ""


class ContextRefresher:
    """Keeps the facts cache filled from the configured API Management services."""

    def __init__(
        self,
        settings: ContextConfig,
        cache: FactsCache,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.sleep = sleep
        self.status = {s.label: ServiceStatus(s.label) for s in settings.apim}

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Read every service once; True when all reads succeeded."""
        results = [await self._refresh_one(source, session) for source in self.settings.apim]
        return all(results)

    async def run(self, stop: asyncio.Event) -> None:
        """Read now, then every interval, until `stop` is set."""
        interval = self.settings.interval.total_seconds()
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    ok = await self.refresh(session)
                except Exception:  # the loop must outlive any one bad read
                    log.exception("reading API context crashed")
                    ok = False
                wait = interval if ok else min(interval, RETRY_SOONER)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)

    async def _refresh_one(self, source: ApimContext, session: aiohttp.ClientSession) -> bool:
        status = self.status[source.label]
        http = TargetHttp(session, source.origins(), f"context:{source.label}")
        client = _client(source, http)
        service = source.service_path()
        try:
            with _refused_hint("Reader on the API Management service"):
                tags = await self._tags(client, service)
            self.cache.replace_tags(service, tags)
            status.apis = len(tags)
            if source.collections:
                with _refused_hint("Security Reader, or set collections: false"):
                    counters = await self._collections(client, source)
                self.cache.replace_collections(service, counters)
                status.collections = len(counters)
        except (ClampdownError, ValueError) as exc:
            status.last_error = str(exc)
            log.warning("reading API context failed", service=source.label, error=str(exc))
            return False
        status.last_success = datetime.now(UTC)
        status.last_error = ""
        log.info(
            "read API context",
            service=source.label,
            apis=status.apis,
            collections=status.collections,
        )
        return True

    async def _tags(self, client: ArmClient, service: str) -> dict[str, tuple[str, ...]]:
        tags: dict[str, tuple[str, ...]] = {}
        async for api in self._list(client, "/apis"):
            name = api.get("name")
            if not isinstance(name, str) or not name:
                continue
            path = f"/apis/{quote(name, safe='')}/tags"
            names = [_tag_name(tag) async for tag in self._list(client, path)]
            tags[api_key(f"{service}/apis/{name}")] = tuple(n for n in names if n)
        return tags

    async def _collections(
        self, client: ArmClient, source: ApimContext
    ) -> dict[str, ApiCollection]:
        service = source.service_path()
        query = {"api-version": source.collections_api_version}
        found: dict[str, ApiCollection] = {}
        try:
            async for item in self._list(client, _COLLECTIONS, query):
                props = item.get("properties")
                props = props if isinstance(props, dict) else {}
                via = props.get("discoveredVia")
                name = item.get("name")
                if isinstance(via, str) and via.startswith("/"):
                    key = api_key(via)
                elif isinstance(name, str) and name:
                    key = api_key(f"{service}/apis/{name}")
                else:
                    continue
                found[key] = _counters(props)
        except ArmError as exc:
            if exc.status != 404:
                raise
            # No Defender for APIs on this service: no collection to count.
        return found

    async def _list(
        self, client: ArmClient, path: str, query: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        url: str | None = client.url(path, query)
        for _ in range(MAX_PAGES):
            if url is None:
                return
            body = await self._page(client, url, path)
            values = body.get("value")
            for item in values if isinstance(values, list) else []:
                if isinstance(item, dict):
                    yield item
            link = body.get("nextLink")
            url = _own(client, link) if isinstance(link, str) and link else None
        raise PermanentError(f"context {client.target}: GET {path} gave over {MAX_PAGES} pages")

    async def _page(self, client: ArmClient, url: str, path: str) -> dict[str, Any]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                reply = await client.send("GET", url)
                client.raise_for(reply, f"GET {path}")
            except TransientError as exc:
                if attempt == ATTEMPTS:
                    raise
                await self.sleep(min(exc.retry_after or 2.0**attempt, 60.0))
                continue
            body = reply.json()
            return body if isinstance(body, dict) else {}
        raise AssertionError("unreachable")


def _client(source: ApimContext, http: HttpPort) -> ArmClient:
    name = f"context:{source.label}"
    identity = Identity.of(name, source.identity)
    timeout = source.identity.timeout
    tokens = TokenCache(identity, http, timeout=timeout, clock=time.monotonic)
    url = source.management_url.rstrip("/") + source.service_path()
    return ArmClient(name, url, source.api_version, tokens, http, timeout=timeout)


@contextmanager
def _refused_hint(role: str) -> Iterator[None]:
    """A 403 names the role the reading application lacks (ARM's own hint is for writers)."""
    try:
        yield
    except ArmError as exc:
        if exc.status != 403:
            raise
        message = str(exc).split(" (the service principal needs")[0]
        raise PermanentError(f"{message} (the application needs {role})") from exc


def _own(client: ArmClient, link: str) -> str:
    # The bearer token goes to ARM only, whatever a nextLink names.
    if origin(link) != origin(client.service_url):
        raise PermanentError(f"target {client.target}: ARM named a next page outside ARM")
    return link


def _tag_name(tag: dict[str, Any]) -> str:
    props = tag.get("properties")
    shown = props.get("displayName") if isinstance(props, dict) else None
    name = shown if isinstance(shown, str) and shown else tag.get("name")
    return name.strip() if isinstance(name, str) else ""


def _counters(props: dict[str, Any]) -> ApiCollection:
    values: dict[str, Any] = {}
    for field, key in _COUNTERS.items():
        value = props.get(key)
        values[field] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    label = props.get("sensitivityLabel")
    values["sensitivity_label"] = label if isinstance(label, str) else ""
    return ApiCollection(**values)


def refreshing(enricher: Enricher, inner: Lifespan[A]) -> Lifespan[A]:
    """`inner`, with the context refresher running beside it when `context` is configured."""
    settings = enricher.settings

    @asynccontextmanager
    async def lifespan(app: A) -> AsyncIterator[None]:
        if settings is None or not settings.apim:
            async with inner(app):
                yield
            return
        stop = asyncio.Event()
        task = asyncio.create_task(ContextRefresher(settings, enricher.facts).run(stop))
        try:
            async with inner(app):
                yield
        finally:
            # Reads only: a read cut short changes nothing, and shutdown need not wait for it.
            stop.set()
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    return lifespan
