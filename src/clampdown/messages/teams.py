"""A message as a Microsoft Teams Adaptive Card (1.4), inside the webhook's message envelope.

Teams renders a subset of Markdown in TextBlock text and FactSet values (bold, italic, lists,
links), and expands `{{DATE(...)}}`/`{{TIME(...)}}` in TextBlocks. Every value from a message
goes through `escape`, which backslash-escapes (CommonMark: a backslash before ASCII
punctuation shows that character literally):

- anywhere: ``\\ ` * _ ~ [ ] < > { } &`` (emphasis, code, links, autolinks, HTML, date
  functions, entity references);
- at the start of a line, after spaces: ``# - + = |`` (headings, bullets, rules, tables), and
  the `.` or `)` after up to 9 leading digits when a space or the line's end follows
  (numbered lists; an address such as 192.0.2.45 is left alone).

Titles, facts and the "done" lines are made single lines first; each line of the message text
becomes a paragraph, since Markdown would join lines a single break apart. Links are
Action.OpenUrl buttons: only the message's own links, and only http(s) ones. A URL written in
a value may still be made clickable by a Teams client, but its visible text is the URL itself.
"""

from __future__ import annotations

import re
from typing import Any

from clampdown.messages.model import Message

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
_ANYWHERE = re.compile(r"([\\`*_~\[\]<>{}&])")
_LINE_START = re.compile(r"^( *)(?:([#+=|-])|(\d{1,9})([.)])(?= |$))", re.MULTILINE)
# C0/C1 controls and bidirectional overrides (text that reads differently than it is).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_WEB = ("https://", "http://")
_TEXT_MAX = 4000
_VALUE_MAX = 500


def escape(value: str) -> str:
    """`value` as Teams Markdown that shows exactly `value` (see the module docstring)."""
    escaped = _ANYWHERE.sub(r"\\\1", value)
    return _LINE_START.sub(_escape_marker, escaped)


def _escape_marker(match: re.Match[str]) -> str:
    spaces, marker, digits, closer = match.groups()
    if marker is not None:
        return f"{spaces}\\{marker}"
    return f"{spaces}{digits}\\{closer}"


def one_line(value: str, limit: int = _VALUE_MAX) -> str:
    """A value on one line, without control characters, at most `limit` characters."""
    return _clip(_SPACES.sub(" ", _CONTROLS.sub("", value)).strip(), limit)


def paragraphs(value: str) -> str:
    """Each line of `value` its own paragraph (Markdown joins lines a single break apart)."""
    lines = _CONTROLS.sub("", value.replace("\r\n", "\n")).split("\n")
    return _clip("\n\n".join(line.strip() for line in lines if line.strip()), _TEXT_MAX)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def safe_links(message: Message) -> list[tuple[str, str]]:
    """The message's links that open a web page (http or https), in order."""
    return [(label, url) for label, url in message.links if url.lower().startswith(_WEB)]


def _block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card of `message`, without the envelope."""
    body: list[dict[str, Any]] = [
        _block(escape(one_line(message.title)), size="Medium", weight="Bolder"),
        _block(escape(paragraphs(message.text))),
    ]
    if message.facts:
        facts = [
            {"title": escape(one_line(label)), "value": escape(one_line(value))}
            for label, value in message.facts
        ]
        body.append({"type": "FactSet", "facts": facts})
    if message.done:
        body.append(_block("Done", weight="Bolder"))
        body.append(_block("\n".join(f"- {escape(one_line(item))}" for item in message.done)))
    footer = f"Remediation {message.remediation_id} ({message.playbook}), {message.state}"
    body.append(_block(escape(one_line(footer)), isSubtle=True, size="Small"))
    content: dict[str, Any] = {
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    links = safe_links(message)
    if links:
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": one_line(label, 60), "url": url}
            for label, url in links
        ]
    return content


def render(message: Message) -> dict[str, Any]:
    """The webhook payload: a `message` with the card as its one attachment."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "content": card(message)}],
    }
