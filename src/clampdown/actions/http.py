"""Outbound HTTP for actions: aiohttp, only to configured targets, errors classified once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.model import JSON

# Worth retrying; the first set says the request was not processed, the second may have been.
_NOT_PROCESSED = frozenset({408, 425, 429, 503})
_MAYBE_PROCESSED = frozenset({500, 502, 504})


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL: the unit outbound calls are allowed to."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (case-insensitive lookup with `header`) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value, whatever its case."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        """The body as JSON; None when it is empty or not JSON."""
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None


class TargetHttp:
    """The HttpPort of one step: it reaches only the origins of the step's configured target."""

    def __init__(
        self, session: aiohttp.ClientSession, allowed_urls: list[str], target_name: str
    ) -> None:
        self._session = session
        self._origins = {origin(url) for url in allowed_urls}
        self._target = target_name

    async def post_json(
        self, url: str, body: JSON, *, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        reply = await self.request("POST", url, json=body, headers=headers, timeout=timeout)
        return reply.status, reply.headers, reply.body

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: JSON | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """One call; raises TransientError when no answer came back."""
        if origin(url) not in self._origins:
            raise PreconditionError(f"target {self._target}: refusing a call outside its address")
        sent_headers = dict(headers or {})
        data: bytes | dict[str, str] | None = form
        if json is not None:
            data = orjson.dumps(json)
            sent_headers.setdefault("Content-Type", "application/json")
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=sent_headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                return Reply(resp.status, dict(resp.headers), await resp.read())
        except TimeoutError as exc:
            raise TransientError(
                f"target {self._target}: timed out after {timeout:g}s", maybe_delivered=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # Nothing was sent: the connection was never made.
            raise TransientError(f"target {self._target}: cannot connect") from exc
        except aiohttp.ClientError as exc:
            # The URL may carry a signature: name the target, never the URL.
            raise TransientError(
                f"target {self._target}: {type(exc).__name__}", maybe_delivered=True
            ) from exc


def check_status(target: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Raise the right ActionError for a non-2xx answer; 429/5xx are transient."""
    if 200 <= status < 300:
        return
    detail = body[:200].decode("utf-8", "replace").strip()
    message = f"target {target} answered {status}" + (f": {detail}" if detail else "")
    if status in _NOT_PROCESSED or status in _MAYBE_PROCESSED:
        raise TransientError(
            message,
            retry_after=retry_after(headers),
            maybe_delivered=status in _MAYBE_PROCESSED,
        )
    raise PermanentError(message)


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from a Retry-After header given in seconds (dates are treated as absent)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None
