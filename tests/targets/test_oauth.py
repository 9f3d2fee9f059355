"""The oauth-revocation target against an RFC 7009 server fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from clampdown.actions.http import TargetHttp
from clampdown.errors import ConfigError, PermanentError, TransientError
from clampdown.secrets import SecretRef
from clampdown.targets.driver import Credential
from clampdown.targets.oauth import RevocationDriver
from clampdown.targets.settings import OAuthRevocationTarget
from clampdown.testing.oauth import FakeRevocationServer

SECRET = "s3cr:t/with&odd=chars"


@pytest.fixture
def server() -> Iterator[FakeRevocationServer]:
    with FakeRevocationServer(
        "clampdown", SECRET, auth="either", supported=("access_token",)
    ).running() as fake:
        fake.issue("at-1", "access_token")
        yield fake


def _driver(
    server: FakeRevocationServer, session: aiohttp.ClientSession, auth: str = "basic"
) -> RevocationDriver:
    settings = OAuthRevocationTarget(
        revocation_url=server.revocation_url,
        client_id="clampdown",
        client_secret=SecretRef(env="IDP_SECRET"),
        client_auth=auth,  # type: ignore[arg-type]
    )
    return RevocationDriver("idp", settings, TargetHttp(session, settings.origins(), "idp"))


@pytest.fixture
async def session(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aiohttp.ClientSession]:
    monkeypatch.setenv("IDP_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("auth", ["basic", "post"])
async def test_revokes_with_either_client_authentication(
    server: FakeRevocationServer, session: aiohttp.ClientSession, auth: str
) -> None:
    driver = _driver(server, session, auth)
    await driver.revoke(Credential(token="at-1", token_type_hint="access_token"))
    assert not server.is_active("at-1")
    assert server.requests[-1].auth == auth
    # Unknown and already revoked tokens answer 200: a retry is harmless.
    await driver.revoke(Credential(token="at-1"))


async def test_unavailable_is_transient_and_the_token_stays_valid(
    server: FakeRevocationServer, session: aiohttp.ClientSession
) -> None:
    server.fail_next(503, retry_after=4)
    with pytest.raises(TransientError, match="still valid") as caught:
        await _driver(server, session).revoke(Credential(token="at-1"))
    assert caught.value.retry_after == 4
    assert server.is_active("at-1")


async def test_refusals_carry_the_servers_error(
    server: FakeRevocationServer, session: aiohttp.ClientSession
) -> None:
    driver = _driver(server, session)
    with pytest.raises(PermanentError, match="unsupported_token_type"):
        await driver.revoke(Credential(token="rt-1", token_type_hint="refresh_token"))
    with pytest.raises(PermanentError, match="needs `token`"):
        await driver.revoke(Credential(consumer="x", key="y"))


async def test_bad_client_secret_fails_without_showing_it(
    server: FakeRevocationServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDP_SECRET", "wrong-secret")
    driver = _driver(server, session)
    with pytest.raises(PermanentError, match="invalid_client") as caught:
        await driver.revoke(Credential(token="at-1"))
    assert "wrong-secret" not in str(caught.value)
    [check] = await driver.check()
    assert not check.ok
    assert "invalid_client" in check.detail


async def test_missing_secret_names_the_setting(
    server: FakeRevocationServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDP_SECRET")
    with pytest.raises(ConfigError, match=r"client_secret.*IDP_SECRET"):
        await _driver(server, session).revoke(Credential(token="at-1"))


async def test_check_revokes_nothing_real(
    server: FakeRevocationServer, session: aiohttp.ClientSession
) -> None:
    [check] = await _driver(server, session).check()
    assert check.ok
    assert server.is_active("at-1")
    assert server.revoked == []
