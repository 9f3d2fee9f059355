"""The decision fast path (api/fastpath.py) answers exactly as the FastAPI routes do.

Each request goes, as raw ASGI, to two apps over the same Clampdown: the default one, where the
fast path answers, and one built without it, where FastAPI does. Status, headers (in order)
and body must be equal byte for byte. None of the route's parameters can fail validation (all
are optional strings), so no odd query string or header gets a 422 from either.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clampdown import services
from clampdown.api import app as app_module
from clampdown.api.app import ClampdownAPI, create_app
from clampdown.engine import decisions as decision_module
from clampdown.engine.decisions import DecisionCache, Request
from clampdown.model import Decision
from clampdown.services import Clampdown
from tests.decisions.conftest import contain, row

CHECK = "/v1/decisions/check"
AUTH = "/v1/decisions/auth"
READ = (b"authorization", b"Bearer t-read")
NOW = time.time()  # a fixed clock: throttle windows and Retry-After do not move


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def _call(
    app: Any, path: str, query: bytes, headers: Sequence[tuple[bytes, bytes]], method: str
) -> Answer:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": list(headers),
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette re-raises an unexpected error once its 500 answer is sent.
        if not messages:
            raise
    start = messages[0]
    return Answer(
        start["status"],
        [(bytes(k), bytes(v)) for k, v in start.get("headers", [])],
        b"".join(m.get("body", b"") for m in messages[1:]),
    )


@dataclass
class Pair:
    """The app with the fast path, the app without; what the route decided, what the fast
    path answered."""

    fast: ClampdownAPI
    slow: FastAPI
    app: Clampdown
    routed: list[Request]
    answered: list[bool]

    def ask(
        self,
        path: str,
        query: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (READ,),
        *,
        method: str = "GET",
        fast_answers: bool | None = None,
    ) -> Answer:
        fast = asyncio.run(_call(self.fast, path, query, headers, method))
        if fast_answers is not None:
            assert self.answered[-1] is fast_answers
        slow = asyncio.run(_call(self.slow, path, query, headers, method))
        assert fast == slow
        return fast


@pytest.fixture
def pair(app: Clampdown, monkeypatch: pytest.MonkeyPatch) -> Pair:
    """Both apps, with the decision list kept fresh (the fast path answers) and a fixed clock."""
    monkeypatch.setattr(services, "DECISION_STALENESS", 3600.0)
    monkeypatch.setattr(decision_module, "time", types.SimpleNamespace(time=lambda: NOW))
    routed: list[Request] = []
    decide_async = app.decide_async

    async def spy(request: Request) -> Any:
        routed.append(request)
        return await decide_async(request)

    monkeypatch.setattr(app, "decide_async", spy)
    app.decide(Request())  # the first read of the list
    fast = create_app(app, run_worker=False)
    assert isinstance(fast, ClampdownAPI)
    assert fast.fast_path is not None
    answered: list[bool] = []
    answer = fast.fast_path.answer

    async def answer_spy(scope: Any, send: Any) -> bool:
        answered.append(await answer(scope, send))
        return answered[-1]

    monkeypatch.setattr(fast.fast_path, "answer", answer_spy)
    slow = create_app(app, run_worker=False, fast_decisions=False)
    return Pair(fast, slow, app, routed, answered)


@pytest.fixture
def contained(pair: Pair) -> Pair:
    """A list with every kind of subject, scope and decision."""
    app = pair.app
    contain(app, "203.0.113.7", reason="seen scanning")
    contain(app, "2001:db8::1", scope="POST /login")
    contain(app, "198.51.100.0/24", subject_type="cidr", scope="/orders/*")
    contain(app, "k-blocked", subject_type="api_key", scope="orders-api")
    contain(app, "sub-1", subject_type="subscription")
    contain(app, "eve adams", subject_type="user")
    contain(app, "mallory", subject_type="user", scope="GET /admin*", reason="Ünïcode reason")
    contain(app, "client-1", subject_type="client_id", kind="throttle", rate=10**9)
    contain(app, "192.0.2.50", kind="throttle", rate=10**9, period_seconds=60)
    contain(app, "k-throttled", subject_type="api_key", kind="throttle", rate=1, period_seconds=7)
    endpoint = "DELETE /orders/*"
    contain(app, endpoint, subject_type="endpoint", kind="disable", scope=endpoint)
    # The key's one request in this window is used up: from now on it is throttled.
    app.decide(Request(api_key="k-throttled"))
    return pair


VALUES = {
    "ip": [
        "203.0.113.7",
        "203.0.113.8",
        "2001:DB8::1",
        "::ffff:203.0.113.7",
        " 203.0.113.7",
        "198.51.100.9",
        "192.0.2.50",
        "not an ip",
        "",
    ],
    "method": ["GET", "POST", "DELETE", "get", "delete", ""],
    "path": [
        "/orders/1",
        "/orders",
        "/login",
        "/admin/users",
        "/orders/../admin",
        "/%6frders/1",
        "//orders//1/",
        "/orders/1?x=1#y",
        "",
    ],
    "api": ["orders-api", "ORDERS-API/operations/get", "other-api", ""],
    "api_key": ["k-blocked", "k-throttled", "k-other", ""],
    "subscription": ["sub-1", "sub-2", ""],
    "client_id": ["client-1", "client-2", ""],
    "user": ["mallory", "eve adams", "alice", ""],
}
HEADERS = {
    "ip": b"x-real-ip",
    "method": b"x-original-method",
    "path": b"x-original-uri",
    "api_key": b"x-api-key",
    "api": b"x-api-id",
    "subscription": b"x-subscription-id",
    "client_id": b"x-client-id",
    "user": b"x-user",
}
odd_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=12)
fields = st.sampled_from(sorted(VALUES))
# A parameter and a value for it: mostly one that the list above makes a decision on.
params = fields.flatmap(
    lambda f: st.tuples(st.just(f), st.one_of(st.sampled_from(VALUES[f]), odd_text))
)


def _every_byte(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


def _encode(text: str, how: str) -> str:
    if how == "plus":
        return quote_plus(text)
    if how == "percent":
        return quote(text, safe="")
    if how == "every":
        return _every_byte(text)
    return text  # raw, as a careless client sends it


encodings = st.sampled_from(["plus", "percent", "every", "raw"])
pieces = st.one_of(
    st.tuples(params, encodings, encodings).map(
        lambda t: f"{_encode(t[0][0], t[1])}={_encode(t[0][1], t[2])}"
    ),
    st.sampled_from(["", "=", "ip", "ip=", "unknown=1", "ip=%ZZ", "ip=%C3", "%69p=203.0.113.7"]),
    odd_text,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(pieces, max_size=8).map("&".join))
@example(query="ip=+203.0.113.7")  # '+' is a space, and the address is read stripped
@example(query="user=eve+adams")
@example(query="user=eve%20adams&user=alice")  # the last one counts
@example(query="user=alice&user=eve%20adams")
@example(query="%69p=203.0.113.7&method=get&path=/%6frders/1")
def test_check_answers_any_query_as_the_route(contained: Pair, query: str) -> None:
    answer = contained.ask(CHECK, query.encode("latin-1"), fast_answers=True)
    assert answer.status == 200


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.lists(
        params.map(lambda p: (HEADERS[p[0]], p[1].encode("latin-1"))),
        max_size=8,
    ),
    token_first=st.booleans(),
)
@example(headers=[(b"x-user", b"eve adams"), (b"x-user", b"alice")], token_first=True)
@example(headers=[(b"x-user", b"alice"), (b"x-user", b"eve adams")], token_first=False)
def test_auth_answers_any_headers_as_the_route(
    contained: Pair, headers: list[tuple[bytes, bytes]], token_first: bool
) -> None:
    ordered = [READ, *headers] if token_first else [*headers, READ]
    answer = contained.ask(AUTH, headers=ordered, fast_answers=True)
    assert answer.status in (204, 403)


def test_every_decision_is_answered_as_the_route(contained: Pair) -> None:
    seen: set[tuple[str, int]] = set()
    for ip, key in [
        ("203.0.113.7", ""),  # deny
        ("203.0.113.8", ""),  # allow
        ("192.0.2.50", ""),  # allow, with the throttle's id
        ("203.0.113.8", "k-throttled"),  # throttle, with Retry-After
    ]:
        query = f"ip={ip}&api_key={key}".encode()
        body = contained.ask(CHECK, query, fast_answers=True).body
        headers = [READ, (b"x-real-ip", ip.encode()), (b"x-api-key", key.encode())]
        status = contained.ask(AUTH, headers=headers, fast_answers=True).status
        seen.add((body.decode().split('"')[3], status))
    assert seen == {("deny", 403), ("allow", 204), ("throttle", 403)}


def test_the_throttle_answer_carries_retry_after(contained: Pair) -> None:
    headers = [READ, (b"x-api-key", b"k-throttled")]
    answer = contained.ask(AUTH, headers=headers, fast_answers=True)
    window_end = (NOW // 7 + 1) * 7
    assert (b"retry-after", str(int(window_end - NOW) + 1).encode()) in answer.headers


TOKENS = [
    [(b"authorization", b"bearer t-read")],
    [(b"authorization", b"BEARER   t-read  ")],
    [(b"authorization", b"Bearer t-admin")],
    [(b"authorization", b"Bearer t-read"), (b"authorization", b"Bearer nope")],
]
REFUSED = [
    ([], 401),
    ([(b"authorization", b"")], 401),
    ([(b"authorization", b"Bearer")], 401),
    ([(b"authorization", b"Bearer    ")], 401),
    ([(b"authorization", b"Basic dC1yZWFk")], 401),
    ([(b"authorization", b"Bearer nope")], 401),
    ([(b"authorization", b"Bearer nope"), (b"authorization", b"Bearer t-read")], 401),
    ([(b"authorization", b"Bearer t-ingest")], 403),
    ([(b"authorization", b"Bearer t-approve")], 403),
]


@pytest.mark.parametrize("path", [CHECK, AUTH])
@pytest.mark.parametrize("headers", TOKENS)
def test_a_read_token_in_any_spelling_is_accepted(
    contained: Pair, path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    answer = contained.ask(path, b"ip=203.0.113.7", [*headers, (b"x-real-ip", b"203.0.113.7")])
    assert answer.status in (200, 403)


@pytest.mark.parametrize("path", [CHECK, AUTH])
@pytest.mark.parametrize(("headers", "status"), REFUSED)
def test_refused_tokens_get_the_routes_errors(
    contained: Pair, path: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    answer = contained.ask(path, b"ip=203.0.113.7", headers)
    assert answer.status == status
    assert answer.body.startswith(b'{"error":{"code":"')


def test_wrong_tokens_are_not_remembered(contained: Pair) -> None:
    fast_path = contained.fast.fast_path
    assert fast_path is not None
    for n in range(200):
        contained.ask(CHECK, headers=[(b"authorization", f"Bearer wrong-{n}".encode())])
    assert len(fast_path._readers) <= 1


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "OPTIONS"])
@pytest.mark.parametrize("path", [CHECK, AUTH])
def test_other_methods_are_left_to_fastapi(contained: Pair, method: str, path: str) -> None:
    answer = contained.ask(path, b"ip=203.0.113.7", method=method, fast_answers=False)
    assert answer.status == 405


@pytest.mark.parametrize("path", [CHECK + "/", AUTH + "/", "/v1/decisions/checks", "/v1/x"])
def test_other_paths_are_left_to_fastapi(contained: Pair, path: str) -> None:
    assert contained.ask(path, b"ip=203.0.113.7", fast_answers=False).status in (307, 404)


def test_a_stale_list_is_refreshed_by_the_route(
    contained: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process blocked an IP: the route reads the change stream, then decides."""
    from datetime import UTC, datetime, timedelta

    from clampdown.store import containments

    now = datetime.now(UTC)
    with contained.app.db.write() as conn:
        containments.add(
            conn,
            {
                "key": "other-process",
                "kind": "block",
                "subject_type": "ip",
                "subject": "203.0.113.99",
                "scope": "*",
                "rate": None,
                "period_seconds": None,
                "reason": "blocked elsewhere",
                "remediation_id": None,
                "created_by": "test",
                "expires_at": now + timedelta(hours=1),
            },
            now=now,
        )
    # Still fresh: answered from memory, where the block is not yet.
    fresh = contained.ask(CHECK, b"ip=203.0.113.99", fast_answers=True)
    assert b'"allow"' in fresh.body
    monkeypatch.setattr(services, "DECISION_STALENESS", 0.0)
    routed = len(contained.routed)
    answer = asyncio.run(_call(contained.fast, CHECK, b"ip=203.0.113.99", [READ], "GET"))
    assert b'"deny"' in answer.body
    assert len(contained.routed) == routed + 1


def test_an_unexpected_error_is_answered_by_the_route(
    contained: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: Request, *, now: float | None = None) -> Any:
        raise RuntimeError("broken")

    logged: list[str] = []
    log = types.SimpleNamespace(exception=lambda event, **_: logged.append(event))
    monkeypatch.setattr(app_module, "log", log)  # and not render four tracebacks
    monkeypatch.setattr(contained.app.decisions, "check", broken)
    for path in (CHECK, AUTH):
        answer = contained.ask(path, b"ip=203.0.113.7", fast_answers=False)
        assert answer.status == 500
        assert (
            answer.body
            == b'{"error":{"code":"internal","message":"internal error; see the server log"}}'
        )


def test_the_openapi_document_still_describes_both_routes(pair: Pair) -> None:
    answer = asyncio.run(_call(pair.fast, "/openapi.json", b"", [], "GET"))
    assert b'"/v1/decisions/check"' in answer.body
    assert b'"/v1/decisions/auth"' in answer.body


async def test_concurrent_checks_on_a_stale_list_read_it_once(
    app: Clampdown, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    refresh = services.refresh_decisions

    def counted(db: Any, cache: DecisionCache) -> int:
        reads.append(1)
        return refresh(db, cache)

    monkeypatch.setattr(services, "refresh_decisions", counted)
    contain(app, "203.0.113.7")
    verdicts = await asyncio.gather(
        *(app.decide_async(Request(ip="203.0.113.7")) for _ in range(20))
    )
    assert {v.decision for v in verdicts} == {Decision.DENY}
    assert len(reads) == 1


@pytest.fixture
def cache() -> DecisionCache:
    cache = DecisionCache()
    cache.apply([("add", row("203.0.113.7")), ("add", row("2001:db8::1"))], 1)
    return cache


@pytest.mark.parametrize(
    "ip",
    [
        "203.0.113.7",
        " 203.0.113.7 ",
        " " * 70 + "203.0.113.7",  # too long to be remembered, still read
        "2001:DB8:0:0:0:0:0:1",
        "::ffff:203.0.113.7",
    ],
)
def test_every_spelling_of_a_blocked_address_is_denied(cache: DecisionCache, ip: str) -> None:
    for _ in range(2):  # the first time read, the second remembered
        assert cache.check(Request(ip=ip)).decision is Decision.DENY


@pytest.mark.parametrize("ip", ["203.0.113.70", "x" * 200, "", "203.0.113.007"])
def test_other_texts_are_allowed(cache: DecisionCache, ip: str) -> None:
    for _ in range(2):
        assert cache.check(Request(ip=ip)).decision is Decision.ALLOW
