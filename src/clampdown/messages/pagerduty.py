"""A message as a PagerDuty Events API v2 event (without the routing and dedup keys).

PagerDuty shows the summary and custom details as plain text, so nothing is escaped: the
summary is made one line without control characters and cut to 1024 characters, and the
facts go into `custom_details` as JSON strings.

Severity, from the finding's: critical -> critical, high -> error, medium -> warning, low and
informational -> info. An unknown severity pages as `error`: someone chose to page on it.
With PagerDuty's "based on severity" urgency rule, critical and error are high urgency.
"""

from __future__ import annotations

import re
from typing import Any

from clampdown.messages.model import Message

SUMMARY_MAX = 1024
SEVERITIES = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    "informational": "info",
    "info": "info",
}
UNKNOWN_SEVERITY = "error"
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
_WEB = ("https://", "http://")


def summary_line(value: str) -> str:
    """`value` as a PagerDuty summary: one line, no control characters, at most 1024."""
    line = _SPACES.sub(" ", _CONTROLS.sub("", value)).strip() or "Clampdown"
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1] + "…"


def severity(message: Message) -> str:
    """The PagerDuty severity for the message's finding severity."""
    return SEVERITIES.get(message.severity.strip().lower(), UNKNOWN_SEVERITY)


def details(message: Message) -> dict[str, Any]:
    """`custom_details`: the text, the facts, what was done and the remediation."""
    out: dict[str, Any] = {"Message": message.text}
    out.update(dict(message.facts))
    if message.done:
        out["Done"] = list(message.done)
    out.update(
        {
            "Remediation": message.remediation_id,
            "Playbook": message.playbook,
            "State": message.state,
        }
    )
    return out


def trigger(message: Message, *, source: str) -> dict[str, Any]:
    """The `payload`, `links` and `client` of the trigger event for `message`."""
    event: dict[str, Any] = {
        "payload": {
            "summary": summary_line(f"{message.title}: {message.text}"),
            "source": source,
            "severity": severity(message),
            "custom_details": details(message),
        },
        "client": "Clampdown",
    }
    links = [(label, url) for label, url in message.links if url.lower().startswith(_WEB)]
    if links:
        event["links"] = [{"href": url, "text": label} for label, url in links]
    return event


def resolution(message: Message, *, source: str) -> dict[str, Any]:
    """The `payload` of the resolve event: how the remediation ended and what was done.

    PagerDuty needs only the dedup key to resolve; the payload records the ending.
    """
    done = "; ".join(message.done) or "nothing took effect"
    ended = f"Remediation {message.remediation_id} {message.state}: {done}"
    return {
        "payload": {
            "summary": summary_line(ended),
            "source": source,
            "severity": severity(message),
            "custom_details": details(message),
        }
    }
