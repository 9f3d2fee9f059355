"""Replay findings against a playbook set without acting (`clampdown playbooks simulate`).

Findings are replayed in the order they came, each planned as the planner would: grouping
windows fold repeats into one remediation, response ladders climb per identity (and reset
after their decay), approval-mode playbooks wait for a person, and containments of automatic
remediations are counted against a blast-radius budget when one is given. Nothing is stored,
no target is called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from clampdown.actions.contract import Action
from clampdown.actions.registry import CATALOG
from clampdown.model import Finding, Mode
from clampdown.playbooks.loader import Playbook
from clampdown.playbooks.matcher import Matcher
from clampdown.playbooks.preview import PlaybookPreview, preview_playbook


@dataclass(frozen=True, slots=True)
class Replay:
    """One finding to replay: when it came, and where it was read from."""

    finding: Finding
    at: datetime
    origin: str
    """`finding 42` for a stored finding, `file.json` or `file.json[1]` for a file."""


@dataclass(frozen=True, slots=True)
class Contained:
    """A containment a remediation would make, as a blast-radius budget sees it."""

    at: datetime
    playbook: str
    target: str
    kind: str
    subject_type: str | None
    subject: str | None
    scope: str | None


BudgetCheck = Callable[[Contained], str | None]
"""The blast-radius budget hook, called once per automatic containment in replay order: the
reason the budget refuses it (the step and its remediation then wait for a person's
approval), or None when it fits, in which case the hook counts it."""

ProtectedCheck = Callable[[str, Mapping[str, Any]], str | None]
"""The protected-assets hook: for an action and its rendered parameters, why a safety rail
would refuse the step (it is skipped), or None."""


@dataclass(frozen=True, slots=True)
class Trip:
    """Where the budget would have paused automatic containment."""

    at: datetime
    playbook: str
    origin: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return {
            "at": self.at.isoformat(),
            "playbook": self.playbook,
            "origin": self.origin,
            "reason": self.reason,
        }


@dataclass(slots=True)
class PlaybookReport:
    """What one playbook would have done over the replay."""

    name: str
    mode: Mode
    matched: int = 0
    """Findings it matched."""
    remediations: int = 0
    grouped: int = 0
    """Findings that joined a remediation still open in the group window."""
    needs_approval: int = 0
    """Remediations that would have waited for a person (approval mode or budget)."""
    containments: Counter[str] = field(default_factory=Counter)
    """Automatic containments by kind."""
    pending: Counter[str] = field(default_factory=Counter)
    """Containments by kind that would have waited for approval."""
    subjects: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    """(kind, subject type, subject, scope) -> how many remediations would contain it."""
    trips: list[Trip] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    """Steps a protected-asset rail would have skipped, by reason."""
    problems: Counter[str] = field(default_factory=Counter)
    """Why steps would have failed, with how often."""
    rungs: Counter[str] = field(default_factory=Counter)
    """Remediations per ladder rung, for a playbook with a response ladder."""

    def as_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return {
            "playbook": self.name,
            "mode": self.mode.value,
            "matched": self.matched,
            "remediations": self.remediations,
            "grouped": self.grouped,
            "needs_approval": self.needs_approval,
            "containments": dict(sorted(self.containments.items())),
            "awaiting_approval": dict(sorted(self.pending.items())),
            "subjects": [
                {
                    "kind": kind,
                    "subject_type": subject_type,
                    "subject": subject,
                    "scope": scope,
                    "count": count,
                }
                for (kind, subject_type, subject, scope), count in sorted(
                    self.subjects.items(), key=lambda item: (-item[1], item[0])
                )
            ],
            "budget_tripped": len(self.trips),
            "trips": [trip.as_json() for trip in self.trips],
            "protected": dict(self.refused),
            "rungs": dict(self.rungs),
            "problems": dict(self.problems),
        }


@dataclass(slots=True)
class SimulationReport:
    """The whole replay: per-playbook reports in playbook order, and the totals."""

    findings: int = 0
    unmatched: int = 0
    first: datetime | None = None
    last: datetime | None = None
    playbooks: dict[str, PlaybookReport] = field(default_factory=dict)
    when_errors: Counter[str] = field(default_factory=Counter)
    """`when` failures by playbook (counted as no match, as the matcher does)."""

    @property
    def trips(self) -> list[Trip]:
        """Every budget trip, in replay order."""
        return sorted((t for p in self.playbooks.values() for t in p.trips), key=lambda t: t.at)

    def as_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return {
            "findings": self.findings,
            "unmatched": self.unmatched,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "playbooks": [p.as_json() for p in self.playbooks.values()],
            "budget_trips": [t.as_json() for t in self.trips],
            "when_errors": dict(self.when_errors),
        }


class MemoryLadders:
    """The ladder history of a replay, kept in memory as `store.ladders` keeps it."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[int, int, datetime]] = {}

    def climb(self, now: datetime, playbook: Playbook, key: str) -> tuple[int, int]:
        """One more offense by `key` at `now`: (rung level, offenses since the last reset)."""
        spec = playbook.ladder
        assert spec is not None
        level, offenses, last = self._seen.get((playbook.name, key), (-1, 0, now))
        if level >= 0 and now - last > spec.decay:
            level, offenses = -1, 0
        level, offenses = min(level + 1, len(spec.rungs) - 1), offenses + 1
        self._seen[(playbook.name, key)] = (level, offenses, now)
        return level, offenses


def simulate(
    replays: Iterable[Replay],
    playbooks: Matcher | list[Playbook],
    *,
    budget: BudgetCheck | None = None,
    protected: ProtectedCheck | None = None,
    actions: Mapping[str, type[Action]] = CATALOG,
    progress: Callable[[], None] | None = None,
) -> SimulationReport:
    """Plan every finding (oldest first) without acting, and count what would have happened."""
    matcher = playbooks if isinstance(playbooks, Matcher) else Matcher(playbooks)
    report = SimulationReport()
    groups: dict[tuple[str, str], datetime] = {}
    ladders = MemoryLadders()
    for replay in replays:
        report.findings += 1
        report.first = report.first or replay.at
        report.last = replay.at
        result = matcher.evaluate(replay.finding)
        for failed, _ in result.errors:
            report.when_errors[failed.name] += 1
        if not result.playbooks:
            report.unmatched += 1
        view = replay.finding.expression_view()
        for playbook in result.playbooks:
            entry = report.playbooks.get(playbook.name)
            if entry is None:
                entry = PlaybookReport(playbook.name, playbook.mode)
                report.playbooks[playbook.name] = entry
            entry.matched += 1
            # As the planner does: a finding joins an open remediation of its group, else it
            # opens one (and only then climbs the ladder).
            key = playbook.group_key_or_fingerprint(view, replay.finding.fingerprint)
            if _joins(groups, playbook, key, replay.at):
                entry.grouped += 1
                continue
            entry.remediations += 1
            climb = partial(ladders.climb, replay.at)
            planned = preview_playbook(playbook, replay.finding, view, actions, climb)
            if planned.ladder is not None:
                entry.rungs[str(planned.ladder["rung"])] += 1
            _account(entry, planned, replay, budget, protected)
        if progress is not None:
            progress()
    return report


def _joins(
    groups: dict[tuple[str, str], datetime], playbook: Playbook, key: str, at: datetime
) -> bool:
    """True when the finding joins an open remediation of its group (else it opens one)."""
    window = playbook.group_window
    if not window:
        return False
    until = groups.get((playbook.name, key))
    if until is not None and at < until:
        return True
    groups[(playbook.name, key)] = at + window
    return False


def _account(
    entry: PlaybookReport,
    planned: PlaybookPreview,
    replay: Replay,
    budget: BudgetCheck | None,
    protected: ProtectedCheck | None,
) -> None:
    """Count one new remediation; like the engine, the rails are applied step by step."""
    approval = planned.needs_approval
    for step in planned.steps:
        if step.runs is False:
            continue
        if step.problem:
            entry.problems[f"{step.id}: {step.problem}"] += 1
            continue
        if planned.mode is Mode.DRY_RUN:
            continue
        hit = protected(step.uses, step.params) if protected is not None else None
        if hit is not None:
            entry.refused[f"{step.id}: {hit}"] += 1
            continue
        containment = step.containment
        if containment is None:
            continue
        contained = Contained(
            at=replay.at,
            playbook=planned.name,
            target=str(step.target),
            kind=containment.kind,
            subject_type=containment.subject_type,
            subject=containment.subject,
            scope=containment.scope,
        )
        if not approval and budget is not None:
            reason = budget(contained)
            if reason is not None:
                entry.trips.append(Trip(replay.at, planned.name, replay.origin, reason))
                approval = True
        (entry.pending if approval else entry.containments)[contained.kind] += 1
        subject = (
            contained.kind,
            contained.subject_type or "?",
            contained.subject or "?",
            contained.scope or "?",
        )
        entry.subjects[subject] += 1
    if approval:
        entry.needs_approval += 1
