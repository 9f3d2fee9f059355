"""Measure remediation effectiveness over a period, from the store.

Remediations opened in [since, until) are measured; recurrence looks at every finding received
after each close, up to now. Reading is done in a few set-based queries (no query per
remediation), so a week of a busy deployment is measured in one pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select

from clampdown.effectiveness import figures as fig
from clampdown.effectiveness.cases import Case, case_of, mark_recurrence
from clampdown.effectiveness.model import Collateral, Effectiveness
from clampdown.store import tallies
from clampdown.store.tables import FindingRow, HistoryRow, RemediationRow, StepRow, table

_f, _r, _s, _h = table(FindingRow), table(RemediationRow), table(StepRow), table(HistoryRow)
APPROVAL_WAIT_LIMIT = timedelta(minutes=30)
"""Approvals that wait longer than this count as waiting too long (configurable per call)."""
_CHUNK = 500  # ids per IN (...) list: well under every backend's parameter limit
_STEP_KEYS = ("key", "action", "state", "finished_at", "target")
_STEPS = select(
    _s.c.remediation_id,
    *(_s.c[k] for k in _STEP_KEYS[:-1]),
    _s.c.params["target"].as_string(),  # not the whole params document: only its target
).where(_s.c.remediation_id.in_(bindparam("b_ids", expanding=True)))
_HISTORY_KEYS = ("step_key", "at", "from_state", "to_state", "reason", "actor")
# Step-level entries matter only for undos (overrides); the rest are left in the database.
_HISTORY = (
    select(_h.c.remediation_id, *(_h.c[k] for k in _HISTORY_KEYS))
    .where(
        _h.c.remediation_id.in_(bindparam("b_ids", expanding=True)),
        or_(_h.c.step_key.is_(None), _h.c.to_state == "undone"),
    )
    .order_by(_h.c.id)
)


def measure(
    conn: Connection,
    *,
    playbooks: Sequence[str] | Mapping[str, str],
    since: datetime,
    until: datetime,
    approval_wait_limit: timedelta = APPROVAL_WAIT_LIMIT,
    now: datetime | None = None,
) -> Effectiveness:
    """Effectiveness of the remediations opened in [since, until).

    `playbooks` are the loaded playbooks' names, or a mapping of each name to its mode.
    """
    cases = load_cases(conn, since=since, until=until)
    return summarize(
        cases,
        seen=_seen_after(conn, cases),
        collateral=_collateral(conn, since, until),
        playbooks=playbooks,
        since=since,
        until=until,
        approval_wait_limit=approval_wait_limit,
        now=now or datetime.now(UTC),
    )


def summarize(
    cases: list[Case],
    *,
    seen: dict[str, list[datetime]],
    collateral: list[Collateral],
    playbooks: Sequence[str] | Mapping[str, str],
    since: datetime,
    until: datetime,
    approval_wait_limit: timedelta,
    now: datetime,
) -> Effectiveness:
    """Effectiveness of `cases`, given when each fingerprint was seen (sorted receive times)."""
    mark_recurrence(cases, seen)
    step = timedelta(hours=1) if until - since <= timedelta(days=2) else timedelta(days=1)
    common: dict[str, Any] = {"now": now, "approval_limit": approval_wait_limit}
    return Effectiveness(
        since=since,
        until=until,
        generated_at=now,
        approval_wait_limit_seconds=approval_wait_limit.total_seconds(),
        playbooks=sorted(playbooks),
        modes=dict(playbooks) if isinstance(playbooks, Mapping) else {},
        overall=fig.figures(cases, **common),
        by_playbook=fig.groups(cases, lambda c: [c.playbook], include=playbooks, **common),
        by_target=fig.groups(cases, lambda c: c.targets, **common),
        by_alert_type=fig.groups(cases, lambda c: [c.alert_type], **common),
        timeline=fig.timeline(cases, since=since, until=until, step=step, **common),
        bucket_seconds=int(step.total_seconds()),
        recurring=fig.recurring(cases, seen),
        collateral=collateral,
    )


def load_cases(conn: Connection, *, since: datetime, until: datetime) -> list[Case]:
    """Every remediation opened in [since, until), read into cases."""
    rows = conn.execute(
        select(
            _r.c.id,
            _r.c.playbook,
            _r.c.state,
            _r.c.created_at,
            _f.c.type,
            _f.c.fingerprint,
            _f.c.title,
            _f.c.received_at,
            _f.c.data["first_seen"].as_string().label("first_seen"),
        )
        .join(_f, _f.c.id == _r.c.finding_id)
        .where(_r.c.created_at >= since, _r.c.created_at < until)
        .order_by(_r.c.created_at, _r.c.id)
    ).all()
    ids = [r.id for r in rows]
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for rid, *values in conn.execute(_STEPS, {"b_ids": chunk}):
            steps[rid].append(dict(zip(_STEP_KEYS, values, strict=True)))
        for rid, *values in conn.execute(_HISTORY, {"b_ids": chunk}):
            history[rid].append(dict(zip(_HISTORY_KEYS, values, strict=True)))
    return [
        case_of(
            {
                "id": row.id,
                "playbook": row.playbook,
                "state": row.state,
                "created_at": row.created_at,
            },
            {
                "type": row.type,
                "fingerprint": row.fingerprint,
                "title": row.title,
                "received_at": row.received_at,
                "first_seen": _time(row.first_seen),
            },
            steps[row.id],
            history[row.id],
        )
        for row in rows
    ]


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _seen_after(conn: Connection, cases: list[Case]) -> dict[str, list[datetime]]:
    """Receive times, sorted, of findings per fingerprint after the earliest close."""
    closes = [c.closed_at for c in cases if c.closed_at is not None]
    if not closes:
        return {}
    wanted = {c.fingerprint for c in cases if c.closed_at is not None}
    seen: dict[str, list[datetime]] = defaultdict(list)
    rows = conn.execute(
        select(_f.c.fingerprint, _f.c.received_at)
        .where(_f.c.received_at > min(closes))
        .order_by(_f.c.received_at)
    )
    for fingerprint, received in rows:
        if fingerprint in wanted:
            seen[fingerprint].append(received)
    return seen


def _collateral(conn: Connection, since: datetime, until: datetime) -> list[Collateral]:
    found = []
    for row in tallies.collateral(conn, since=since, until=until):
        total = row["allowed"] + row["denied"] + row["throttled"]
        refused = row["denied"] + row["throttled"]
        found.append(Collateral(**row, refused_share=refused / total))
    found.sort(key=lambda c: (-c.refused_share, c.api))
    return found
