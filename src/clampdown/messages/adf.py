"""A message in Atlassian Document Format (Jira Cloud REST API v3).

ADF is a tree of typed nodes, so markup in a string is never interpreted: untrusted text only
ever goes into `text` nodes without marks (no link, mention, emoji or card is made from it).
The document's structure (headings, bullet lists, bold labels) and the link marks are built
here, and links come only from `Message.links`, which Clampdown makes itself. Control
characters and bidirectional overrides are dropped; line breaks become `hardBreak` nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from clampdown.messages.model import Message

Node = dict[str, Any]

SUMMARY_LIMIT = 255
"""Jira refuses a longer summary."""
VALUE_LIMIT = 2000
TEXT_LIMIT = 20_000

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SAFE_SCHEMES = ("https://", "http://")


def clean(value: str) -> str:
    """`value` without control characters or bidirectional overrides; `\\n` line breaks."""
    return _UNSAFE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def marker(remediation_id: str) -> str:
    """The text that starts the footer of every description Clampdown writes."""
    return f"Clampdown remediation {remediation_id}"


def summary(message: Message) -> str:
    """The issue summary: the title on one line (Jira refuses line breaks), cut to fit."""
    title = " ".join(clean(message.title).split())
    return title if len(title) <= SUMMARY_LIMIT else title[: SUMMARY_LIMIT - 1].rstrip() + "…"


def document(message: Message) -> Node:
    """The issue description: text, the finding's facts, what was done, links, a footer."""
    content: list[Node] = _paragraphs(message.text, TEXT_LIMIT)
    if message.facts:
        content.append(_heading("Finding"))
        facts = (
            [_text(f"{label}: ", strong=True), *_inline(value)] for label, value in message.facts
        )
        content.append(_bullets(facts))
    if message.done:
        content.append(_heading("Done"))
        content.append(_bullets(_inline(item) for item in message.done))
    links = [(label, url) for label, url in message.links if url.startswith(_SAFE_SCHEMES)]
    if links:
        content.append(_heading("Links"))
        content.append(_bullets([_link(label, url)] for label, url in links))
    footer = f"{marker(message.remediation_id)} ({message.playbook}), {message.state}"
    content.append(_paragraph([_text(footer, em=True)]))
    return doc(content)


def plain(text: str) -> Node:
    """A document of plain text (a comment): paragraphs at blank lines, line breaks kept."""
    return doc(_paragraphs(text, TEXT_LIMIT) or [_paragraph([])])


def seen_again(message: Message) -> Node:
    """The comment added when another remediation finds the issue already open."""
    first = (
        f"Seen again: {marker(message.remediation_id)} ({message.playbook}) "
        "matched the same alert and uses this issue."
    )
    return doc(
        [
            _paragraph([_text(first, em=True)]),
            _paragraph(_inline(message.title)),
            *_paragraphs(message.text, TEXT_LIMIT),
        ]
    )


def doc(content: list[Node]) -> Node:
    """An ADF document around block nodes."""
    return {"type": "doc", "version": 1, "content": content}


def text_of(node: Any) -> str:
    """Every text node's text in document order, blocks separated by line breaks."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [text_of(child) for child in node.get("content") or []]
    return "".join(parts) if node.get("type") in ("paragraph", "heading") else "\n".join(parts)


def made_for(description: Any, remediation_id: str) -> bool:
    """Whether a description was written for this remediation (its footer says so)."""
    wanted = marker(remediation_id)
    content = description.get("content") if isinstance(description, dict) else None
    if not isinstance(content, list) or not content:
        return False
    footer = text_of(content[-1])
    return footer == wanted or footer.startswith(wanted + " ")


# -- nodes ---------------------------------------------------------------------------------


def _text(value: str, *, strong: bool = False, em: bool = False) -> Node:
    node: Node = {"type": "text", "text": value}
    marks = [{"type": "strong"}] * strong + [{"type": "em"}] * em
    if marks:
        node["marks"] = marks
    return node


def _inline(value: str, limit: int = VALUE_LIMIT) -> list[Node]:
    """Untrusted text as unmarked text nodes, with hard breaks for its line breaks."""
    value = clean(value)
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    nodes: list[Node] = []
    for n, line in enumerate(value.split("\n")):
        if n:
            nodes.append({"type": "hardBreak"})
        if line:
            nodes.append(_text(line))  # ADF refuses an empty text node
    return nodes


def _paragraph(inline: list[Node]) -> Node:
    return {"type": "paragraph", "content": inline}


def _paragraphs(text: str, limit: int) -> list[Node]:
    blocks = re.split(r"\n[ \t]*\n", clean(text).strip())
    return [_paragraph(_inline(block.strip("\n"), limit)) for block in blocks if block.strip()]


def _heading(title: str) -> Node:
    return {"type": "heading", "attrs": {"level": 3}, "content": [_text(title)]}


def _bullets(items: Iterable[list[Node]]) -> Node:
    return {
        "type": "bulletList",
        "content": [{"type": "listItem", "content": [_paragraph(inline)]} for inline in items],
    }


def _link(label: str, url: str) -> Node:
    return {"type": "text", "text": label, "marks": [{"type": "link", "attrs": {"href": url}}]}
