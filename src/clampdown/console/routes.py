"""The console's routes: plain GET pages, and POST forms that act and redirect back (303).

Pages need a session (else: the login page). Forms also need the session's CSRF token, a
same-origin request, and a token with the approve scope; whatever they refuse is an HTML page
with a 4xx status, never the API's JSON and never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from clampdown.api.deps import App, read_body
from clampdown.console import render, views
from clampdown.console.auth import (
    COOKIE_PATH,
    FLASH_COOKIE,
    FLASH_TTL,
    LOGIN_COOKIE,
    LOGIN_FORM_TTL,
    SESSION_COOKIE,
    Session,
    Sessions,
    csrf_matches,
    may_open,
    safe_next,
    same_origin,
)
from clampdown.console.formatting import iso, short_id
from clampdown.durations import parse_duration
from clampdown.errors import (
    ClampdownError,
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
)
from clampdown.report.render import svg_charts
from clampdown.report.suggestions import suggest
from clampdown.report.view import build_view
from clampdown.services import Clampdown

log = structlog.get_logger("clampdown.console")
router = APIRouter()
T = TypeVar("T")

EXTENSIONS = {"1h": "1 hour", "4h": "4 hours", "24h": "24 hours", "7d": "7 days"}
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
"""The periods the effectiveness page offers (each measured in the background)."""
"""The durations a containment can be extended by, as the form offers them."""
MAX_FIELD = 2000


class LoginNeeded(Exception):
    """No valid session: go to the login page, then come back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


class Refused(Exception):
    """A request the console turns down, shown as a page with `status`."""

    def __init__(self, status: int, message: str, *, back: str = "/console/") -> None:
        self.status = status
        self.message = message
        self.back = back
        super().__init__(message)


# -- sessions and forms ---------------------------------------------------------------------


def sessions_of(request: Request) -> Sessions:
    """The session signer of this app (see `clampdown.console.install`)."""
    sessions: Sessions = request.app.state.console_sessions
    return sessions


def current_session(request: Request) -> Session | None:
    """The request's session, checked against the token configuration as it is now."""
    app: Clampdown = request.app.state.clampdown
    return sessions_of(request).resume(request.cookies.get(SESSION_COOKIE), app.config.tokens)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def viewer(request: Request) -> Session:
    """A dependency: the signed-in person, or a redirect to the login page."""
    session = current_session(request)
    if session is None:
        raise LoginNeeded(_here(request))
    return session


Viewer = Annotated[Session, Depends(viewer)]


@dataclass(frozen=True)
class Form:
    """A checked form post: who sends it and its fields."""

    session: Session
    fields: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        """One field, cut to a sane length."""
        return self.fields.get(name, default)[:MAX_FIELD]

    def back(self, default: str) -> str:
        """Where to go after acting: the form's `back` if it is a console page."""
        return safe_next(self.fields.get("back"), default)


async def _fields(request: Request) -> dict[str, str]:
    body = await read_body(request)
    if not body:
        return {}
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise Refused(400, "Expected a form post (application/x-www-form-urlencoded).")
    try:
        pairs = parse_qsl(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50
        )
    except ValueError as exc:
        raise Refused(400, "Too many form fields.") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def action_form(request: Request) -> Form:
    """A dependency for every form that acts: session, same origin, CSRF token, approve scope."""
    session = current_session(request)
    if session is None:
        raise LoginNeeded(urlsplit(request.headers.get("referer", "")).path or "/console/")
    if not same_origin(request.headers):
        raise Refused(403, "This form was sent from another site; nothing was done.")
    fields = await _fields(request)
    if not csrf_matches(session, fields.get("csrf", "")):
        raise Refused(
            403, "The form's security token is missing or wrong; reload the page and try again."
        )
    if not session.can_approve:
        raise Refused(
            403, f"The token {session.token.name} may read but not act (no approve scope)."
        )
    return Form(session, fields)


Acting = Annotated[Form, Depends(action_form)]


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _forget(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def show(
    request: Request,
    session: Session | None,
    template: str,
    *,
    nav: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page for `session`, with the flash message left by the last action."""
    flash = sessions_of(request).read_flash(request.cookies.get(FLASH_COOKIE))
    response = render.page(
        template,
        {"session": session, "nav": nav, "flash": flash, **context},
        status=status_code,
    )
    if FLASH_COOKIE in request.cookies:
        _forget(request, response, FLASH_COOKIE)
    return response


def done(request: Request, back: str, message: str) -> Response:
    """The answer to a form that acted: back to the page, with a message to show there."""
    response = RedirectResponse(back, status_code=303)
    flash = sessions_of(request).flash("ok", message)
    _cookie(request, response, FLASH_COOKIE, flash, int(FLASH_TTL.total_seconds()))
    return render.secure(response)


async def call(back: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service in a thread; its refusals become a page with the matching status."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except NotFoundError as exc:
        raise Refused(404, str(exc), back=back) from exc
    except ConflictError as exc:
        raise Refused(409, str(exc), back=back) from exc
    except ForbiddenError as exc:
        raise Refused(403, str(exc), back=back) from exc
    except InputError as exc:
        raise Refused(400, str(exc), back=back) from exc
    except ClampdownError as exc:
        log.error("console action failed", error=str(exc))
        raise Refused(503, str(exc), back=back) from exc


def _query(value: str | None, limit: int = 200) -> str | None:
    return value[:limit] if value else None


# -- login ----------------------------------------------------------------------------------


def _login_page(
    request: Request, next_path: str, *, error: str = "", status: int = 200
) -> HTMLResponse:
    cookie, csrf = sessions_of(request).login_form()
    response = show(
        request, None, "login.html", status_code=status, csrf=csrf, next=next_path, error=error
    )
    _cookie(request, response, LOGIN_COOKIE, cookie, int(LOGIN_FORM_TTL.total_seconds()))
    return response


@router.get("/console/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    """The login form: an API token of the config with the read or approve scope."""
    target = safe_next(next)
    if current_session(request) is not None:
        return render.secure(RedirectResponse(target, status_code=303))
    return _login_page(request, target)


@router.post("/console/login")
async def login(request: Request, app: App) -> Response:
    """Check the token and start a session."""
    if not same_origin(request.headers):
        raise Refused(403, "This form was sent from another site.", back="/console/login")
    fields = await _fields(request)
    target = safe_next(fields.get("next"))
    sessions = sessions_of(request)
    if not sessions.login_form_valid(request.cookies.get(LOGIN_COOKIE), fields.get("csrf", "")):
        return _login_page(
            request, target, error="The login form had expired. Please try again.", status=403
        )
    token = app.authenticate(fields.get("token", "").strip())
    if token is None or not may_open(token):
        log.warning("console login refused", client=request.client.host if request.client else "")
        return _login_page(request, target, error="This token was not accepted.", status=401)
    cookie, expires = sessions.issue(token)
    log.info("console login", token=token.name, expires=iso(expires))
    response = RedirectResponse(target, status_code=303)
    _cookie(request, response, SESSION_COOKIE, cookie, int(sessions.ttl.total_seconds()))
    _forget(request, response, LOGIN_COOKIE)
    return render.secure(response)


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    """End the session in this browser."""
    session = current_session(request)
    if session is not None:
        if not same_origin(request.headers):
            raise Refused(403, "This form was sent from another site.")
        if not csrf_matches(session, (await _fields(request)).get("csrf", "")):
            raise Refused(403, "The form's security token is missing or wrong.")
    response = RedirectResponse("/console/login", status_code=303)
    _forget(request, response, SESSION_COOKIE)
    return render.secure(response)


# -- pages ----------------------------------------------------------------------------------


@router.get("/console")
async def console_root() -> Response:
    """The overview lives at /console/."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/")
async def overview(request: Request, session: Viewer, app: App) -> Response:
    """Open remediations, pending approvals, active containments, failures, key figures."""
    data = await call("/console/", views.overview, app, datetime.now(UTC))
    return show(request, session, "overview.html", nav="overview", **data)


@router.get("/console/remediations")
async def remediations(
    request: Request,
    session: Viewer,
    app: App,
    state: str | None = None,
    playbook: str | None = None,
    before: str | None = None,
) -> Response:
    """Remediations newest first, filtered by state or playbook, paged by `before`."""
    data = await call(
        "/console/remediations",
        lambda: views.remediation_list(
            app, state=_query(state), playbook=_query(playbook), before=_query(before)
        ),
    )
    return show(request, session, "remediations.html", nav="remediations", **data)


@router.get("/console/remediations/{remediation_id}")
async def remediation(request: Request, session: Viewer, app: App, remediation_id: str) -> Response:
    """A remediation's timeline."""
    data = await call(
        "/console/remediations",
        views.remediation_detail,
        app,
        remediation_id[:100],
        datetime.now(UTC),
    )
    return show(request, session, "remediation.html", nav="remediations", **data)


@router.post("/console/remediations/{remediation_id}/approve")
async def approve(request: Request, app: App, form: Acting, remediation_id: str) -> Response:
    """Approve a remediation that waits; the approver is recorded as console:<token>."""
    back = form.back(f"/console/remediations/{remediation_id}")
    rem = await call(
        back, app.approve, remediation_id, actor=form.session.actor, note=form.get("note")
    )
    return done(
        request, back, f"Approved remediation {short_id(rem['id'])}; it is now {rem['state']}."
    )


@router.post("/console/remediations/{remediation_id}/reject")
async def reject(request: Request, app: App, form: Acting, remediation_id: str) -> Response:
    """Reject a remediation that waits; nothing of it runs."""
    back = form.back(f"/console/remediations/{remediation_id}")
    rem = await call(
        back, app.reject, remediation_id, actor=form.session.actor, reason=form.get("reason")
    )
    return done(request, back, f"Rejected remediation {short_id(rem['id'])}.")


@router.get("/console/tasks")
async def tasks(request: Request, session: Viewer, app: App, status: str = "open") -> Response:
    """Guided tasks: open, done or all."""
    data = await call("/console/tasks", views.task_list, app, status[:10])
    return show(request, session, "tasks.html", nav="tasks", **data)


@router.get("/console/tasks/{task_id}")
async def task(request: Request, session: Viewer, app: App, task_id: str) -> Response:
    """A guided task with its checklist."""
    data = await call("/console/tasks", views.task_detail, app, task_id[:100])
    return show(request, session, "task.html", nav="tasks", **data)


@router.post("/console/tasks/{task_id}/checklist")
async def tick(request: Request, app: App, form: Acting, task_id: str) -> Response:
    """Tick (done=1) or untick (done=0) one checklist item."""
    back = form.back(f"/console/tasks/{task_id}")
    raw = form.get("step")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4:
        raise Refused(400, "Which checklist item? The form gave no item number.", back=back)
    ticked = form.get("done") == "1"
    await call(back, app.tick_task_step, task_id, int(raw), done=ticked, actor=form.session.actor)
    verb = "ticked" if ticked else "unticked"
    return done(request, back, f"Checklist item {int(raw) + 1} {verb}.")


@router.post("/console/tasks/{task_id}/complete")
async def complete(request: Request, app: App, form: Acting, task_id: str) -> Response:
    """Mark a task done; its remediation goes on."""
    back = form.back(f"/console/tasks/{task_id}")
    await call(back, app.complete_task, task_id, actor=form.session.actor, note=form.get("note"))
    return done(request, back, "Task marked done; its remediation goes on.")


@router.get("/console/containments")
async def containments(request: Request, session: Viewer, app: App) -> Response:
    """Containments in force, with undo and extend forms."""
    data = await call("/console/containments", views.containment_list, app)
    return show(
        request, session, "containments.html", nav="containments", extensions=EXTENSIONS, **data
    )


@router.post("/console/containments/{containment_id}/undo")
async def undo(request: Request, app: App, form: Acting, containment_id: str) -> Response:
    """Lift a containment now (its step is undone on its target)."""
    back = form.back("/console/containments")
    await call(
        back,
        app.undo_containment,
        containment_id,
        actor=form.session.actor,
        reason=form.get("reason"),
    )
    return done(request, back, f"Undo of containment {short_id(containment_id)} requested.")


@router.post("/console/containments/{containment_id}/extend")
async def extend(request: Request, app: App, form: Acting, containment_id: str) -> Response:
    """Move a containment's expiry later by 1 h, 4 h, 24 h or 7 d."""
    back = form.back("/console/containments")
    choice = form.get("by")
    if choice not in EXTENSIONS:
        raise Refused(400, f"Extend by one of {', '.join(EXTENSIONS)}.", back=back)
    row = await call(
        back,
        app.extend_containment,
        containment_id,
        by=parse_duration(choice),
        actor=form.session.actor,
        note=form.get("note"),
    )
    until = row.get("expires_at") if isinstance(row, dict) else None
    suffix = f" to {iso(until)}" if isinstance(until, datetime) else f" by {EXTENSIONS[choice]}"
    return done(request, back, f"Containment {short_id(containment_id)} extended{suffix}.")


@router.get("/console/playbooks")
async def playbooks(request: Request, session: Viewer, app: App) -> Response:
    """Loaded playbooks, their remediations by state, their latest runs."""
    data = await call("/console/playbooks", views.playbook_list, app)
    return show(request, session, "playbooks.html", nav="playbooks", **data)


@router.get("/console/effectiveness")
async def effectiveness(
    request: Request, session: Viewer, app: App, period: str = "7d"
) -> Response:
    """Effectiveness figures, suggestions and charts of the last day, week or month.

    The figures come from a background measurement (see effectiveness.snapshots): the page
    never waits for one, and says how old the figures it shows are.
    """
    if period not in PERIODS:
        raise Refused(400, f"Show one of the periods {', '.join(PERIODS)}.")
    eff = app.effectiveness_snapshot(PERIODS[period])
    context: dict[str, Any] = {"period": period, "periods": list(PERIODS), "view": None}
    if eff is not None:
        view = build_view(eff, suggest(eff))
        context.update(view=view, charts=svg_charts(view))
    return show(request, session, "effectiveness.html", nav="effectiveness", **context)


@router.api_route("/console/{rest:path}", methods=["GET", "POST"])
async def not_found(request: Request, rest: str) -> Response:
    """Any other console address."""
    raise Refused(404, "There is no such console page.")


# -- wiring -------------------------------------------------------------------------------


async def to_login(request: Request, exc: Exception) -> Response:
    """LoginNeeded: to the login page, remembering where to come back."""
    assert isinstance(exc, LoginNeeded)
    target = "/console/login?" + urlencode({"next": safe_next(exc.next_path)})
    return render.secure(RedirectResponse(target, status_code=303))


async def refused(request: Request, exc: Exception) -> Response:
    """Refused: an HTML page with the message and the status."""
    assert isinstance(exc, Refused)
    return show(
        request,
        current_session(request),
        "error.html",
        status_code=exc.status,
        message=exc.message,
        back=exc.back,
        code=exc.status,
    )
