"""The teams target against the Teams fake: legacy incoming webhook and Workflows trigger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.errors import ConfigError, PermanentError, TransientError
from clampdown.messages import teams
from clampdown.messages.model import Message, compose
from clampdown.secrets import SecretRef
from clampdown.targets.settings import TeamsTarget
from clampdown.targets.teams import TeamsDriver
from clampdown.testing.teams import BAD_PAYLOAD, FakeTeams, delivery_failed

MESSAGE = compose(
    "Blocked 192.0.2.45",
    "The client is blocked for an hour.",
    Briefing(
        remediation_id="r1", playbook="contain", state="running", finding={"ip": "192.0.2.45"}
    ),
)


@pytest.fixture
def fake() -> Iterator[FakeTeams]:
    with FakeTeams().running() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _driver(
    url: str, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> TeamsDriver:
    monkeypatch.setenv("TEAMS_URL", url)
    settings = TeamsTarget(url=SecretRef(env="TEAMS_URL"))
    return TeamsDriver("ops", settings, TargetHttp(session, settings.origins(), "ops"))


async def _send(driver: TeamsDriver, message: Message = MESSAGE) -> dict[str, object]:
    return await driver.send(message, key="r1-0")


async def test_legacy_webhook_posts_the_card(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await _send(_driver(fake.legacy_url, session, monkeypatch))
    assert sent == {"status": 200}
    assert fake.cards == [teams.card(MESSAGE)]
    [post] = fake.posts
    assert (post.kind, post.status, post.text) == ("legacy", 200, "1")


async def test_workflow_trigger_accepts_the_card(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await _send(_driver(fake.workflow_url, session, monkeypatch))
    assert sent == {"status": 202}
    assert fake.cards == [teams.card(MESSAGE)]
    assert fake.posts[0].kind == "workflow"


@pytest.mark.parametrize("throttle_status", [200, 429])
async def test_over_four_a_second_is_throttled_in_the_body_and_transient(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, throttle_status: int
) -> None:
    with FakeTeams(throttle_status=throttle_status).running() as fake:
        driver = _driver(fake.legacy_url, session, monkeypatch)
        for _ in range(4):
            await _send(driver)
        with pytest.raises(TransientError, match="HTTP error 429") as caught:
            await _send(driver)
        [throttled] = fake.throttled()
        assert throttled.status == throttle_status
        assert len(fake.cards) == 4
    assert caught.value.retry_after == 1.0
    assert not caught.value.maybe_delivered
    assert fake.legacy_url not in str(caught.value)
    assert fake.signature[:16] not in str(caught.value)


async def test_throttling_on_the_workflow_trigger_honours_retry_after(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail_next(429, '{"error": {"code": "Throttled", "message": "slow down"}}', retry_after=7)
    with pytest.raises(TransientError, match="Throttled: slow down") as caught:
        await _send(_driver(fake.workflow_url, session, monkeypatch))
    assert caught.value.retry_after == 7
    assert fake.cards == []


@pytest.mark.parametrize(
    ("status", "text", "maybe_delivered"),
    [
        (200, delivery_failed(503), False),
        (200, delivery_failed(502), True),
        (500, "Internal Server Error", True),
        (503, "Service Unavailable", False),
    ],
)
async def test_server_errors_are_transient(
    fake: FakeTeams,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    text: str,
    maybe_delivered: bool,
) -> None:
    fake.fail_next(status, text)
    with pytest.raises(TransientError) as caught:
        await _send(_driver(fake.legacy_url, session, monkeypatch))
    assert caught.value.maybe_delivered is maybe_delivered


@pytest.mark.parametrize(
    ("status", "text", "shown"),
    [
        (400, BAD_PAYLOAD, "(400): Bad payload received by generic incoming webhook."),
        (200, delivery_failed(413), "(413): Webhook message delivery failed"),
    ],
)
async def test_refusals_are_permanent_with_teams_text(
    fake: FakeTeams,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    text: str,
    shown: str,
) -> None:
    fake.fail_next(status, text)
    with pytest.raises(PermanentError) as caught:
        await _send(_driver(fake.legacy_url, session, monkeypatch))
    assert shown in str(caught.value)
    assert str(caught.value).startswith("target ops: Teams refused the message")


async def test_a_wrong_workflow_signature_fails_without_showing_the_url(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fake.workflow_url.replace(fake.signature, "forged-signature")
    with pytest.raises(PermanentError, match="DirectApiInvalidAuthorizationSignature") as caught:
        await _send(_driver(url, session, monkeypatch))
    assert "forged-signature" not in str(caught.value)
    assert fake.cards == []


async def test_an_oversized_card_is_refused_by_the_legacy_webhook(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    facts = tuple((f"Fact {n}", "x" * 450) for n in range(80))
    big = Message("big", "text", "high", facts, (), (), "r1", "p", "running")
    with pytest.raises(PermanentError, match=r"\(413\)"):
        await _send(_driver(fake.legacy_url, session, monkeypatch), big)


async def test_check_sends_nothing(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    [check] = await _driver(fake.legacy_url, session, monkeypatch).check()
    assert check.ok
    assert "not contacted" in check.detail
    assert fake.posts == []


async def test_a_missing_url_names_the_setting(
    fake: FakeTeams, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _driver(fake.legacy_url, session, monkeypatch)
    monkeypatch.delenv("TEAMS_URL")
    with pytest.raises(ConfigError, match=r"target ops url.*TEAMS_URL"):
        await _send(driver)


# -- the fake itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"text": "a MessageCard is not a card message"},
        {"type": "message", "attachments": []},
        {"type": "message", "attachments": [{"contentType": "text/plain", "content": {}}]},
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": teams.CARD_TYPE,
                    "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"x": 1}]},
                }
            ],
        },
    ],
)
async def test_the_fake_refuses_what_is_no_adaptive_card_message(
    fake: FakeTeams, session: aiohttp.ClientSession, body: dict[str, object]
) -> None:
    async with session.post(fake.legacy_url, json=body) as resp:
        assert (resp.status, await resp.text()) == (400, BAD_PAYLOAD)
    async with session.post(fake.workflow_url, json=body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["code"] == "TriggerInputSchemaMismatch"
    assert fake.cards == []


async def test_the_fake_counts_requests_in_one_second_windows(
    session: aiohttp.ClientSession,
) -> None:
    now = [100.0]
    with FakeTeams(per_second=2, clock=lambda: now[0]).running() as fake:
        envelope = teams.render(MESSAGE)
        answers = []
        for at in (100.0, 100.5, 100.9, 101.0, 101.2):
            now[0] = at
            async with session.post(fake.workflow_url, json=envelope) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After")))
    assert answers == [(202, None), (202, None), (429, "1"), (202, None), (202, None)]
    assert len(fake.cards) == 4
