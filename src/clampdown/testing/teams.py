"""A fake Microsoft Teams: a legacy incoming webhook and a Workflows webhook trigger.

Legacy incoming webhook (Office 365 connector), `POST /webhookb2/...`:
- 200 with body `1` when the message was posted;
- 400 `Bad payload received by generic incoming webhook.` for a payload that is not a valid
  message (here: anything but an Adaptive Card message envelope);
- throttling in the body text, not (only) the status: more than `per_second` requests to one
  webhook in a one-second fixed window answer `throttle_status` (200 by default, as the
  connector does; 429 is also seen) with `Webhook message delivery failed with error:
  Microsoft Teams endpoint returned HTTP error 429 with ContextId ...`. Every request counts,
  refused ones too;
- a payload over 28 KB answers 200 with `... HTTP error 413 ...` in the same way.

Workflows (Power Automate "When a Teams webhook request is received"),
`POST /workflows/<id>/triggers/manual/paths/invoke?...&sig=...`:
- 202 with an empty body when the flow run was accepted;
- 400 `{"error": {"code": "TriggerInputSchemaMismatch", "message": ...}}` when the body is not
  an Adaptive Card message envelope (what a Request trigger with that schema answers);
- 401 `{"error": {"code": "DirectApiInvalidAuthorizationSignature", ...}}` for a wrong `sig`;
- over `per_second`: 429 `{"error": {"code": "WorkflowRequestsThrottled", ...}}`, Retry-After 1.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from clampdown.testing.server import FakeServer

Kind = Literal["legacy", "workflow"]
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
MAX_BYTES = 28 * 1024
BAD_PAYLOAD = "Bad payload received by generic incoming webhook."
_ELEMENTS = frozenset(
    {
        "TextBlock",
        "FactSet",
        "Container",
        "ColumnSet",
        "Image",
        "ImageSet",
        "RichTextBlock",
        "ActionSet",
        "Table",
    }
)
_ACTIONS = frozenset({"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.Execute"})


def delivery_failed(code: int) -> str:
    """The legacy connector's body when Teams refused the message with HTTP `code`."""
    context = f"tcid=0,server=msgapi-production-weu-azsc2-1-42,cv={secrets.token_hex(11)}.0"
    return (
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
        f"HTTP error {code} with ContextId {context}.."
    )


@dataclass
class TeamsPost:
    """One request the fake received, with what it answered."""

    kind: Kind
    body: Any
    status: int = 0
    text: str = ""

    @property
    def throttled(self) -> bool:
        """Whether the answer said Teams was throttling."""
        return "HTTP error 429" in self.text


@dataclass
class _Fault:
    kind: Kind | None
    status: int
    text: str
    retry_after: int | None
    times: int


class FakeTeams(FakeServer):
    """One legacy incoming webhook and one Workflows trigger; cards are kept in `cards`.

    `per_second` requests per webhook and second (None: no limit); `clock` (seconds) can be
    replaced to step time in tests.
    """

    def __init__(
        self,
        *,
        per_second: int | None = 4,
        throttle_status: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self.throttle_status = throttle_status
        self.signature = secrets.token_urlsafe(24)
        self.posts: list[TeamsPost] = []
        self.cards: list[dict[str, Any]] = []
        self._windows: dict[Kind, tuple[float, int]] = {}
        self._kind_faults: list[_Fault] = []

    @property
    def legacy_url(self) -> str:
        """The legacy incoming webhook's URL (the last segments are its secret)."""
        group = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9@5c1d0b9a-3e7f-4a2c-9b18-6d2e4f0a1c33"
        return f"{self.url}/webhookb2/{group}/IncomingWebhook/{self.signature[:16]}/a1b2c3d4"

    @property
    def workflow_url(self) -> str:
        """The Workflows trigger's URL, with its signature in the query."""
        return (
            f"{self.url}/workflows/7f9e8d7c6b5a4f3e/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.signature}"
        )

    def throttled(self) -> list[TeamsPost]:
        """The requests answered with Teams' throttling text."""
        with self.lock:
            return [p for p in self.posts if p.throttled]

    def fail_next(
        self,
        status: int = 200,
        text: str | None = None,
        *,
        kind: Kind | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests (of `kind`, or any) with `status` and `text`.

        Without `text`, a legacy fault says `HTTP error 429` (200) or carries the status
        (429, 5xx) in the connector's delivery-failed text; nothing is posted.
        """
        if text is None:
            text = delivery_failed(429 if status < 300 else status)
        with self.lock:
            self._kind_faults.append(_Fault(kind, status, text, retry_after, times))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/webhookb2/{tail:.*}", self._legacy)
        app.router.add_post("/workflows/{flow}/triggers/manual/paths/invoke", self._workflow)

    async def _legacy(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = _parse(raw)
        with self.lock:
            post = TeamsPost("legacy", body)
            self.posts.append(post)
            status, text, headers = self._answer_legacy(request, raw, body)
            post.status, post.text = status, text
        return web.Response(status=status, text=text, headers=headers)

    def _answer_legacy(
        self, request: web.Request, raw: bytes, body: Any
    ) -> tuple[int, str, dict[str, str]]:
        if request.path.split("/")[-2] != self.signature[:16]:
            return 404, "Not Found", {}
        fault = self._fault("legacy")
        if fault is not None:
            return fault
        if self._over_rate("legacy"):
            return self.throttle_status, delivery_failed(429), {}
        if _invalid(body) is not None:
            return 400, BAD_PAYLOAD, {}
        if len(raw) > MAX_BYTES:
            return 200, delivery_failed(413), {}
        self.cards.append(body["attachments"][0]["content"])
        return 200, "1", {}

    async def _workflow(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = _parse(raw)
        with self.lock:
            post = TeamsPost("workflow", body)
            self.posts.append(post)
            status, text, headers = self._answer_workflow(request, body)
            post.status, post.text = status, text
        if not text:
            return web.Response(status=status, headers=headers)
        kind = "application/json" if text.startswith("{") else "text/plain"
        return web.Response(status=status, text=text, headers=headers, content_type=kind)

    def _answer_workflow(self, request: web.Request, body: Any) -> tuple[int, str, dict[str, str]]:
        if request.query.get("sig") != self.signature:
            return (
                401,
                _flow_error(
                    "DirectApiInvalidAuthorizationSignature",
                    "The provided authorization signature is not valid.",
                ),
                {},
            )
        fault = self._fault("workflow")
        if fault is not None:
            return fault
        if self._over_rate("workflow"):
            return (
                429,
                _flow_error(
                    "WorkflowRequestsThrottled",
                    "The flow's trigger requests are being throttled. Retry later.",
                ),
                {"Retry-After": "1"},
            )
        problem = _invalid(body)
        if problem is not None:
            return (
                400,
                _flow_error(
                    "TriggerInputSchemaMismatch",
                    "The input body for trigger 'manual' of type 'Request' did not match its "
                    f"schema definition. Error details: '{problem}'.",
                ),
                {},
            )
        self.cards.append(body["attachments"][0]["content"])
        return 202, "", {}

    def _fault(self, kind: Kind) -> tuple[int, str, dict[str, str]] | None:
        for fault in self._kind_faults:
            if fault.kind in (None, kind):
                fault.times -= 1
                if fault.times <= 0:
                    self._kind_faults.remove(fault)
                headers = (
                    {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                )
                return fault.status, fault.text, headers
        return None

    def _over_rate(self, kind: Kind) -> bool:
        """Count a request in its webhook's one-second window; True once it is full."""
        if self.per_second is None:
            return False
        now = self.clock()
        start, count = self._windows.get(kind, (now, 0))
        if now - start >= 1.0:
            start, count = now, 0
        self._windows[kind] = (start, count + 1)
        return count >= self.per_second


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _flow_error(code: str, message: str) -> str:
    return orjson.dumps({"error": {"code": code, "message": message}}).decode()


def _invalid(body: Any) -> str | None:
    """What makes `body` no Adaptive Card message envelope; None when it is one."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return "the body is not an object with type 'message'"
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "'attachments' is not a non-empty array"
    for n, attachment in enumerate(attachments):
        where = f"attachments[{n}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_TYPE:
            return f"{where}.contentType is not '{CARD_TYPE}'"
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            return f"{where}.content.type is not 'AdaptiveCard'"
        if content.get("version") not in CARD_VERSIONS:
            return f"{where}.content.version is not one of {', '.join(CARD_VERSIONS)}"
        problem = _invalid_card(content)
        if problem is not None:
            return f"{where}.content.{problem}"
    return None


def _invalid_card(content: dict[str, Any]) -> str | None:
    body = content.get("body")
    if not isinstance(body, list):
        return "body is not an array"
    for n, element in enumerate(body):
        kind = element.get("type") if isinstance(element, dict) else None
        if kind not in _ELEMENTS:
            return f"body[{n}].type {kind!r} is not an element type"
        assert isinstance(element, dict)
        if kind == "TextBlock" and not isinstance(element.get("text"), str):
            return f"body[{n}].text is required"
        if kind == "FactSet":
            facts = element.get("facts")
            if not isinstance(facts, list) or not all(
                isinstance(f, dict)
                and isinstance(f.get("title"), str)
                and isinstance(f.get("value"), str)
                for f in facts
            ):
                return f"body[{n}].facts must be an array of {{title, value}} strings"
    actions = content.get("actions", [])
    if not isinstance(actions, list):
        return "actions is not an array"
    for n, action in enumerate(actions):
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in _ACTIONS:
            return f"actions[{n}].type {kind!r} is not an action type"
        assert isinstance(action, dict)
        if kind == "Action.OpenUrl" and not isinstance(action.get("url"), str):
            return f"actions[{n}].url is required"
    return None
