"""Signed links from messages: a confirmation page, and the POST that acts.

The link itself is the credential (signed, expiring, one verb on one remediation), so these
routes take no bearer token. Opening a link only shows the page: mail scanners fetch links,
and a GET must never approve anything.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import App
from clampdown.errors import ClampdownError, ConflictError, NotFoundError

router = APIRouter(prefix="/v1/links", tags=["links"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clampdown</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"></head>
<body><main><h1>{heading}</h1>{body}</main></body></html>
"""


def _page(heading: str, body: str, status: int = 200) -> HTMLResponse:
    headers = {
        "Content-Security-Policy": "default-src 'none'; form-action 'self'",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(
        _PAGE.format(heading=escape(heading), body=body), status_code=status, headers=headers
    )


def _refused(exc: ClampdownError) -> HTMLResponse:
    status = 400
    if isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, ConflictError):
        status = 409
    return _page("This link cannot be used", f"<p>{escape(str(exc))}</p>", status)


@router.get("/{token}", response_class=HTMLResponse)
async def confirm(token: str, app: App) -> HTMLResponse:
    """Show what the link would do, with a button that does it."""
    try:
        request, rem = await run_in_threadpool(app.read_link, token)
    except ClampdownError as exc:
        return _refused(exc)
    verb = request.verb
    body = (
        f"<p>{escape(verb.capitalize())} remediation <code>{escape(rem['id'])}</code> "
        f"of playbook <b>{escape(rem['playbook'])}</b>, now {escape(rem['state'])}?</p>"
        f'<form method="post"><button type="submit">{escape(verb.capitalize())}</button></form>'
    )
    return _page(f"{verb.capitalize()} a remediation", body)


@router.post("/{token}", response_class=HTMLResponse)
async def act(token: str, app: App) -> HTMLResponse:
    """Approve or reject, as the link says."""
    try:
        rem = await run_in_threadpool(app.follow_link, token)
    except ClampdownError as exc:
        return _refused(exc)
    return _page(
        "Done",
        f"<p>Remediation <code>{escape(rem['id'])}</code> is now {escape(rem['state'])}.</p>",
    )
