"""A message as an email: a plain text part and an HTML alternative, every value inert.

Untrusted values (everything but link URLs) never shape the mail: the subject loses control
characters and line breaks (no header injection) and is cut to a length; in the HTML part each
value is escaped with `html.escape(quote=True)`, the links are the only anchors, and nothing
is loaded from elsewhere (no images, no style sheets).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from clampdown.messages.model import Message

SUBJECT_PREFIX = "[Clampdown] "
SUBJECT_LIMIT = 150
"""Characters of the title kept in the subject."""
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_SCHEMES = ("https://", "http://")


def render_mail(
    message: Message,
    *,
    sender: str,
    to: Sequence[str],
    key: str,
    now: datetime | None = None,
) -> EmailMessage:
    """The email for `message`; its Message-ID derives from `key` (a step's idempotency key)."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject(message)
    mail["Date"] = format_datetime(now or datetime.now(UTC))
    mail["Message-ID"] = message_id(key)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    mail["X-Clampdown-Remediation"] = header_text(message.remediation_id, limit=200)
    mail.set_content(_encodable(message.plain()), cte="quoted-printable")
    mail.add_alternative(html(message), subtype="html", cte="quoted-printable")
    for part in mail.iter_parts():
        del part["MIME-Version"]  # belongs to the top level only
    return mail


def subject(message: Message) -> str:
    """The subject line: the title on one line, without control characters, limited."""
    return SUBJECT_PREFIX + header_text(message.title, limit=SUBJECT_LIMIT)


def header_text(value: str, *, limit: int) -> str:
    """`value` safe for a header: one line, no control or format characters, at most `limit`."""
    # Control and format characters (CR and LF among them) and every other line break or
    # run of blanks become one space.
    spaced = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in value)
    text = " ".join(_encodable(spaced).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_id(key: str) -> str:
    """`<key@clampdown>`, stable per key; a key with other characters gets a hash suffix."""
    safe = _ID_UNSAFE.sub("-", key).strip("-")[:120]
    if safe != key:
        safe = f"{safe}.{hashlib.sha256(key.encode()).hexdigest()[:16]}".lstrip(".")
    return f"<{safe}@clampdown>"


def html(message: Message) -> str:
    """The HTML alternative: every value escaped, the links the only anchors."""
    title = _escaped(message.title)
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{title}</title></head>",
        '<body style="font-family: sans-serif; line-height: 1.4">',
        f"<h2>{title}</h2>",
        "<p>" + "<br>\n".join(_escaped(line) for line in message.text.splitlines()) + "</p>",
    ]
    if message.facts:
        lines.append('<table cellpadding="4" style="border-collapse: collapse">')
        lines += [
            f'<tr><th align="left" valign="top">{_escaped(label)}</th>'
            f"<td>{_escaped(value)}</td></tr>"
            for label, value in message.facts
        ]
        lines.append("</table>")
    if message.done:
        lines += ["<h3>Done</h3>", "<ul>"]
        lines += [f"<li>{_escaped(item)}</li>" for item in message.done]
        lines.append("</ul>")
    if message.links:
        lines.append("<p>" + " | ".join(_link(label, url) for label, url in message.links) + "</p>")
    lines.append(
        f'<p style="color: #666666">Remediation {_escaped(message.remediation_id)} '
        f"({_escaped(message.playbook)}), {_escaped(message.state)}</p>"
    )
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def _link(label: str, url: str) -> str:
    if not url.lower().startswith(_SAFE_SCHEMES):
        return f"{_escaped(label)}: {_escaped(url)}"  # not a web address: shown, not linked
    return f'<a href="{_escaped(url)}">{_escaped(label)}</a>'


def _escaped(value: str) -> str:
    return escape(_encodable(value), quote=True)


def _encodable(value: str) -> str:
    """`value` without lone surrogates (from JSON escapes), which UTF-8 cannot carry."""
    return value.encode("utf-8", "replace").decode("utf-8")
