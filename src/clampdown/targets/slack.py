"""The `slack` target: a Block Kit message to a channel through an incoming webhook.

Slack answers 200 `ok`, or a status with a plain-text code (`invalid_payload`,
`channel_is_archived`, ...). The URL's last segment is a secret: it never appears in an error.
"""

from __future__ import annotations

from typing import Any, ClassVar

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.messages import slack
from clampdown.messages.model import Message
from clampdown.targets.driver import Check, Driver
from clampdown.targets.settings import SlackTarget, require_secret

# Answers after which the message may have been posted: a retry could post it twice.
_MAYBE_POSTED = frozenset({500, 502, 504})


class SlackDriver(Driver):
    """Posts messages to a Slack channel; a webhook has nothing to resolve."""

    type: ClassVar[str] = "slack"
    settings: SlackTarget

    async def send(self, message: Message, *, key: str) -> dict[str, Any]:
        url = require_secret(self.settings.url, f"target {self.name} url")
        reply = await self.http.request(
            "POST", url, json=slack.render(message), timeout=self.timeout
        )
        self._raise_for(reply, url)
        return {"status": reply.status}

    async def check(self) -> list[Check]:
        # A webhook has no read-only call, and a test message would reach people.
        require_secret(self.settings.url, f"target {self.name} url")
        return [Check("webhook", True, "URL configured; not contacted: sending is the only call")]

    def _raise_for(self, reply: Reply, url: str) -> None:
        if 200 <= reply.status < 300:
            return
        code = reply.body[:200].decode("utf-8", "replace").strip().replace(url, "<url>")
        message = f"target {self.name}: Slack answered {reply.status} {code or '(no code)'}"
        if reply.status == 429 or reply.status >= 500:
            raise TransientError(
                message,
                retry_after=retry_after(reply.headers),
                maybe_delivered=reply.status in _MAYBE_POSTED,
            )
        raise PermanentError(message)
