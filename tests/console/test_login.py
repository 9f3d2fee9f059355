"""Logging in with an API token, and what ends a session: expiry, tampering, the token's
removal or new secret, logging out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.config import Config, Scope
from clampdown.console.auth import SESSION_COOKIE, Sessions
from clampdown.services import Clampdown
from tests.conftest import TOKENS
from tests.console.conftest import csrf_of, login


def session_cookie_header(response: object) -> str:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    [header] = [h for h in headers if h.startswith(f"{SESSION_COOKIE}=")]
    return str(header)


def sessions(client: TestClient) -> Sessions:
    signer: Sessions = client.app.state.console_sessions  # type: ignore[attr-defined]
    return signer


def test_pages_send_a_visitor_without_a_session_to_the_login_form(client: TestClient) -> None:
    response = client.get("/console/remediations?state=failed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/console/login?next=%2Fconsole%2Fremediations%3Fstate%3Dfailed"
    )
    form = client.get(response.headers["location"])
    assert form.status_code == 200
    assert 'id="login-form"' in form.text
    assert 'name="next" value="/console/remediations?state=failed"' in form.text


def test_login_sets_a_signed_http_only_strict_cookie_and_returns_to_next(
    client: TestClient,
) -> None:
    form = client.get("/console/login?next=/console/tasks")
    response = client.post(
        "/console/login",
        data={"token": TOKENS["read"], "csrf": csrf_of(form.text), "next": "/console/tasks"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/tasks"
    cookie = SimpleCookie(session_cookie_header(response))[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/console"
    assert cookie["max-age"] == str(12 * 3600)
    assert not cookie["secure"]  # plain http here
    assert TOKENS["read"] not in cookie.value
    assert client.get("/console/tasks").status_code == 200


def test_the_cookie_is_secure_over_https(console_app: Clampdown) -> None:
    with TestClient(
        create_app(console_app, run_worker=False), base_url="https://testserver"
    ) as client:
        response = login(client)
        assert SimpleCookie(session_cookie_header(response))[SESSION_COOKIE]["secure"]


def test_a_wrong_token_gets_the_form_again_with_401_and_no_session(client: TestClient) -> None:
    for wrong in ("not-a-token", TOKENS["admin"] + "x", ""):
        form = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={"token": wrong, "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert 'id="login-form"' in response.text
        assert "This token was not accepted." in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_an_ingest_only_token_cannot_log_in(client: TestClient) -> None:
    form = client.get("/console/login")
    response = client.post(
        "/console/login", data={"token": TOKENS["ingest"], "csrf": csrf_of(form.text)}
    )
    assert response.status_code == 401
    assert "This token was not accepted." in response.text


def test_an_approve_only_token_sees_what_it_approves(client: TestClient) -> None:
    login(client, "approve")
    assert 'data-can-approve="yes"' in client.get("/console/").text


def test_a_login_post_without_the_login_form_is_refused(client: TestClient) -> None:
    response = client.post(
        "/console/login", data={"token": TOKENS["admin"]}, follow_redirects=False
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    forged = client.post(
        "/console/login",
        data={"token": TOKENS["admin"], "csrf": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403


def test_next_cannot_lead_to_another_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console/\\evil", "/v1/"):
        form = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={"token": TOKENS["read"], "csrf": csrf_of(form.text), "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/console/"
        client.cookies.clear()


def test_an_expired_session_is_refused(client: TestClient, console_app: Clampdown) -> None:
    [token] = [t for t in console_app.config.tokens if t.name == "read"]
    past = datetime.now(UTC) - timedelta(hours=13)
    value, expires = sessions(client).issue(token, now=past)
    assert expires < datetime.now(UTC)
    client.cookies.set(SESSION_COOKIE, value, path="/console")
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login")


def test_a_tampered_cookie_is_refused(client: TestClient) -> None:
    login(client, "read")
    genuine = client.cookies[SESSION_COOKIE]
    body, _, signature = genuine.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["n"] = "admin"  # another token's name under the read session's signature
    as_admin = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    claims["n"], claims["e"] = "read", claims["e"] + 86400  # a longer life
    longer = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for forged in (
        f"{as_admin}.{signature}",
        f"{longer}.{signature}",
        f"{body}.{signature[::-1]}",
        body,
        "x.y",
    ):
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, forged, path="/console")
        assert client.get("/console/", follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, genuine, path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 200


def test_removing_the_token_from_the_config_ends_its_sessions(
    client: TestClient, console_app: Clampdown
) -> None:
    login(client, "admin")
    assert client.get("/console/", follow_redirects=False).status_code == 200
    kept = [t for t in console_app.config.tokens if t.name != "admin"]
    console_app.config = console_app.config.model_copy(update={"tokens": kept})
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login")


def test_a_new_secret_for_the_token_ends_its_sessions(client: TestClient, tmp_path: Path) -> None:
    login(client, "read")
    assert client.get("/console/", follow_redirects=False).status_code == 200
    (tmp_path / "token-read").write_text("a-new-secret")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_scopes_count_as_configured_now_not_at_login(
    client: TestClient, console_app: Clampdown
) -> None:
    login(client, "admin")
    assert 'data-can-approve="yes"' in client.get("/console/").text
    tokens = [
        t.model_copy(update={"scopes": [Scope.READ]}) if t.name == "admin" else t
        for t in console_app.config.tokens
    ]
    console_app.config = console_app.config.model_copy(update={"tokens": tokens})
    assert 'data-can-approve="no"' in client.get("/console/").text


def test_logout_is_a_post_that_ends_the_session(client: TestClient) -> None:
    login(client)
    assert client.get("/console/logout").status_code == 404  # a GET changes nothing
    assert client.get("/console/", follow_redirects=False).status_code == 200
    page = client.get("/console/").text
    assert client.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    response = client.post("/console/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_configured_session_secret_keeps_sessions_across_restarts(
    console_app: Clampdown, tmp_path: Path
) -> None:
    (tmp_path / "console-secret").write_text("a-long-enough-console-secret")
    console = {"session_secret": {"file": str(tmp_path / "console-secret")}, "session_hours": 2}
    console_app.config = Config.model_validate(
        {**console_app.config.model_dump(mode="json"), "console": console}
    )
    with TestClient(create_app(console_app, run_worker=False)) as first:
        response = login(first, "read")
        assert SimpleCookie(session_cookie_header(response))[SESSION_COOKIE]["max-age"] == "7200"
        value = first.cookies[SESSION_COOKIE]
    with TestClient(create_app(console_app, run_worker=False)) as second:
        second.cookies.set(SESSION_COOKIE, value, path="/console")
        assert second.get("/console/", follow_redirects=False).status_code == 200


def test_without_a_session_secret_a_restart_ends_sessions(console_app: Clampdown) -> None:
    with TestClient(create_app(console_app, run_worker=False)) as first:
        login(first, "read")
        value = first.cookies[SESSION_COOKIE]
    with TestClient(create_app(console_app, run_worker=False)) as second:
        second.cookies.set(SESSION_COOKIE, value, path="/console")
        assert second.get("/console/", follow_redirects=False).status_code == 303
