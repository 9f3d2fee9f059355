"""The briefing of a remediation: what messages and tickets tell people about it."""

from __future__ import annotations

from typing import Any

from clampdown.actions.contract import Briefing
from clampdown.links import Links
from clampdown.model import RemediationState, StepState


def brief(
    remediation: dict[str, Any],
    steps: list[dict[str, Any]],
    finding: dict[str, Any],
    links: Links | None,
) -> Briefing:
    """The finding, the playbook, what took effect so far, and links when a person must decide."""
    done = tuple(
        f"{s['key']}: {(s['result'] or {}).get('summary') or s['action']}"
        for s in steps
        if s["state"] in (StepState.SUCCEEDED.value, StepState.UNDONE.value)
    )
    return Briefing(
        remediation_id=remediation["id"],
        playbook=remediation["playbook"],
        state=remediation["state"],
        finding=finding,
        done=done,
        links=_links(remediation, links),
    )


def _links(remediation: dict[str, Any], links: Links | None) -> dict[str, str]:
    if links is None or remediation["state"] != RemediationState.AWAITING_APPROVAL.value:
        return {}
    return {verb: links.make(remediation["id"], verb) for verb in ("approve", "reject")}
