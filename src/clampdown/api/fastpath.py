"""The decision checks without FastAPI's per-request machinery.

A gateway asks `/v1/decisions/check` or `/v1/decisions/auth` once for every request it
forwards, so these two routes carry most of the API's traffic. They take strings only and
answer from memory: FastAPI's routing, dependency solving, validation and response classes
cost several times the decision itself. This module answers the common case straight from
ASGI: a GET with a bearer token that has the `read` scope, while the decision cache is fresh.

Everything else goes to the FastAPI app unchanged: a missing, unknown or under-scoped token,
another method, a cache that must first be refreshed, and any error. Both routes stay declared
in FastAPI (see decisions.py), which documents them in OpenAPI and answers those cases, so
status codes, error bodies and headers are the FastAPI route's by construction. What the fast
path answers itself is built to be byte for byte what the route would answer; the tests in
tests/decisions/test_fastpath.py compare the two.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import orjson
from starlette.types import Message, Send
from starlette.types import Scope as ASGIScope

from clampdown.api.decisions import verdict_body
from clampdown.config import Scope
from clampdown.engine.decisions import Request, Verdict
from clampdown.metrics.decisions import DecisionTally
from clampdown.model import Decision
from clampdown.services import Clampdown

CHECK = "/v1/decisions/check"
AUTH = "/v1/decisions/auth"

_CHECK_PARAMS = frozenset(
    ("ip", "api_key", "method", "path", "api", "subscription", "client_id", "user")
)
# The header names FastAPI derives from the auth route's parameters (x_real_ip -> x-real-ip).
_AUTH_HEADERS = {
    b"x-real-ip": "ip",
    b"x-original-method": "method",
    b"x-original-uri": "path",
    b"x-api-key": "api_key",
    b"x-api-id": "api",
    b"x-subscription-id": "subscription",
    b"x-client-id": "client_id",
    b"x-user": "user",
}
_MAX_READERS = 64

_JSON = b"application/json"
_ALLOW_BODY = orjson.dumps(verdict_body(Verdict(Decision.ALLOW)))
_ALLOW_HEADERS = ((b"content-length", str(len(_ALLOW_BODY)).encode()), (b"content-type", _JSON))


class DecisionFastPath:
    """Answers decision checks that need nothing but a read token and the in-memory list."""

    def __init__(self, clampdown: Clampdown, tally: DecisionTally) -> None:
        self._clampdown = clampdown
        self._count = tally.count
        # Authorization header values already seen to carry a token with the read scope:
        # the token digest is computed once per spelling, not per request. Only accepted
        # values are kept, so the set cannot be grown by presenting wrong tokens.
        self._readers: set[bytes] = set()

    async def answer(self, scope: ASGIScope, send: Send) -> bool:
        """Answer an HTTP request if it is one for the fast path; False: hand it on."""
        path = scope["path"]
        if (path != CHECK and path != AUTH) or scope["method"] != "GET" or scope.get("root_path"):
            return False
        fields: dict[str, str] = {}
        authorization = None
        if path == CHECK:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                    break
        else:
            # The first of repeated headers counts, as in Starlette's `headers.get`.
            for name, value in scope["headers"]:
                if name == b"authorization":
                    if authorization is None:
                        authorization = value
                else:
                    field = _AUTH_HEADERS.get(name)
                    if field is not None and field not in fields:
                        fields[field] = value.decode("latin-1")
        if authorization is None or not self._is_reader(authorization):
            return False
        try:
            if path == CHECK:
                fields = _query(scope["query_string"])
            verdict = self._clampdown.decide_now(Request(**fields))
            if verdict is None:
                return False  # the route refreshes the list first
            messages = _check(verdict) if path == CHECK else _auth(verdict)
        except Exception:
            # Let the route answer the failure in the API's error shape (and log it).
            return False
        self._count(fields.get("api", ""), verdict.decision)
        await send(messages[0])
        await send(messages[1])
        return True

    def _is_reader(self, authorization: bytes) -> bool:
        if authorization in self._readers:
            return True
        # As deps.require(Scope.READ) reads the header.
        kind, _, presented = authorization.decode("latin-1").partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            return False
        token = self._clampdown.authenticate(presented.strip())
        if token is None or not token.allows(Scope.READ):
            return False
        if len(self._readers) < _MAX_READERS:
            self._readers.add(authorization)
        return True


def _query(raw: bytes) -> dict[str, str]:
    """The check's parameters, as Starlette's QueryParams reads them (the last one counts)."""
    fields: dict[str, str] = {}
    if not raw:
        return fields
    # urllib.parse.parse_qsl(..., keep_blank_values=True) over the latin-1 decoded string,
    # without building pairs for parameters the check does not take.
    for piece in raw.decode("latin-1").split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in _CHECK_PARAMS:
            fields[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return fields


def _check(verdict: Verdict) -> tuple[Message, Message]:
    if verdict.containment is None and verdict.decision is Decision.ALLOW:
        body, headers = _ALLOW_BODY, _ALLOW_HEADERS
    else:
        body = orjson.dumps(verdict_body(verdict))
        headers = ((b"content-length", str(len(body)).encode()), (b"content-type", _JSON))
    return (
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


def _auth(verdict: Verdict) -> tuple[Message, Message]:
    if verdict.decision is Decision.ALLOW:
        return (
            {"type": "http.response.start", "status": 204, "headers": ()},
            {"type": "http.response.body", "body": b""},
        )
    # The headers of the route's Response(403, headers=...), in the same order.
    headers = [(b"x-clampdown-decision", verdict.decision.value.encode("latin-1"))]
    if verdict.containment is not None:
        headers.append((b"x-clampdown-containment", verdict.containment.id.encode("latin-1")))
    if verdict.retry_after is not None:
        headers.append((b"retry-after", str(verdict.retry_after).encode("latin-1")))
    headers.append((b"content-length", b"0"))
    return (
        {"type": "http.response.start", "status": 403, "headers": headers},
        {"type": "http.response.body", "body": b""},
    )
