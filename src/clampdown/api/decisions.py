"""The decision API: per-request checks for gateways, and the containment change stream.

Most /check and /auth requests are answered before they reach these routes, by the fast path
in fastpath.py; the routes define and document the API, and answer every other case (errors,
a decision list that must be refreshed first).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from starlette.concurrency import run_in_threadpool

from clampdown.api.deps import App, Reader
from clampdown.api.metrics import Tally
from clampdown.api.responses import Json
from clampdown.engine.decisions import Request, Verdict
from clampdown.model import Decision

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


def verdict_body(verdict: Verdict) -> dict[str, object]:
    """The JSON answer of /check (also encoded by the fast path, fastpath.py)."""
    entry = verdict.containment
    return {
        "decision": verdict.decision.value,
        "containment_id": entry.id if entry else None,
        "reason": entry.reason if entry else "",
        "retry_after": verdict.retry_after,
    }


@router.get("/check")
async def check(
    _t: Reader,
    app: App,
    tally: Tally,
    ip: str = "",
    api_key: str = "",
    method: str = "",
    path: str = "",
    api: str = "",
    subscription: str = "",
    client_id: str = "",
    user: str = "",
) -> Json:
    """Allow, deny or throttle one request (an API key is compared, never logged)."""
    request = Request(ip, api_key, method, path, api, subscription, client_id, user)
    verdict = await app.decide_async(request)
    tally.count(api, verdict.decision)
    return Json(verdict_body(verdict))


@router.get(
    "/auth",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: {"description": "denied or throttled; see X-Clampdown-Decision"}},
)
async def auth(
    _t: Reader,
    app: App,
    tally: Tally,
    x_real_ip: Annotated[str, Header()] = "",
    x_original_method: Annotated[str, Header()] = "",
    x_original_uri: Annotated[str, Header()] = "",
    x_api_key: Annotated[str, Header()] = "",
    x_api_id: Annotated[str, Header()] = "",
    x_subscription_id: Annotated[str, Header()] = "",
    x_client_id: Annotated[str, Header()] = "",
    x_user: Annotated[str, Header()] = "",
) -> Response:
    """For nginx `auth_request`: 204 allows; 403 refuses, with the reason in headers.

    nginx only passes 2xx, 401 and 403 from an auth subrequest, so a throttle answers 403
    with `X-Clampdown-Decision: throttle` and `Retry-After`; map it to 429 in nginx.
    """
    request = Request(
        ip=x_real_ip,
        api_key=x_api_key,
        method=x_original_method,
        path=x_original_uri,
        api=x_api_id,
        subscription=x_subscription_id,
        client_id=x_client_id,
        user=x_user,
    )
    verdict = await app.decide_async(request)
    tally.count(x_api_id, verdict.decision)
    if verdict.decision is Decision.ALLOW:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    headers = {"X-Clampdown-Decision": verdict.decision.value}
    if verdict.containment is not None:
        headers["X-Clampdown-Containment"] = verdict.containment.id
    if verdict.retry_after is not None:
        headers["Retry-After"] = str(verdict.retry_after)
    return Response(status_code=status.HTTP_403_FORBIDDEN, headers=headers)


@router.get("/stream")
async def stream(
    _t: Reader,
    app: App,
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Json:
    """Changes after `cursor`. Start with 0: a snapshot of the active list and the cursor to
    follow; then poll with the cursor returned each time."""
    return Json(await run_in_threadpool(app.stream, cursor, limit=limit))
