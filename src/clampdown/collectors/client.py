"""Authenticated reads of one source's service (ARM or Graph), retried and paged.

Sign-in, bearer tokens and error bodies are the Azure targets' own (`TokenCache`,
`ArmClient`): a 401 fetches a new token once; ARM and Graph error bodies
(`{"error": {"code", "message"}}`) become the message. 429 and 5xx (and a token endpoint
that is busy) are retried up to `max_attempts` times per request, waiting as Retry-After says
or with exponential backoff and jitter. A next link is followed only when it points at the
configured service (same scheme, host and port): the bearer token goes nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import Reply, origin, retry_after
from clampdown.engine.retry import backoff
from clampdown.errors import PermanentError, TransientError
from clampdown.model import JSON
from clampdown.targets.azure.arm import ArmClient, arm_error
from clampdown.targets.azure.token import TokenCache

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
MAX_PAGES = 10_000
"""A pull reading more pages than this stops with an error rather than loop forever."""

Sleep = Callable[[float], Awaitable[None]]


class _Service(ArmClient):
    """ArmClient's calls, with a source's headers and refusals that say what to fix."""

    def __init__(
        self,
        source: str,
        base_url: str,
        tokens: TokenCache,
        http: HttpPort,
        *,
        timeout: float,
        headers: Mapping[str, str],
        forbidden_hint: str,
    ) -> None:
        super().__init__(source, base_url, "", tokens, http, timeout=timeout)
        self.headers = dict(headers)
        self.forbidden_hint = forbidden_hint

    async def _send(
        self, method: str, url: str, token: str, body: JSON | None, if_match: str | None
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        headers.update(self.headers)
        return await self.http.request(method, url, headers=headers, timeout=self.timeout)

    def raise_for(self, reply: Reply, what: str) -> None:
        status = reply.status
        if 200 <= status < 300:
            return
        code, message = arm_error(reply)
        text = f"source {self.target}: {what} answered {status} {code}: {message}"
        if status in (408, 429) or status >= 500:
            raise TransientError(text, retry_after=retry_after(reply.headers))
        if status == 401:
            text += " (check identity.tenant_id, identity.client_id and the service URL)"
        elif status == 403:
            text += f" ({self.forbidden_hint})"
        raise PermanentError(text)


class SourceClient:
    """GETs of JSON pages from one service, for one source."""

    def __init__(
        self,
        source: str,
        base_url: str,
        tokens: TokenCache,
        http: HttpPort,
        *,
        timeout: float,
        max_attempts: int,
        headers: Mapping[str, str] | None = None,
        forbidden_hint: str,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.max_attempts = max_attempts
        self.sleep = sleep
        self._service = _Service(
            source,
            self.base_url,
            tokens,
            http,
            timeout=timeout,
            headers=headers or {},
            forbidden_hint=forbidden_hint,
        )

    async def get_json(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`; transient failures retried, the rest raised."""
        what = f"GET {urlsplit(url).path}"
        attempt = 1
        while True:
            try:
                reply = await self._service.send("GET", url)
                self._service.raise_for(reply, what)
            except TransientError as exc:
                if attempt >= self.max_attempts:
                    raise
                await self.sleep(
                    backoff(
                        attempt,
                        initial=BACKOFF_INITIAL,
                        maximum=BACKOFF_MAX,
                        retry_after=exc.retry_after,
                    )
                )
                attempt += 1
                continue
            body = reply.json()
            if not isinstance(body, dict):
                raise PermanentError(f"source {self.source}: {what} answered no JSON object")
            return body

    async def pages(self, url: str, next_key: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The `value` list of every page, following `next_key` links to the end."""
        seen: set[str] = set()
        while True:
            body = await self.get_json(url)
            value = body.get("value")
            if not isinstance(value, list):
                raise PermanentError(f"source {self.source}: a page without a 'value' list")
            yield [record for record in value if isinstance(record, dict)]
            link = body.get(next_key)
            if link is None or link == "":
                return
            seen.add(url)
            url = self._own(link, next_key)
            if url in seen or len(seen) >= MAX_PAGES:
                raise PermanentError(
                    f"source {self.source}: {next_key} keeps going after {len(seen)} pages"
                )

    def _own(self, link: object, next_key: str) -> str:
        if not isinstance(link, str) or urlsplit(link).scheme not in ("https", "http"):
            raise PermanentError(f"source {self.source}: {next_key} is not a URL")
        if origin(link) != origin(self.base_url):
            raise PermanentError(
                f"source {self.source}: refusing a {next_key} to {urlsplit(link).hostname}, "
                f"outside {self.base_url}"
            )
        return link
