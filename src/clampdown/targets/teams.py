"""The `teams` target: an Adaptive Card to a Teams channel through a webhook.

The URL is a legacy incoming webhook (answers 200 `1`) or a Workflows webhook trigger
(answers 202). The legacy connector reports Teams' own refusals in the body of a 200, such
as `... Microsoft Teams endpoint returned HTTP error 429 with ContextId ...`, so the body is
read whatever the status. The URL carries a signature: it never appears in an error.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.messages import teams
from clampdown.messages.model import Message
from clampdown.targets.driver import Check, Driver
from clampdown.targets.settings import TeamsTarget, require_secret

_TEAMS_ERROR = re.compile(r"HTTP error (\d{3})")
# Teams' connector limit is counted in one-second windows: the next window is a second away.
THROTTLE_WAIT = 1.0
# Answers after which the message may have been posted: a retry could post it twice.
_MAYBE_POSTED = frozenset({500, 502, 504})


class TeamsDriver(Driver):
    """Posts messages as Adaptive Cards; a webhook has nothing to resolve."""

    type: ClassVar[str] = "teams"
    settings: TeamsTarget

    async def send(self, message: Message, *, key: str) -> dict[str, Any]:
        url = require_secret(self.settings.url, f"target {self.name} url")
        reply = await self.http.request(
            "POST", url, json=teams.render(message), timeout=self.timeout
        )
        self._raise_for(reply, url)
        return {"status": reply.status}

    async def check(self) -> list[Check]:
        # A webhook has no read-only call, and a test message would reach people.
        require_secret(self.settings.url, f"target {self.name} url")
        return [Check("webhook", True, "URL configured; not contacted: sending is the only call")]

    def _raise_for(self, reply: Reply, url: str) -> None:
        text = reply.body[:300].decode("utf-8", "replace").strip()
        found = _TEAMS_ERROR.search(text)
        status = int(found.group(1)) if found else reply.status
        if 200 <= status < 300:
            return
        detail = (_flow_message(reply) or text or f"HTTP {reply.status}").replace(url, "<url>")
        message = f"target {self.name}: Teams refused the message ({status}): {detail}"
        if status == 429:
            wait = retry_after(reply.headers)
            raise TransientError(message, retry_after=THROTTLE_WAIT if wait is None else wait)
        if status >= 500:
            raise TransientError(
                message,
                retry_after=retry_after(reply.headers),
                maybe_delivered=status in _MAYBE_POSTED,
            )
        raise PermanentError(message)


def _flow_message(reply: Reply) -> str | None:
    """`code: message` of a Workflows (Logic Apps) error body."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"{error.get('code', 'error')}: {error['message']}"[:300]
    return None
