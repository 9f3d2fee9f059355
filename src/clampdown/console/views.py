"""What each console page shows, read from the services and the store's summaries.

Every function here is synchronous (the routes run it in a thread) and reads a bounded
number of rows through indexed queries, whatever the size of the store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.errors import InputError
from clampdown.model import RemediationState
from clampdown.services import Clampdown
from clampdown.store import summaries

OPEN_STATES = [s.value for s in RemediationState if not s.final]
STATE_ORDER = [s.value for s in RemediationState]
SHORT_LIST = 20
"""Rows in each list of the overview."""
PAGE_SIZE = 50
"""Rows per page of the remediations list."""
CONTAINMENT_ROWS = 200
TASK_ROWS = 100
RECENT_PER_PLAYBOOK = 5
HISTORY_ROWS = 400
"""History rows shown on a remediation's page (the first and the last half)."""
DAY = timedelta(days=1)
TASK_FILTERS = ("open", "done", "all")


def overview(app: Clampdown, now: datetime) -> dict[str, Any]:
    """Key figures, open remediations, pending approvals, active containments, failures."""
    with app.db.read() as conn:
        open_counts = summaries.count_by_state(conn, OPEN_STATES)
        figures = {
            "open": sum(open_counts.values()),
            "awaiting_approval": open_counts.get(RemediationState.AWAITING_APPROVAL.value, 0),
            "active_containments": summaries.count_active_containments(conn, now=now),
            "open_tasks": summaries.count_tasks(conn, "open"),
            "failed_24h": summaries.count_changed_since(conn, "failed", now - DAY),
            "findings_24h": summaries.count_findings_since(conn, now - DAY),
        }
        open_rows = summaries.in_states(conn, OPEN_STATES, limit=SHORT_LIST)
        pending = summaries.in_states(
            conn, [RemediationState.AWAITING_APPROVAL.value], limit=SHORT_LIST
        )
        failures = summaries.in_states(
            conn, [RemediationState.FAILED.value], limit=SHORT_LIST, order_by_update=True
        )
        why_failed = summaries.reasons(conn, [r["id"] for r in failures], "failed")
        active = summaries.active_containments(conn, now=now, limit=SHORT_LIST)
        _with_findings(conn, open_rows + pending + failures)
    for row in failures:
        row["reason"] = why_failed.get(row["id"], "")
    return {
        "figures": figures,
        "open": open_rows,
        "pending": pending,
        "failures": failures,
        "containments": active,
    }


def remediation_list(
    app: Clampdown, *, state: str | None, playbook: str | None, before: str | None
) -> dict[str, Any]:
    """One page of remediations, newest first; `state` may be "open" (every unfinished)."""
    if state == "open":
        states: list[str] | None = OPEN_STATES
    elif state:
        if state not in STATE_ORDER:
            raise InputError(f"state: {state!r} is not one of open, {', '.join(STATE_ORDER)}")
        states = [state]
    else:
        states = None
    with app.db.read() as conn:
        rows = summaries.listing(
            conn, states=states, playbook=playbook or None, before=before, limit=PAGE_SIZE + 1
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        _with_findings(conn, rows)
    return {
        "rows": rows,
        "more": more,
        "next_before": rows[-1]["id"] if more else None,
        "state": state or "",
        "playbook": playbook or "",
        "before": before or "",
        "states": ["open", *STATE_ORDER],
        "playbooks": sorted({p.name for p in app.playbooks} | ({playbook} if playbook else set())),
        "page_size": PAGE_SIZE,
    }


def remediation_detail(app: Clampdown, remediation_id: str, now: datetime) -> dict[str, Any]:
    """A remediation's timeline: its finding, its plan step by step, and its history."""
    rem = app.get_remediation(remediation_id)
    finding = app.get_finding(rem["finding_id"])
    with app.db.read() as conn:
        made = summaries.containments_of(conn, remediation_id)
    by_step: dict[str, list[dict[str, Any]]] = {}
    for entry in rem["history"]:
        if entry["step_key"] is not None:
            by_step.setdefault(entry["step_key"], []).append(entry)
    verdicts = [h for h in rem["history"] if h["step_key"] is None]
    steps = [
        _step_view(step, by_step.get(step["key"], []), rem, verdicts, now) for step in rem["steps"]
    ]
    history = rem["history"]
    skipped = max(0, len(history) - HISTORY_ROWS)
    if skipped:
        # A long-grouped remediation gathers a row per repeat: show both ends, say what's cut.
        history = history[: HISTORY_ROWS // 2] + history[-HISTORY_ROWS // 2 :]
    return {
        "rem": rem,
        "finding": finding,
        "steps": steps,
        "history": history,
        "history_skipped": skipped,
        "containments": made,
        "findings_shown": rem["findings"][:50],
    }


def _step_view(
    step: dict[str, Any],
    history: list[dict[str, Any]],
    rem: dict[str, Any],
    verdicts: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    action = registry.CATALOG.get(step["action"])
    params = step["params"] if isinstance(step["params"], dict) else {}
    spec_with = (step["spec"] or {}).get("with") or {}
    result = step["result"] if isinstance(step["result"], dict) else None
    output = (result or {}).get("output") or {}
    return {
        **step,
        "target": params.get("target") or spec_with.get("target") or "",
        # Unset optional parameters (None) are noise on the page; the API shows them all.
        "shown_params": {k: v for k, v in (params or spec_with).items() if v is not None},
        "params_rendered": bool(params),
        "summary": (result or {}).get("summary", ""),
        "output": output if isinstance(output, dict) else {},
        "task_id": output.get("task_id") if isinstance(output, dict) else None,
        "verification": _verification(step, action is not None and action.verifiable, verdicts),
        "undo": _undo(step, action is not None and action.reversible, history, now),
        "step_history": history,
    }


def _verification(step: dict[str, Any], verifiable: bool, verdicts: list[dict[str, Any]]) -> str:
    if not verifiable:
        return "not verifiable"
    for entry in reversed(verdicts):
        reason = str(entry["reason"])
        if reason.startswith("verification failed:") and f" {step['key']}:" in reason:
            return "failed: " + reason.split(f" {step['key']}:", 1)[1].split(";")[0].strip()
        if entry["to_state"] in ("succeeded", "expired") and entry["from_state"] == "verifying":
            return "verified" if step["state"] == "succeeded" else "not checked"
    return "checked when every step has run"


def _undo(
    step: dict[str, Any], reversible: bool, history: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    if not reversible:
        return {"text": "not reversible", "at": None}
    undone = next((h for h in reversed(history) if h["to_state"] == "undone"), None)
    if undone is not None:
        return {"text": f"undone: {undone['reason']}", "at": undone["at"]}
    expires = step["expires_at"]
    if expires is not None and step["state"] == "succeeded":
        return {"text": "undone on expiry" if expires > now else "expiry undo due", "at": expires}
    return {"text": "reversible", "at": None}


def task_list(app: Clampdown, status: str) -> dict[str, Any]:
    """Guided tasks, newest first, open, done or all."""
    if status not in TASK_FILTERS:
        raise InputError(f"status: {status!r} is not one of {', '.join(TASK_FILTERS)}")
    rows = app.list_tasks(status=None if status == "all" else status, limit=TASK_ROWS)
    for row in rows:
        row["ticked"] = len(row.get("steps_done") or [])
    return {"rows": rows, "status": status, "filters": TASK_FILTERS, "limit": TASK_ROWS}


def task_detail(app: Clampdown, task_id: str) -> dict[str, Any]:
    """A task with its checklist and who ticked what."""
    task = app.get_task(task_id)
    ticks = {
        int(t["step"]): {"by": str(t.get("by", "")), "at": _when(t.get("at"))}
        for t in task.get("steps_done") or []
    }
    checklist = [
        {"index": i, "text": text, "tick": ticks.get(i)} for i, text in enumerate(task["steps"])
    ]
    return {"task": task, "checklist": checklist}


def containment_list(app: Clampdown) -> dict[str, Any]:
    """Containments not lifted, newest first, with how many there are in all."""
    rows = app.list_containments(limit=CONTAINMENT_ROWS)
    with app.db.read() as conn:
        total = summaries.count_containments_not_removed(conn)
    return {"rows": rows, "total": total, "limit": CONTAINMENT_ROWS}


def playbook_list(app: Clampdown) -> dict[str, Any]:
    """Each loaded playbook with its remediations counted by state and its latest ones."""
    with app.db.read() as conn:
        counts = summaries.count_by_playbook_and_state(conn)
        books = []
        for playbook in sorted(app.playbooks, key=lambda p: p.name):
            by_state = counts.get(playbook.name, {})
            books.append(
                {
                    "name": playbook.name,
                    "mode": playbook.mode.value,
                    "description": playbook.description,
                    "owner": playbook.owner,
                    "priority": playbook.priority,
                    "counts": [(s, by_state[s]) for s in STATE_ORDER if by_state.get(s)],
                    "total": sum(by_state.values()),
                    "latest": summaries.latest_of_playbook(
                        conn, playbook.name, limit=RECENT_PER_PLAYBOOK
                    ),
                }
            )
    return {"playbooks": books, "recent": RECENT_PER_PLAYBOOK}


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _with_findings(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Attach to each remediation row the title, type and severity of its first finding."""
    heads = summaries.finding_heads(conn, [r["finding_id"] for r in rows])
    for row in rows:
        row["finding"] = heads.get(row["finding_id"])
