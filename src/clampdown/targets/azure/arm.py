"""A small Azure Resource Manager client for one API Management service.

Every call carries the api-version and a bearer token (fetched again once when ARM answers
401). Reads return the resource with its ETag; writes take an If-Match and wait for
long-running operations (201/202 with Azure-AsyncOperation or Location) to finish, polling
as Retry-After says, within the target's timeout. ARM error bodies
(`{"error": {"code", "message", "details"}}`) become the exception text: 429 and 5xx raise
TransientError with the Retry-After, every other refusal an `ArmError` (a PermanentError)
that keeps the status and code for callers that handle some of them (404, 412).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import Reply, origin, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.model import JSON
from clampdown.targets.azure.token import TokenCache

DEFAULT_POLL_SECONDS = 2.0
"""Wait between polls of a long-running operation when ARM gives no Retry-After."""

_DONE = {"succeeded": "Succeeded", "failed": "Failed", "canceled": "Canceled"}


class ArmError(PermanentError):
    """ARM refused a call; `status` and `code` say how (404 ResourceNotFound, 412, ...)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Resource:
    """A resource as ARM returned it, with the ETag to send back in If-Match."""

    body: dict[str, Any]
    etag: str | None

    @property
    def properties(self) -> dict[str, Any]:
        """The resource's `properties` object (empty when it has none)."""
        props = self.body.get("properties")
        return props if isinstance(props, dict) else {}


class ArmClient:
    """Calls under one service's ARM URL, authenticated, classified and completed."""

    def __init__(
        self,
        target: str,
        service_url: str,
        api_version: str,
        tokens: TokenCache,
        http: HttpPort,
        *,
        timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.service_url = service_url.rstrip("/")
        self.api_version = api_version
        self.tokens = tokens
        self.http = http
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """The URL of `path` under the service, with the api-version and `query`."""
        params = {"api-version": self.api_version, **(query or {})}
        return f"{self.service_url}{path}?{urlencode(params, safe='$')}"

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> Resource | None:
        """The resource at `path`, or None when ARM answers 404."""
        reply = await self.send("GET", self.url(path, query))
        if reply.status == 404:
            return None
        self.raise_for(reply, f"GET {path}")
        body = reply.json()
        return Resource(body if isinstance(body, dict) else {}, reply.header("ETag"))

    async def write(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        if_match: str | None = None,
    ) -> Reply:
        """A write that has taken effect when this returns (long-running ones included)."""
        what = f"{method} {path}"
        reply = await self.send(method, self.url(path), body=body, if_match=if_match)
        self.raise_for(reply, what)
        return await self._complete(reply, what)

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: JSON | None = None,
        if_match: str | None = None,
    ) -> Reply:
        """One call with a bearer token, sent again with a new token after a 401."""
        token = await self.tokens.get()
        reply = await self._send(method, url, token, body, if_match)
        if reply.status == 401:
            # Revoked or expired early: a 401 means nothing was done, so resending is safe.
            self.tokens.invalidate(token)
            reply = await self._send(method, url, await self.tokens.get(), body, if_match)
        return reply

    async def _send(
        self, method: str, url: str, token: str, body: JSON | None, if_match: str | None
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return await self.http.request(
            method, url, json=body, headers=headers, timeout=self.timeout
        )

    def raise_for(self, reply: Reply, what: str) -> None:
        """Raise the error an ARM answer stands for; nothing for 2xx."""
        status = reply.status
        if 200 <= status < 300:
            return
        code, message = arm_error(reply)
        text = f"target {self.target}: {what} answered {status} {code}: {message}"
        if status in (408, 429) or status >= 500:
            raise TransientError(
                text,
                retry_after=retry_after(reply.headers),
                maybe_delivered=status >= 500 and status != 503,
            )
        if status == 401:
            text += " (check tenant_id, client_id and management_url)"
        elif status == 403:
            text += (
                " (the service principal needs the API Management Service Contributor role"
                " on this service)"
            )
        raise ArmError(text, status=status, code=code)

    async def _complete(self, reply: Reply, what: str) -> Reply:
        monitor = reply.header("Azure-AsyncOperation")
        location = reply.header("Location")
        if reply.status not in (201, 202) or not (monitor or location):
            return reply
        deadline = self.clock() + self.timeout
        wait = retry_after(reply.headers)
        while True:
            await self._pause(wait, deadline, what)
            if monitor:
                poll = await self.send("GET", self._own(monitor))
                self.raise_for(poll, f"status of {what}")
                status = _DONE.get(str(_field(poll.json(), "status")).lower())
                if status == "Succeeded":
                    return poll
                if status is not None:
                    code, message = _error_of(_field(poll.json(), "error"))
                    raise ArmError(
                        f"target {self.target}: {what} {status.lower()}: {code}: {message}",
                        status=poll.status,
                        code=code,
                    )
            else:
                assert location is not None
                poll = await self.send("GET", self._own(location))
                if poll.status != 202:
                    self.raise_for(poll, f"result of {what}")
                    return poll
                location = poll.header("Location") or location
            wait = retry_after(poll.headers)

    async def _pause(self, wait: float | None, deadline: float, what: str) -> None:
        seconds = DEFAULT_POLL_SECONDS if wait is None else wait
        if self.clock() + seconds > deadline:
            raise TransientError(
                f"target {self.target}: {what} still running after {self.timeout:g}s",
                retry_after=seconds,
                maybe_delivered=True,
            )
        await self.sleep(seconds)

    def _own(self, url: str) -> str:
        # The bearer token goes to ARM only, whatever a header names.
        if origin(url) != origin(self.service_url) or urlsplit(url).scheme not in ("https", "http"):
            raise PermanentError(
                f"target {self.target}: ARM named an operation to poll outside management_url"
            )
        return url


def arm_error(reply: Reply) -> tuple[str, str]:
    """The code and message of an ARM error answer (details appended to the message)."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return _error_of(error)
    text = reply.body[:200].decode("utf-8", "replace").strip()
    return f"HTTP{reply.status}", text or "no error body"


def _error_of(error: Any) -> tuple[str, str]:
    if not isinstance(error, dict):
        return "Unknown", "no error given"
    code = str(error.get("code") or "Unknown")
    message = str(error.get("message") or "").strip()
    details = error.get("details")
    parts = []
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("message"):
            where = detail.get("target")
            parts.append(f"{where}: {detail['message']}" if where else str(detail["message"]))
    if parts:
        message = f"{message} ({'; '.join(parts)})" if message else "; ".join(parts)
    return code, message or "no message"


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None
