"""A message as ServiceNow incident text: plain text, with journal markup made inert.

ServiceNow shows string fields (short description, description, resolution notes) as text,
HTML-escaped. Journal fields (work notes, comments) are different: text between `[code]` and
`[/code]` is rendered as raw HTML wherever the instance allows it (the system property
`glide.ui.security.allow_codetag`). Untrusted text therefore never carries such a tag into
any field: the square brackets of every `[code]` or `[/code]` (any case, blanks allowed
inside the brackets) become the fullwidth brackets U+FF3B and U+FF3D. An analyst still reads
the attacker's text as sent, and ServiceNow does not parse it. Each bracket is replaced one
for one, so the replacement cannot form a new tag. Control characters other than line breaks
and tabs, and bidirectional overrides (which could disguise text), are dropped.
"""

from __future__ import annotations

import re

from clampdown.messages.model import Message

SHORT_LIMIT = 160
"""The length of `incident.short_description` in a base instance."""
TEXT_LIMIT = 4000
"""The length of `incident.description` in a base instance; notes are kept to it too."""

_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CUT = "\n[cut to fit]"
_SAFE_SCHEMES = ("https://", "http://")


def inert(text: str) -> str:
    """`text` with no `[code]` markup, no control characters, and `\\n` line breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CODE_TAG.sub("\uff3b\\1\uff3d", _UNSAFE.sub("", text))


def marker(remediation_id: str) -> str:
    """The first line of every description Clampdown writes for a remediation."""
    return f"Clampdown remediation {remediation_id}"


def made_for(description: str, remediation_id: str) -> bool:
    """Whether `description` was written for this remediation (its first line says so)."""
    first = description.partition("\n")[0]
    return first == marker(remediation_id) or first.startswith(marker(remediation_id) + " ")


def short_description(message: Message) -> str:
    """The title on one line, cut to the field's length."""
    return _cut(" ".join(inert(message.title).split()), SHORT_LIMIT, "…")


def description(message: Message) -> str:
    """The incident description: who opened it, the text, the facts, what was done, links."""
    lines = [f"{marker(message.remediation_id)} ({message.playbook}), {message.state}", ""]
    if message.text.strip():
        lines += [inert(message.text).strip(), ""]
    lines += [f"{label}: {_one_line(value)}" for label, value in message.facts]
    if message.done:
        lines += ["", "Done:"] + [f"- {_one_line(item)}" for item in message.done]
    links = [(label, url) for label, url in message.links if url.startswith(_SAFE_SCHEMES)]
    if links:
        lines += [""] + [f"{label}: {url}" for label, url in links]
    return _cut("\n".join(lines).strip(), TEXT_LIMIT, _CUT)


def note(text: str) -> str:
    """A work note or resolution note from text that may hold untrusted values."""
    return _cut(inert(text).strip(), TEXT_LIMIT, _CUT)


def seen_again(message: Message) -> str:
    """The work note added when another remediation finds the incident already open."""
    lines = [
        f"Seen again: {marker(message.remediation_id)} ({message.playbook}) "
        "matched the same alert and uses this incident.",
        "",
        _one_line(message.title),
    ]
    if message.text.strip():
        lines += ["", inert(message.text).strip()]
    return note("\n".join(lines))


def _one_line(value: str) -> str:
    return " ".join(inert(value).split())


def _cut(text: str, limit: int, suffix: str) -> str:
    return text if len(text) <= limit else text[: limit - len(suffix)].rstrip() + suffix
