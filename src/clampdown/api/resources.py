"""Read and act on findings, remediations, tasks, containments and the action catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import App, Approver, Reader
from clampdown.api.responses import Json
from clampdown.durations import parse_duration
from clampdown.errors import InputError

router = APIRouter(prefix="/v1")

Limit = Annotated[int, Query(ge=1, le=1000)]
BIGINT = 2**63 - 1


class Note(BaseModel):
    """What the person says about an approval or a completed task; recorded."""

    note: str = Field(default="", max_length=2000)


class Reason(BaseModel):
    """Why a remediation is rejected; recorded."""

    reason: str = Field(default="", max_length=2000)


@router.get("/findings", tags=["findings"])
async def list_findings(
    _t: Reader,
    app: App,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=1, le=BIGINT)] = None,
    type: str | None = None,
) -> Json:
    """Newest findings first; page with `before` = the last id seen."""
    rows = await run_in_threadpool(app.list_findings, limit=limit, before=before, type_=type)
    return Json({"findings": rows})


@router.get("/findings/{finding_id}", tags=["findings"])
async def get_finding(
    _t: Reader, app: App, finding_id: Annotated[int, Path(ge=1, le=BIGINT)]
) -> Json:
    """One finding with its raw payload."""
    return Json(await run_in_threadpool(app.get_finding, finding_id))


@router.get("/remediations", tags=["remediations"])
async def list_remediations(
    _t: Reader,
    app: App,
    state: str | None = None,
    playbook: str | None = None,
    limit: Limit = 50,
    before: str | None = None,
) -> Json:
    """Newest remediations first, optionally of one state or playbook."""
    rows = await run_in_threadpool(
        app.list_remediations, state=state, playbook=playbook, limit=limit, before=before
    )
    return Json({"remediations": rows})


@router.get("/remediations/{remediation_id}", tags=["remediations"])
async def get_remediation(_t: Reader, app: App, remediation_id: str) -> Json:
    """A remediation with its steps, history and findings."""
    return Json(await run_in_threadpool(app.get_remediation, remediation_id))


@router.post("/remediations/{remediation_id}/approve", tags=["remediations"])
async def approve(token: Approver, app: App, remediation_id: str, body: Note | None = None) -> Json:
    """Approve a remediation waiting for approval; the approver is recorded."""
    note = body.note if body else ""
    return Json(
        await run_in_threadpool(app.approve, remediation_id, actor=f"token:{token.name}", note=note)
    )


@router.post("/remediations/{remediation_id}/reject", tags=["remediations"])
async def reject(
    token: Approver, app: App, remediation_id: str, body: Reason | None = None
) -> Json:
    """Reject a remediation waiting for approval; nothing of it runs."""
    reason = body.reason if body else ""
    return Json(
        await run_in_threadpool(
            app.reject, remediation_id, actor=f"token:{token.name}", reason=reason
        )
    )


@router.get("/tasks", tags=["tasks"])
async def list_tasks(_t: Reader, app: App, status: str | None = "open", limit: Limit = 100) -> Json:
    """Guided tasks (open by default; `status=done`, or empty for all)."""
    rows = await run_in_threadpool(app.list_tasks, status=status or None, limit=limit)
    return Json({"tasks": rows})


@router.post("/tasks/{task_id}/complete", tags=["tasks"])
async def complete_task(token: Approver, app: App, task_id: str, body: Note | None = None) -> Json:
    """Mark a guided task done; its remediation continues."""
    note = body.note if body else ""
    return Json(
        await run_in_threadpool(app.complete_task, task_id, actor=f"token:{token.name}", note=note)
    )


@router.get("/containments", tags=["containments"])
async def list_containments(
    _t: Reader, app: App, include_removed: bool = False, limit: Limit = 500
) -> Json:
    """Active containments, or all of them newest first."""
    rows = await run_in_threadpool(
        app.list_containments, include_removed=include_removed, limit=limit
    )
    return Json({"containments": rows})


class Extension(BaseModel):
    """A new expiry for a containment: a time, or a duration added to the current expiry."""

    until: datetime | None = None
    by: str | None = Field(default=None, description="e.g. 4h, 1d", max_length=40)
    note: str = Field(default="", max_length=2000)


@router.post("/containments/{containment_id}/undo", tags=["containments"])
async def undo_containment(
    token: Approver, app: App, containment_id: str, body: Reason | None = None
) -> Json:
    """Lift a containment before its expiry, on the target that enforces it; recorded as an
    override (a person's undo)."""
    reason = body.reason if body else ""
    row = await run_in_threadpool(
        app.undo_containment, containment_id, actor=f"token:{token.name}", reason=reason
    )
    return Json(row, status_code=202)


@router.post("/containments/{containment_id}/extend", tags=["containments"])
async def extend_containment(
    token: Approver, app: App, containment_id: str, body: Extension
) -> Json:
    """Move a temporary containment's expiry (`until`, or `by` a duration)."""
    if body.until is not None and body.until.tzinfo is None:
        raise InputError("until: give a time zone, e.g. 2026-12-01T10:00:00Z")
    try:
        by = parse_duration(body.by) if body.by is not None else None
    except ValueError as exc:
        raise InputError(f"by: {exc}") from None
    row = await run_in_threadpool(
        lambda: app.extend_containment(
            containment_id, actor=f"token:{token.name}", until=body.until, by=by, note=body.note
        )
    )
    return Json(row)


@router.get("/actions", tags=["actions"])
async def list_actions(_t: Reader, app: App) -> Json:
    """The action catalog: parameters, target types, idempotency, undo and verification."""
    catalog: list[dict[str, Any]] = app.actions()
    return Json({"actions": catalog})


@router.get("/healthz", tags=["health"], responses={503: {"description": "engine not running"}})
async def health(app: App) -> Json:
    """Liveness and readiness: the database answers and the engine runs (503 otherwise)."""
    state = await run_in_threadpool(app.health)
    return Json(state, status_code=200 if state["status"] == "ok" else 503)
