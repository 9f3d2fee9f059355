"""Tuning suggestions read from effectiveness figures: what to change in which playbook.

Each kind has its thresholds below as named constants; docs/report.md lists them. A rule
fires only with enough remediations behind it (the `MIN_*` counts), so that one unlucky run
does not ask for a change. Messages are plain text: the renderers escape them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from clampdown.effectiveness.model import Effectiveness, Figures
from clampdown.report.charts import format_duration

__all__ = ["Kind", "Priority", "Suggestion", "suggest"]

FAILURE_RATE = 0.2
"""A playbook fails often when at least this share of its ended remediations failed ..."""
FAILURE_MIN_ENDED = 5
"""... out of at least this many ended remediations."""

VERIFICATION_FAILURE_RATE = 0.1
"""Verification fails when at least this share of ended remediations failed verification ..."""
VERIFICATION_MIN_ENDED = 5
"""... out of at least this many ended remediations."""

RECURRENCE_RATE = 0.25
"""Blocks recur when at least this share of the closed remediations came back ..."""
RECURRENCE_MIN_CLOSED = 4
"""... out of at least this many closed, for a playbook whose remediations contain."""

OVERRIDE_RATE = 0.2
"""Often overridden: at least this share of containments undone early by a person ..."""
OVERRIDE_MIN_CONTAINED = 3
"""... out of at least this many remediations that contained."""

APPROVALS_SLOW_SHARE = 0.25
"""Approvals wait too long when at least this share of them waited past the limit
(or when any was decided by its timeout)."""

AUTOMATIC_SHARE = 0.5
"""Low automation: less than this share of ended remediations ran without a person ..."""
AUTOMATION_MIN_ENDED = 10
"""... out of at least this many ended remediations."""

COLLATERAL_REFUSED_SHARE = 0.2
"""An API whose decisions are refused at least this often, while it also allows traffic."""


class Kind(StrEnum):
    """What a suggestion is about."""

    NEVER_FIRES = "never_fires"
    FAILS_OFTEN = "fails_often"
    VERIFICATION_FAILS = "verification_fails"
    BLOCKS_RECUR = "blocks_recur"
    OFTEN_OVERRIDDEN = "often_overridden"
    APPROVALS_SLOW = "approvals_slow"
    LOW_AUTOMATION = "low_automation"
    COLLATERAL = "collateral"


class Priority(StrEnum):
    """How soon to act on a suggestion."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PRIORITY_ORDER = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}
_KIND_ORDER = {kind: i for i, kind in enumerate(Kind)}


class Suggestion(BaseModel):
    """One concrete change to consider, with the figures that call for it."""

    kind: Kind
    priority: Priority
    playbook: str | None = Field(None, description="The playbook to change, when it is one")
    api: str | None = Field(None, description="The API concerned, for collateral")
    message: str
    evidence: dict[str, float | int] = Field(
        default_factory=dict, description="The figures behind the suggestion"
    )


def suggest(eff: Effectiveness) -> list[Suggestion]:
    """Every suggestion the figures call for, most pressing first."""
    found: list[Suggestion] = []
    fired = {group.key: group.figures for group in eff.by_playbook}
    for name in eff.playbooks:
        figures = fired.get(name)
        if figures is None or figures.remediations == 0:
            found.append(_never_fires(name, eff))
    for group in eff.by_playbook:
        for rule in _PLAYBOOK_RULES:
            if (suggestion := rule(group.key, group.figures, eff)) is not None:
                found.append(suggestion)
    found.extend(_collateral(eff))
    return sorted(
        found,
        key=lambda s: (
            _PRIORITY_ORDER[s.priority],
            _KIND_ORDER[s.kind],
            s.playbook or "",
            s.api or "",
        ),
    )


def _never_fires(name: str, eff: Effectiveness) -> Suggestion:
    shown = _name(name)
    return Suggestion(
        kind=Kind.NEVER_FIRES,
        priority=Priority.LOW,
        playbook=name,
        message=(
            f"Playbook {shown} is loaded but opened no remediation from {_span(eff)}. "
            f"Check that its `match.types`, `severity` and `when` fit the alerts you receive "
            f"(`clampdown playbooks simulate {_period_options(eff)}` replays them), and that no "
            f"`exclusive` playbook of higher priority shadows it; remove it if it is obsolete."
        ),
        evidence={"remediations": 0},
    )


def _fails_often(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    rate = f.failure_rate
    if rate is None or f.ended < FAILURE_MIN_ENDED or rate < FAILURE_RATE:
        return None
    failed = f.outcomes.get("failed", 0)
    shown = _name(name)
    return Suggestion(
        kind=Kind.FAILS_OFTEN,
        priority=Priority.HIGH,
        playbook=name,
        message=(
            f"Playbook {shown} failed {failed} of {f.ended} ended remediations ({_pct(rate)}). "
            f"Read the step errors (`clampdown remediations list --state failed{_option(name)}`,"
            f" then `remediations show`); for transient errors raise the step's "
            f"`retries` or `timeout` and check its `target`; for a step that need not stop the "
            f"response, set `on_failure: continue`."
        ),
        evidence={"failed": failed, "ended": f.ended, "failure_rate": rate},
    )


def _verification_fails(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    rate = f.verification_failure_rate
    if rate is None or f.ended < VERIFICATION_MIN_ENDED or rate < VERIFICATION_FAILURE_RATE:
        return None
    shown = _name(name)
    return Suggestion(
        kind=Kind.VERIFICATION_FAILS,
        priority=Priority.HIGH,
        playbook=name,
        message=(
            f"Playbook {shown}: verification found the effect missing in {_pct(rate)} of "
            f"{f.ended} ended remediations: the actions were accepted but the target does not "
            f"enforce them. Check the targets the steps' `with.target` names (does the gateway "
            f"read the containment list?) and the `scope` the steps block on."
        ),
        evidence={"ended": f.ended, "verification_failure_rate": rate},
    )


def _blocks_recur(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    # Only remediations that contained: a notification that recurs says nothing of a block.
    rate = f.contained_recurrence_rate
    if rate is None or f.contained_closed < RECURRENCE_MIN_CLOSED or rate < RECURRENCE_RATE:
        return None
    back = f.time_to_recur.p50
    soon = f" (half of them within {format_duration(back)})" if back is not None else ""
    shown = _name(name)
    return Suggestion(
        kind=Kind.BLOCKS_RECUR,
        priority=Priority.MEDIUM,
        playbook=name,
        message=(
            f"Playbook {shown}: {f.contained_recurred} of {f.contained_closed} closed "
            f"remediations that contained ({_pct(rate)}) "
            f"saw the same threat again{soon}. The containment ends too early or is too narrow: "
            f"lengthen the steps' `expires`, add a `ladder` so that repeat offenders are "
            f"answered more strongly, or widen the block's `scope`."
        ),
        evidence={
            "recurred": f.contained_recurred,
            "closed": f.contained_closed,
            "recurrence_rate": rate,
        },
    )


def _often_overridden(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    rate = f.override_rate
    if rate is None or f.contained < OVERRIDE_MIN_CONTAINED or rate < OVERRIDE_RATE:
        return None
    shown = _name(name)
    return Suggestion(
        kind=Kind.OFTEN_OVERRIDDEN,
        priority=Priority.HIGH,
        playbook=name,
        message=(
            f"Playbook {shown}: {f.overridden} of {f.contained} containments were undone early "
            f"by a person ({_pct(rate)}): likely false positives. Narrow its `match` (`types`, "
            f"`severity`, or a `when` that excludes trusted ranges kept in `vars`), or set "
            f"`mode: approval` so that a person confirms before it blocks."
        ),
        evidence={"overridden": f.overridden, "contained": f.contained, "override_rate": rate},
    )


def _approvals_slow(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    if f.approvals == 0:
        return None
    slow = f.approvals_slow / f.approvals
    if f.approvals_timed_out == 0 and slow < APPROVALS_SLOW_SHARE:
        return None
    waited = f.approval_wait.p90
    p90 = f" (p90 wait {format_duration(waited)})" if waited is not None else ""
    timed_out = f"{f.approvals_timed_out} timed out and " if f.approvals_timed_out else ""
    shown = _name(name)
    return Suggestion(
        kind=Kind.APPROVALS_SLOW,
        priority=Priority.HIGH if f.approvals_timed_out else Priority.MEDIUM,
        playbook=name,
        message=(
            f"Playbook {shown}: of {f.approvals} approvals, {timed_out}{f.approvals_slow} waited "
            f"longer than {format_duration(eff.approval_wait_limit_seconds)}{p90}. Add "
            f"approvers (`approval.approvers`), lower the quorum (`approval.count`), or set "
            f"`approval.timeout` with `on_timeout: escalate` and `escalate_to` so that someone "
            f"is paged."
        ),
        evidence={
            "approvals": f.approvals,
            "approvals_slow": f.approvals_slow,
            "approvals_timed_out": f.approvals_timed_out,
            "slow_share": slow,
        },
    )


def _low_automation(name: str, f: Figures, eff: Effectiveness) -> Suggestion | None:
    share = f.automatic_share
    if share is None or f.ended < AUTOMATION_MIN_ENDED or share >= AUTOMATIC_SHARE:
        return None
    if eff.modes.get(name, "automatic") != "automatic":
        return None  # approval, guided and dry-run playbooks involve people by design
    shown = _name(name)
    return Suggestion(
        kind=Kind.LOW_AUTOMATION,
        priority=Priority.LOW,
        playbook=name,
        message=(
            f"Playbook {shown}: only {f.automatic} of {f.ended} ended remediations "
            f"({_pct(share)}) ran without a person. If people approve them as a matter of "
            f"course, move the safe steps to a playbook with `mode: automatic` and a short "
            f"`expires`, or set `approval.on_timeout: approve`."
        ),
        evidence={"automatic": f.automatic, "ended": f.ended, "automatic_share": share},
    )


_PLAYBOOK_RULES: tuple[Callable[[str, Figures, Effectiveness], Suggestion | None], ...] = (
    _fails_often,
    _verification_fails,
    _blocks_recur,
    _often_overridden,
    _approvals_slow,
    _low_automation,
)
"""The rules read from one playbook's figures."""


def _collateral(eff: Effectiveness) -> Iterator[Suggestion]:
    for api in eff.collateral:
        if api.allowed > 0 and api.refused_share >= COLLATERAL_REFUSED_SHARE:
            shown = _name(api.api)
            yield Suggestion(
                kind=Kind.COLLATERAL,
                priority=Priority.HIGH,
                api=api.api,
                message=(
                    f"API {shown}: {_pct(api.refused_share)} of its decisions were refused "
                    f"({api.denied} denied, {api.throttled} throttled, {api.allowed} allowed): "
                    f"containments may be hitting legitimate clients. Review the "
                    f"containments scoped to it (`clampdown containments list`), and narrow the "
                    f"`when` or shorten the `expires` of the playbooks that block there."
                ),
                evidence={
                    "allowed": api.allowed,
                    "denied": api.denied,
                    "throttled": api.throttled,
                    "refused_share": api.refused_share,
                },
            )


def _name(text: str) -> str:
    """A name as messages quote it: renderers show `...` as code, so it holds no backtick."""
    return " ".join(text.replace("`", "'").split())


def _option(name: str) -> str:
    """` --playbook NAME` for a command line, when the name needs no quoting there."""
    return f" --playbook {name}" if _PLAIN_NAME.fullmatch(name) else ""


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _period_options(eff: Effectiveness) -> str:
    moment = "%Y-%m-%dT%H:%M:%SZ"
    return f"--since {_utc(eff.since):{moment}} --until {_utc(eff.until):{moment}}"


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC) if at.tzinfo else at


def _span(eff: Effectiveness) -> str:
    moment = "%Y-%m-%d %H:%M"
    return f"{_utc(eff.since):{moment}} .. {_utc(eff.until):{moment}} UTC"
