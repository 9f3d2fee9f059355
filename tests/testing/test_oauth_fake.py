"""FakeRevocationServer over real HTTP: RFC 7009 answers, client authentication, faults."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from aiohttp import ClientSession

from clampdown.testing.oauth import AuthMethod, FakeRevocationServer


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An Authorization header for client_secret_basic (RFC 6749 2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


CLIENT = basic("clampdown", "s3cret")


@pytest.fixture
def server() -> Iterator[FakeRevocationServer]:
    with FakeRevocationServer("clampdown", "s3cret", auth="either").running() as fake:
        fake.issue("at-1", "access_token")
        fake.issue("rt-1", "refresh_token")
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def revoke(
    http: ClientSession, server: FakeRevocationServer, form: dict[str, str], **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    """POST the form to the revocation endpoint; return status, JSON body (or None), headers."""
    async with http.post(server.revocation_url, data=form, **kwargs) as resp:
        text = await resp.text()
        body = await resp.json(content_type=None) if text else None
        return resp.status, body, dict(resp.headers)


async def test_basic_auth_revokes_and_answers_200_empty(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    status, body, _ = await revoke(
        http, server, {"token": "at-1", "token_type_hint": "access_token"}, headers=CLIENT
    )
    assert (status, body) == (200, None)
    assert not server.is_active("at-1")
    assert server.is_active("rt-1")
    assert server.revoked == ["at-1"]


async def test_client_secret_post_revokes(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    form = {"token": "rt-1", "client_id": "clampdown", "client_secret": "s3cret"}
    status, _, _ = await revoke(http, server, form)
    assert status == 200
    assert not server.is_active("rt-1")
    assert server.requests[0].auth == "post"


async def test_unknown_and_already_revoked_tokens_are_200(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    for token in ("never-issued", "at-1", "at-1"):
        status, body, _ = await revoke(http, server, {"token": token}, headers=CLIENT)
        assert (status, body) == (200, None)
    assert server.revoked == ["at-1"]


async def test_wrong_hint_still_finds_the_token(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    """The hint is only a hint: the server searches every type it supports."""
    form = {"token": "at-1", "token_type_hint": "refresh_token"}
    status, _, _ = await revoke(http, server, form, headers=CLIENT)
    assert status == 200
    assert not server.is_active("at-1")


async def test_revoking_a_refresh_token_revokes_its_access_tokens(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    server.issue("at-2", "access_token", refresh="rt-1")
    status, _, _ = await revoke(http, server, {"token": "rt-1"}, headers=CLIENT)
    assert status == 200
    assert not server.is_active("rt-1")
    assert not server.is_active("at-2")
    assert server.is_active("at-1")


@pytest.mark.parametrize(
    "auth",
    [
        basic("clampdown", "wrong"),
        basic("someone-else", "s3cret"),
    ],
)
async def test_bad_basic_credentials_are_401_with_challenge(
    server: FakeRevocationServer, http: ClientSession, auth: dict[str, str]
) -> None:
    status, body, headers = await revoke(http, server, {"token": "at-1"}, headers=auth)
    assert (status, body) == (401, {"error": "invalid_client"})
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert server.is_active("at-1")


async def test_bad_post_credentials_are_401_without_challenge(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    form = {"token": "at-1", "client_id": "clampdown", "client_secret": "wrong"}
    status, body, headers = await revoke(http, server, form)
    assert (status, body) == (401, {"error": "invalid_client"})
    assert "WWW-Authenticate" not in headers
    assert server.is_active("at-1")


async def test_no_client_authentication_is_401(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    status, body, _ = await revoke(http, server, {"token": "at-1"})
    assert (status, body) == (401, {"error": "invalid_client"})


@pytest.mark.parametrize(
    ("mode", "use_basic", "accepted"),
    [
        ("basic", True, True),
        ("basic", False, False),
        ("post", True, False),
        ("post", False, True),
    ],
)
async def test_auth_mode_is_enforced(
    http: ClientSession, mode: AuthMethod, use_basic: bool, accepted: bool
) -> None:
    with FakeRevocationServer("clampdown", "s3cret", auth=mode).running() as fake:
        fake.issue("at-1")
        form = {"token": "at-1"}
        if use_basic:
            status, body, _ = await revoke(http, fake, form, headers=CLIENT)
        else:
            status, body, _ = await revoke(
                http, fake, {**form, "client_id": "clampdown", "client_secret": "s3cret"}
            )
        if accepted:
            assert (status, body) == (200, None)
        else:
            assert (status, body) == (401, {"error": "invalid_client"})
        assert fake.is_active("at-1") is not accepted


async def test_basic_credentials_are_form_urlencoded(http: ClientSession) -> None:
    """RFC 6749 2.3.1: id and secret are form-encoded before Base64."""
    with FakeRevocationServer("app:1", "p@ss word", auth="basic").running() as fake:
        fake.issue("at-1")
        raw = base64.b64encode(b"app%3A1:p%40ss+word").decode()
        status, _, _ = await revoke(
            http, fake, {"token": "at-1"}, headers={"Authorization": f"Basic {raw}"}
        )
        assert status == 200
        assert not fake.is_active("at-1")


async def test_two_authentication_methods_at_once_are_refused(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    form = {"token": "at-1", "client_id": "clampdown", "client_secret": "s3cret"}
    status, body, _ = await revoke(http, server, form, headers=CLIENT)
    assert (status, body) == (400, {"error": "invalid_request"})
    assert server.is_active("at-1")


@pytest.mark.parametrize("form", [{}, {"token": ""}, {"token_type_hint": "access_token"}])
async def test_missing_token_is_invalid_request(
    server: FakeRevocationServer, http: ClientSession, form: dict[str, str]
) -> None:
    status, body, _ = await revoke(http, server, form, headers=CLIENT)
    assert (status, body) == (400, {"error": "invalid_request"})


async def test_json_body_is_invalid_request(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    async with http.post(server.revocation_url, json={"token": "at-1"}, headers=CLIENT) as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": "invalid_request"}
    assert server.is_active("at-1")


async def test_unsupported_token_type(http: ClientSession) -> None:
    """A server that cannot revoke refresh tokens refuses the hint and the token itself."""
    with FakeRevocationServer("c", "s", supported={"access_token"}).running() as fake:
        fake.issue("rt-1", "refresh_token")
        fake.issue("at-1", "access_token")
        auth = basic("c", "s")
        for form in ({"token": "at-1", "token_type_hint": "refresh_token"}, {"token": "rt-1"}):
            status, body, _ = await revoke(http, fake, form, headers=auth)
            assert (status, body) == (400, {"error": "unsupported_token_type"})
        assert fake.is_active("rt-1")
        assert fake.is_active("at-1")
        status, _, _ = await revoke(http, fake, {"token": "at-1"}, headers=auth)
        assert status == 200


async def test_unknown_hint_value_is_unsupported(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    form = {"token": "at-1", "token_type_hint": "id_token"}
    status, body, _ = await revoke(http, server, form, headers=CLIENT)
    assert (status, body) == (400, {"error": "unsupported_token_type"})


async def test_503_with_retry_after_does_not_revoke(
    server: FakeRevocationServer, http: ClientSession
) -> None:
    server.fail_next(status=503, retry_after=3)
    status, body, headers = await revoke(http, server, {"token": "at-1"}, headers=CLIENT)
    assert (status, body) == (503, {"error": "temporarily_unavailable"})
    assert headers["Retry-After"] == "3"
    assert server.is_active("at-1")
    status, _, _ = await revoke(http, server, {"token": "at-1"}, headers=CLIENT)
    assert status == 200
    assert not server.is_active("at-1")


async def test_429_twice_then_success(server: FakeRevocationServer, http: ClientSession) -> None:
    server.fail_next(status=429, times=2)
    statuses = [
        (await revoke(http, server, {"token": "at-1"}, headers=CLIENT))[0] for _ in range(3)
    ]
    assert statuses == [429, 429, 200]
    assert [r.status for r in server.requests] == [429, 429, 200]


async def test_requests_are_recorded_and_path_is_configurable(http: ClientSession) -> None:
    with FakeRevocationServer("c", "s", path="/oauth2/v1/revoke").running() as fake:
        assert fake.revocation_url.endswith("/oauth2/v1/revoke")
        form = {"token": "x", "token_type_hint": "access_token"}
        status, _, _ = await revoke(http, fake, form, headers=basic("c", "s"))
        assert status == 200
        [request] = fake.requests
        assert (request.path, request.form, request.auth, request.status) == (
            "/oauth2/v1/revoke",
            form,
            "basic",
            200,
        )
        assert request.headers["Authorization"].startswith("Basic ")
        async with http.get(fake.revocation_url) as resp:
            assert resp.status == 405
