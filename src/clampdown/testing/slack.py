"""A fake Slack incoming webhook: `POST /services/T.../B.../<token>`, plain-text answers.

- 200 `ok`: posted (the payload is kept in `messages`);
- 400 `invalid_payload` (not JSON, or not an object), `no_text` (neither text nor blocks),
  `invalid_blocks` (blocks Block Kit refuses: types, text objects, lengths and counts);
- 403 `invalid_token` (revoked webhook, or a wrong token), `action_prohibited`;
- 404 `no_service` (removed webhook), `channel_not_found`;
- 410 `channel_is_archived`;
- 429 `rate_limited` with Retry-After, when `throttle` is on and more than `per_second`
  messages reach the webhook within one second (a fixed window; only posted messages count);
- 500 `internal_error` through `fail_next`.

Like Slack, it also takes `application/x-www-form-urlencoded` with the JSON in `payload`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from clampdown.testing.server import FakeServer, Fault

HookState = Literal["active", "revoked", "prohibited", "removed", "channel_not_found", "archived"]
_REFUSALS: dict[str, tuple[int, str]] = {
    "revoked": (403, "invalid_token"),
    "prohibited": (403, "action_prohibited"),
    "removed": (404, "no_service"),
    "channel_not_found": (404, "channel_not_found"),
    "archived": (410, "channel_is_archived"),
}
_CODES = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "internal_error",
}
MAX_BLOCKS = 50
TEAM, SERVICE = "T0CLAMPDWN", "B0CLAMPDWN"


@dataclass
class SlackRequest:
    """One request the fake received, with what it answered."""

    path: str
    body: Any
    status: int = 0
    text: str = ""


class FakeSlack(FakeServer):
    """One Slack incoming webhook; `throttle=True` enforces about `per_second` messages/s.

    `clock` (seconds) can be replaced to step time in tests.
    """

    def __init__(
        self,
        *,
        throttle: bool = False,
        per_second: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.throttle = throttle
        self.clock = clock
        self.per_second = per_second
        self.token = secrets.token_urlsafe(18)
        self.state: HookState = "active"
        self.requests: list[SlackRequest] = []
        self.messages: list[dict[str, Any]] = []
        self._window: tuple[float, int] = (0.0, 0)

    @property
    def webhook_url(self) -> str:
        """The webhook's URL; its last segment is the secret."""
        return f"{self.url}/services/{TEAM}/{SERVICE}/{self.token}"

    def set_state(self, state: HookState) -> None:
        """Make the webhook revoked, removed, archived... (`active` again to undo)."""
        with self.lock:
            self.state = state

    def fail_next(
        self,
        status: int = 429,
        code: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with `status` and a Slack code; nothing is posted."""
        if status == 429 and retry_after is None:
            retry_after = 1
        code = code or _CODES.get(status, "internal_error")
        self._add_fault(Fault(status, retry_after=retry_after, times=times, code=code))

    def throttled(self) -> list[SlackRequest]:
        """The requests answered 429."""
        with self.lock:
            return [r for r in self.requests if r.status == 429]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{team}/{service}/{token}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = _parse(raw, request.content_type)
        with self.lock:
            entry = SlackRequest(request.path, body)
            self.requests.append(entry)
            status, code, headers = self._answer(request, body)
            entry.status, entry.text = status, code
        return web.Response(status=status, text=code, headers=headers)

    def _answer(self, request: web.Request, body: Any) -> tuple[int, str, dict[str, str]]:
        info = request.match_info
        if (info["team"], info["service"]) != (TEAM, SERVICE):
            return 404, "no_service", {}
        if info["token"] != self.token:
            return 403, "invalid_token", {}
        if self.state != "active":
            status, code = _REFUSALS[self.state]
            return status, code, {}
        fault = self._take_fault("", "")
        if fault is not None and fault.code is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return fault.status, fault.code, headers
        if not isinstance(body, dict) or ("text" in body and not isinstance(body["text"], str)):
            return 400, "invalid_payload", {}
        if not body.get("text") and not body.get("blocks"):
            return 400, "no_text", {}
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return 400, "invalid_blocks", {}
        wait = self._wait()
        if wait is not None:
            return 429, "rate_limited", {"Retry-After": str(wait)}
        self.messages.append(body)
        return 200, "ok", {}

    def _wait(self) -> int | None:
        """Seconds until another message may be posted; None when it may be now (counted)."""
        if not self.throttle:
            return None
        now = self.clock()
        start, count = self._window
        if now - start >= 1.0:
            start, count = now, 0
        if count >= self.per_second:
            return max(1, math.ceil(1.0 - (now - start)))
        self._window = (start, count + 1)
        return None


def _parse(raw: bytes, content_type: str) -> Any:
    if content_type == "application/x-www-form-urlencoded":
        payload = parse_qs(raw.decode("utf-8", "replace")).get("payload")
        raw = payload[0].encode() if payload else b""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _text_object(value: Any, *, limit: int, plain_only: bool = False) -> bool:
    if not isinstance(value, dict) or value.get("type") not in ("plain_text", "mrkdwn"):
        return False
    if plain_only and value["type"] != "plain_text":
        return False
    if value["type"] == "mrkdwn" and "emoji" in value:
        return False
    text = value.get("text")
    return isinstance(text, str) and 1 <= len(text) <= limit


def _valid_blocks(blocks: Any) -> bool:
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return False
    return all(isinstance(block, dict) and _valid_block(block) for block in blocks)


def _valid_block(block: dict[str, Any]) -> bool:
    kind = block.get("type")
    if kind == "divider":
        return True
    if kind == "header":
        return _text_object(block.get("text"), limit=150, plain_only=True)
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            return False
        if text is not None and not _text_object(text, limit=3000):
            return False
        return fields is None or (
            isinstance(fields, list)
            and 1 <= len(fields) <= 10
            and all(_text_object(f, limit=2000) for f in fields)
        )
    if kind == "context":
        elements = block.get("elements")
        return (
            isinstance(elements, list)
            and 1 <= len(elements) <= 10
            and all(_text_object(e, limit=3000) for e in elements)
        )
    if kind == "actions":
        elements = block.get("elements")
        return (
            isinstance(elements, list)
            and 1 <= len(elements) <= 25
            and all(_valid_button(e) for e in elements)
            and _unique([e["action_id"] for e in elements if "action_id" in e])
        )
    return False


def _unique(ids: list[Any]) -> bool:
    return len(set(ids)) == len(ids)


def _valid_button(element: Any) -> bool:
    if not isinstance(element, dict) or element.get("type") != "button":
        return False
    url, action_id = element.get("url"), element.get("action_id", "")
    return (
        _text_object(element.get("text"), limit=75, plain_only=True)
        and (url is None or (isinstance(url, str) and len(url) <= 3000))
        and isinstance(action_id, str)
        and len(action_id) <= 255
    )
