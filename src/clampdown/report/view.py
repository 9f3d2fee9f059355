"""What the report shows, as text cells and chart data: one view for every output format.

Numbers are formatted here, once, so that the HTML and Markdown reports read the same. Cells
stay plain (unescaped) text; each renderer escapes them for its format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clampdown.effectiveness.model import Durations, Effectiveness, Figures, Group
from clampdown.report.charts import Series, format_duration, format_value
from clampdown.report.suggestions import Suggestion

TOP_PLAYBOOKS = 15
"""Bars in the per-playbook charts (the table lists every playbook)."""
TOP_RECURRING = 10
"""Bars in the recurring threats chart and rows in its table."""

# Ended states first, then the ones still in progress; others (if any) follow by name.
STATE_ORDER = (
    "succeeded",
    "expired",
    "failed",
    "rolled_back",
    "rejected",
    "dry_run",
    "awaiting_approval",
    "planned",
    "running",
    "verifying",
)


@dataclass(frozen=True)
class Figure:
    """One key figure: what, its value, and what it counts."""

    label: str
    value: str
    detail: str


@dataclass(frozen=True)
class Table:
    """Rows of text cells under named columns; `numeric` columns align right."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: Sequence[bool]


@dataclass(frozen=True)
class Timeline:
    """The figures of each bucket, for the charts over time."""

    labels: list[str]
    contain_p50: list[float | None]
    contain_p90: list[float | None]
    states: list[str]
    outcomes: list[Series]
    table: Table


@dataclass(frozen=True)
class ReportView:
    """Everything the report shows."""

    since: str
    until: str
    generated_at: str
    bucket: str
    playbook_count: int
    figures: list[Figure]
    suggestions: list[Suggestion]
    timeline: Timeline
    playbook_bars: list[tuple[str, float | None]]
    contain_bars: list[tuple[str, float | None]]
    recurring_bars: list[tuple[str, float | None]]
    recurring: Table
    playbooks: Table
    targets: Table
    alert_types: Table
    collateral: Table


def build_view(eff: Effectiveness, suggestions: Sequence[Suggestion]) -> ReportView:
    """The report's content for `eff`."""
    groups = _playbook_groups(eff)
    ranked = sorted(groups, key=lambda g: (-g.figures.remediations, g.key))[:TOP_PLAYBOOKS]
    timed = sorted(
        (g for g in groups if g.figures.time_to_contain.p50 is not None),
        key=lambda g: (-(g.figures.time_to_contain.p50 or 0.0), g.key),
    )[:TOP_PLAYBOOKS]
    recurring = eff.recurring[:TOP_RECURRING]
    return ReportView(
        since=_moment(eff.since),
        until=_moment(eff.until),
        generated_at=_moment(eff.generated_at),
        bucket="day" if eff.bucket_seconds >= 86400 else "hour",
        playbook_count=len(eff.playbooks),
        figures=_figures(eff.overall, eff.approval_wait_limit_seconds),
        suggestions=list(suggestions),
        timeline=_timeline(eff),
        playbook_bars=[(g.key, float(g.figures.remediations)) for g in ranked],
        contain_bars=[(g.key, g.figures.time_to_contain.p50) for g in timed],
        recurring_bars=[(r.title or r.type, float(r.recurrences)) for r in recurring],
        recurring=Table(
            ["Threat", "Type", "Fingerprint", "Playbook", "Recurrences", "Back after", "Last seen"],
            [
                [
                    r.title,
                    r.type,
                    r.fingerprint,
                    r.playbook,
                    str(r.recurrences),
                    format_duration(r.first_after_seconds),
                    _moment(r.last_seen),
                ]
                for r in recurring
            ],
            [False, False, False, False, True, True, False],
        ),
        playbooks=_group_table("Playbook", groups),
        targets=_group_table("Target", eff.by_target),
        alert_types=_group_table("Alert type", eff.by_alert_type),
        collateral=Table(
            ["API", "Allowed", "Denied", "Throttled", "Refused"],
            [
                [c.api, str(c.allowed), str(c.denied), str(c.throttled), _pct(c.refused_share)]
                for c in eff.collateral
            ],
            [False, True, True, True, True],
        ),
    )


def _playbook_groups(eff: Effectiveness) -> list[Group]:
    """Every loaded playbook, those that never fired with empty figures, then any other."""
    fired = {g.key: g for g in eff.by_playbook}
    loaded = [fired.get(name) or Group(key=name, figures=Figures()) for name in eff.playbooks]
    names = set(eff.playbooks)
    gone = [g for g in eff.by_playbook if g.key not in names]
    return sorted([*loaded, *gone], key=lambda g: g.key)


def _figures(f: Figures, wait_limit: float) -> list[Figure]:
    return [
        Figure("Remediations", str(f.remediations), f"opened in the period; {f.open} still open"),
        Figure("Ended", str(f.ended), "succeeded, expired, failed or rolled back"),
        Figure(
            "Ran automatically", _pct(f.automatic_share), f"{f.automatic} ended without a person"
        ),
        Figure("Success rate", _pct(f.success_rate), "succeeded or expired, of ended"),
        Figure("Failure rate", _pct(f.failure_rate), "failed, of ended"),
        Figure(
            "Verification failures",
            _pct(f.verification_failure_rate),
            "the effect was missing when checked, of ended",
        ),
        Figure("Time to acknowledge", _spread(f.time_to_acknowledge), "p50 / p90"),
        Figure("Time to contain", _spread(f.time_to_contain), "p50 / p90"),
        Figure("Time to close", _spread(f.time_to_close), "p50 / p90"),
        Figure(
            "Undone early",
            _pct(f.override_rate),
            f"{f.overridden} of {f.contained} containments undone by a person",
        ),
        Figure(
            "Recurrence",
            _pct(f.recurrence_rate),
            f"{f.recurred} of {f.closed} closed remediations saw the threat again",
        ),
        Figure(
            "Approvals",
            str(f.approvals),
            f"{f.approvals_slow} waited over {format_duration(wait_limit)}, "
            f"{f.approvals_timed_out} timed out; wait {_spread(f.approval_wait)}",
        ),
    ]


def _timeline(eff: Effectiveness) -> Timeline:
    buckets = sorted(eff.timeline, key=lambda b: b.start)
    shape = "%Y-%m-%d" if eff.bucket_seconds >= 86400 else "%m-%d %H:%M"
    labels = [f"{_utc(b.start):{shape}}" for b in buckets]
    seen = {state for b in buckets for state in b.figures.outcomes}
    states = [s for s in STATE_ORDER if s in seen] + sorted(seen - set(STATE_ORDER))
    outcomes = [
        Series(state, [float(b.figures.outcomes.get(state, 0)) for b in buckets])
        for state in states
    ]
    p50 = [b.figures.time_to_contain.p50 for b in buckets]
    p90 = [b.figures.time_to_contain.p90 for b in buckets]
    rows = [
        [
            label,
            str(b.figures.remediations),
            *(str(b.figures.outcomes.get(state, 0)) for state in states),
            format_value(low, "seconds"),
            format_value(high, "seconds"),
        ]
        for label, b, low, high in zip(labels, buckets, p50, p90, strict=True)
    ]
    columns = ["Period", "Remediations", *states, "Contain p50", "Contain p90"]
    table = Table(columns, rows, [False] + [True] * (len(columns) - 1))
    return Timeline(labels, p50, p90, states, outcomes, table)


def _group_table(title: str, groups: Sequence[Group]) -> Table:
    columns = [
        title,
        "Remediations",
        "Open",
        "Ended",
        "Automatic",
        "Success",
        "Failure",
        "Verification failed",
        "Contain p50 / p90",
        "Undone early",
        "Recurred",
        "Approvals",
    ]
    rows = [
        [
            g.key,
            str(f.remediations),
            str(f.open),
            str(f.ended),
            _pct(f.automatic_share),
            _pct(f.success_rate),
            _pct(f.failure_rate),
            _pct(f.verification_failure_rate),
            _spread(f.time_to_contain),
            _ratio(f.override_rate, f.overridden, f.contained),
            _ratio(f.recurrence_rate, f.recurred, f.closed),
            _approvals(f),
        ]
        for g in groups
        for f in (g.figures,)
    ]
    return Table(columns, rows, [False] + [True] * (len(columns) - 1))


def _approvals(f: Figures) -> str:
    if not f.approvals:
        return "0"
    return f"{f.approvals} ({f.approvals_slow} slow, {f.approvals_timed_out} timed out)"


def _ratio(rate: float | None, part: int, whole: int) -> str:
    return "n/a" if rate is None else f"{_pct(rate)} ({part}/{whole})"


def _spread(d: Durations) -> str:
    if d.p50 is None:
        return "n/a"
    return f"{format_value(d.p50, 'seconds')} / {format_value(d.p90, 'seconds')}"


def _pct(share: float | None) -> str:
    return format_value(share, "share")


def _moment(at: datetime) -> str:
    """A time in UTC, to the minute."""
    return f"{_utc(at):%Y-%m-%d %H:%M} UTC"


def _utc(at: datetime) -> datetime:
    """The time in UTC; a naive time is taken to be UTC already."""
    return at.astimezone(UTC) if at.tzinfo else at
