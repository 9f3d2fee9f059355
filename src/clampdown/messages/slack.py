"""A message as a Slack incoming-webhook payload: Block Kit blocks and a fallback `text`.

Every value from a message sits in a `plain_text` text object (`emoji: false`), which Slack
shows as written: no mrkdwn, no mentions, no links, no `:emoji:` codes. The top-level `text`
(notifications, clients without blocks) is mrkdwn, so it is escaped the way Slack asks:
`&` `<` `>` become `&amp;` `&lt;` `&gt;`, which leaves no `<!channel>`, `<@U123>` or
`<https://...|label>` sequence to parse; `mrkdwn: false` keeps `*` `_` `~` literal too.
Links are buttons: only the message's own links, and only http(s) ones.
"""

from __future__ import annotations

import re
from typing import Any

from clampdown.messages.model import Message

# Block Kit limits (characters, items).
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BUTTON_TEXT_MAX = 75
BUTTONS_MAX = 25
_FALLBACK_MAX = 3000
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_WEB = ("https://", "http://")


def escape(value: str) -> str:
    """Text for a mrkdwn field: Slack's three control characters as entities."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line(value: str, limit: int) -> str:
    """A value on one line, without control characters, at most `limit` characters."""
    return _clip(_SPACES.sub(" ", _CONTROLS.sub("", value)).strip(), limit)


def _lines(value: str, limit: int) -> str:
    text = _CONTROLS.sub("", value.replace("\r\n", "\n")).strip()
    return _clip(text, limit)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def safe_links(message: Message) -> list[tuple[str, str]]:
    """The message's links that open a web page (http or https), in order."""
    return [(label, url) for label, url in message.links if url.lower().startswith(_WEB)]


def _plain(text: str) -> dict[str, Any]:
    # Slack refuses an empty text object.
    return {"type": "plain_text", "text": text or " ", "emoji": False}


def blocks(message: Message) -> list[dict[str, Any]]:
    """The Block Kit blocks of `message`."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(one_line(message.title, HEADER_MAX))},
        {"type": "section", "text": _plain(_lines(message.text, SECTION_MAX))},
    ]
    if message.facts:
        fields = [
            _plain(one_line(f"{label}: {value}", FIELD_MAX))
            for label, value in message.facts[:FIELDS_MAX]
        ]
        out.append({"type": "section", "fields": fields})
    if message.done:
        done = "\n".join(["Done:"] + [f"• {one_line(item, 300)}" for item in message.done])
        out.append({"type": "section", "text": _plain(_clip(done, SECTION_MAX))})
    footer = f"Remediation {message.remediation_id} ({message.playbook}), {message.state}"
    out.append({"type": "context", "elements": [_plain(one_line(footer, SECTION_MAX))]})
    links = safe_links(message)
    if links:
        buttons = [
            {
                "type": "button",
                "text": _plain(one_line(label, BUTTON_TEXT_MAX)),
                "url": url,
                "action_id": f"clampdown-link-{n}",
            }
            for n, (label, url) in enumerate(links[:BUTTONS_MAX])
        ]
        out.append({"type": "actions", "elements": buttons})
    return out


def render(message: Message) -> dict[str, Any]:
    """The webhook payload: escaped fallback text, `mrkdwn: false`, and the blocks."""
    fallback = one_line(f"{message.title}: {message.text}", _FALLBACK_MAX)
    return {"text": escape(fallback), "mrkdwn": False, "blocks": blocks(message)}
