"""The `pagerduty` target: a page through Events API v2, resolved when the remediation ends.

The dedup key is `clampdown-<idempotency key>`. The engine's idempotency key of a step is
`<remediation id>-<step position>` and the same on every attempt, so a retry after a crash
between sending and recording adds to the page already open instead of opening another.
The routing key is a secret: it never appears in an error or a result.
"""

from __future__ import annotations

from typing import Any, ClassVar

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.messages import pagerduty
from clampdown.messages.model import Message
from clampdown.targets.driver import Check, Driver
from clampdown.targets.settings import PagerDutyTarget, require_secret

ROUTING_KEY_LENGTH = 32
DEDUP_KEY_MAX = 255


def dedup_key(key: str) -> str:
    """The dedup key of the page a step with idempotency key `key` opens."""
    return f"clampdown-{key}"[:DEDUP_KEY_MAX]


class PagerDutyDriver(Driver):
    """Triggers a PagerDuty alert per step and resolves it when the remediation ends."""

    type: ClassVar[str] = "pagerduty"
    settings: PagerDutyTarget

    async def send(self, message: Message, *, key: str) -> dict[str, Any]:
        dedup = dedup_key(key)
        event = pagerduty.trigger(message, source=self.settings.source)
        await self._enqueue("trigger", dedup, event)
        return {"dedup_key": dedup}

    async def resolve(self, message: Message, sent: dict[str, Any]) -> None:
        dedup = sent.get("dedup_key")
        if not isinstance(dedup, str) or not dedup:
            raise PermanentError(f"target {self.name}: the page has no dedup key to resolve")
        await self._enqueue(
            "resolve", dedup, pagerduty.resolution(message, source=self.settings.source)
        )

    async def check(self) -> list[Check]:
        # Events API v2 has no read-only call: every event would page or resolve something.
        routing_key = require_secret(self.settings.routing_key, f"target {self.name} routing_key")
        if len(routing_key) != ROUTING_KEY_LENGTH:
            detail = f"routing_key has {len(routing_key)} characters, PagerDuty's have 32"
            return [Check("configuration", False, detail)]
        return [
            Check(
                "events api",
                True,
                "routing key configured; not contacted: sending is the only call",
            )
        ]

    async def _enqueue(self, action: str, dedup: str, event: dict[str, Any]) -> None:
        routing_key = require_secret(self.settings.routing_key, f"target {self.name} routing_key")
        body = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup, **event}
        reply = await self.http.request(
            "POST", self.settings.events_url, json=body, timeout=self.timeout
        )
        if 200 <= reply.status < 300:  # 202 Accepted
            return
        detail = _pagerduty_error(reply).replace(routing_key, "<routing key>")
        message = f"target {self.name}: PagerDuty refused the {action} ({reply.status}): {detail}"
        if reply.status == 429 or reply.status >= 500:
            # The dedup key makes a repeat harmless, whatever reached PagerDuty.
            raise TransientError(message, retry_after=retry_after(reply.headers))
        raise PermanentError(message)


def _pagerduty_error(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        errors = body.get("errors")
        listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
        return str(body["message"]) + (f": {listed}" if listed else "")
    return reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
