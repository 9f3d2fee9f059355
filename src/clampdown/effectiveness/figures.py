"""Figures from cases: counts, rates and duration distributions, grouped and over time."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from clampdown.effectiveness.cases import Case
from clampdown.effectiveness.model import Bucket, Durations, Figures, Group, Recurring


def durations(values: Sequence[float]) -> Durations:
    """Count, mean, nearest-rank p50/p90 and max of `values` (seconds)."""
    if not values:
        return Durations()
    ordered = sorted(values)
    return Durations(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=_rank(ordered, 0.5),
        p90=_rank(ordered, 0.9),
        max=ordered[-1],
    )


def _rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


def figures(cases: Sequence[Case], *, now: datetime, approval_limit: timedelta) -> Figures:
    """The figures of one set of cases."""
    real = [c for c in cases if c.state != "dry_run"]
    ended = [c for c in real if c.ended]
    outcomes = Counter(c.state for c in cases)
    contained = [c for c in real if c.contained_at is not None]
    closed = [c for c in real if c.closed_at is not None]
    waited = [c for c in real if c.waited_from is not None]
    waits = [_seconds(c.waited_until or now, c.waited_from) or 0.0 for c in waited]
    limit = approval_limit.total_seconds()

    def spans(moment: Callable[[Case], datetime | None]) -> Durations:
        return durations([s for c in real if (s := _seconds(moment(c), c.detected_at)) is not None])

    automatic = sum(c.automatic for c in ended)
    failed = outcomes["failed"]
    overridden = sum(c.overridden for c in contained)
    recurred = [c for c in closed if c.recurred_at is not None]
    blocks_closed = [c for c in closed if c.contained_at is not None]
    blocks_recurred = sum(c.recurred_at is not None for c in blocks_closed)
    return Figures(
        remediations=len(cases),
        open=sum(c.closed_at is None and c.state != "dry_run" for c in cases),
        outcomes=dict(sorted(outcomes.items())),
        ended=len(ended),
        automatic=automatic,
        automatic_share=_share(automatic, len(ended)),
        success_rate=_share(outcomes["succeeded"] + outcomes["expired"], len(ended)),
        failure_rate=_share(failed, len(ended)),
        verification_failure_rate=_share(sum(c.verification_failed for c in ended), len(ended)),
        time_to_acknowledge=spans(lambda c: c.acknowledged_at),
        time_to_contain=spans(lambda c: c.contained_at),
        time_to_close=spans(lambda c: c.closed_at),
        contained=len(contained),
        overridden=overridden,
        override_rate=_share(overridden, len(contained)),
        closed=len(closed),
        recurred=len(recurred),
        recurrence_rate=_share(len(recurred), len(closed)),
        time_to_recur=durations(
            [s for c in recurred if (s := _seconds(c.recurred_at, c.closed_at)) is not None]
        ),
        contained_closed=len(blocks_closed),
        contained_recurred=blocks_recurred,
        contained_recurrence_rate=_share(blocks_recurred, len(blocks_closed)),
        approvals=len(waited),
        approvals_slow=sum(w > limit for w in waits),
        approvals_timed_out=sum(c.approval_timed_out for c in waited),
        approval_wait=durations(waits),
    )


def groups(
    cases: Iterable[Case],
    keys: Callable[[Case], Iterable[str]],
    *,
    now: datetime,
    approval_limit: timedelta,
    include: Iterable[str] = (),
) -> list[Group]:
    """Figures per key (a case may count under several keys), sorted by key.

    Keys in `include` are listed even with no case (a playbook that never fired).
    """
    by_key: dict[str, list[Case]] = defaultdict(list)
    for key in include:
        by_key[key]
    for case in cases:
        for key in keys(case):
            by_key[key].append(case)
    return [
        Group(key=key, figures=figures(found, now=now, approval_limit=approval_limit))
        for key, found in sorted(by_key.items())
    ]


def timeline(
    cases: Iterable[Case],
    *,
    since: datetime,
    until: datetime,
    step: timedelta,
    now: datetime,
    approval_limit: timedelta,
) -> list[Bucket]:
    """Figures of the cases opened in each period of `step` from `since` to `until`.

    Periods are whole UTC hours or days (`step` divides a day): the first starts at or before
    `since`.
    """
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    since = since - (since - epoch) % step
    count = max(1, math.ceil((until - since) / step))
    buckets: list[list[Case]] = [[] for _ in range(count)]
    for case in cases:
        index = int((case.created_at - since) / step)
        if 0 <= index < count:
            buckets[index].append(case)
    return [
        Bucket(start=since + i * step, figures=figures(b, now=now, approval_limit=approval_limit))
        for i, b in enumerate(buckets)
    ]


def recurring(
    cases: Iterable[Case], seen: dict[str, list[datetime]], *, top: int = 10
) -> list[Recurring]:
    """The threats that came back after a close, most recurrences first."""
    first: dict[str, Case] = {}
    for case in sorted(cases, key=lambda c: c.created_at):
        if case.recurred_at is not None and case.fingerprint not in first:
            first[case.fingerprint] = case
    found = []
    for fingerprint, case in first.items():
        assert case.closed_at is not None
        assert case.recurred_at is not None
        after = [t for t in seen.get(fingerprint, []) if t > case.closed_at]
        found.append(
            Recurring(
                fingerprint=fingerprint,
                type=case.alert_type,
                title=case.title,
                playbook=case.playbook,
                recurrences=len(after),
                first_after_seconds=(case.recurred_at - case.closed_at).total_seconds(),
                last_seen=after[-1],
            )
        )
    found.sort(key=lambda r: (-r.recurrences, r.fingerprint))
    return found[:top]
