"""The slack target against the Slack incoming-webhook fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.errors import PermanentError, TransientError
from clampdown.messages import slack
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.targets.settings import SlackTarget
from clampdown.targets.slack import SlackDriver
from clampdown.testing.slack import FakeSlack, HookState

MESSAGE = compose(
    "Blocked 192.0.2.45",
    "The client is blocked for an hour.",
    Briefing(
        remediation_id="r1", playbook="contain", state="running", finding={"ip": "192.0.2.45"}
    ),
)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack().running() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _driver(
    fake: FakeSlack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> SlackDriver:
    monkeypatch.setenv("SLACK_URL", fake.webhook_url)
    settings = SlackTarget(url=SecretRef(env="SLACK_URL"))
    return SlackDriver("chat", settings, TargetHttp(session, settings.origins(), "chat"))


async def test_posts_the_blocks(
    fake: FakeSlack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = await _driver(fake, session, monkeypatch).send(MESSAGE, key="r1-0")
    assert sent == {"status": 200}
    assert fake.messages == [slack.render(MESSAGE)]
    assert (fake.requests[0].status, fake.requests[0].text) == (200, "ok")


async def test_over_one_a_second_is_throttled_with_retry_after(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSlack(throttle=True).running() as fake:
        driver = _driver(fake, session, monkeypatch)
        await driver.send(MESSAGE, key="r1-0")
        with pytest.raises(TransientError, match="429 rate_limited") as caught:
            await driver.send(MESSAGE, key="r1-1")
        assert len(fake.throttled()) == 1
        assert len(fake.messages) == 1
    assert caught.value.retry_after == 1
    assert not caught.value.maybe_delivered
    assert fake.token not in str(caught.value)


async def test_retry_after_is_taken_from_slack(
    fake: FakeSlack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail_next(429, retry_after=30)
    with pytest.raises(TransientError) as caught:
        await _driver(fake, session, monkeypatch).send(MESSAGE, key="r1-0")
    assert caught.value.retry_after == 30


@pytest.mark.parametrize(("status", "maybe_delivered"), [(500, True), (503, False)])
async def test_server_errors_are_transient(
    fake: FakeSlack,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    maybe_delivered: bool,
) -> None:
    fake.fail_next(status)
    with pytest.raises(TransientError, match=f"Slack answered {status}") as caught:
        await _driver(fake, session, monkeypatch).send(MESSAGE, key="r1-0")
    assert caught.value.maybe_delivered is maybe_delivered


@pytest.mark.parametrize(
    ("state", "answer"),
    [
        ("revoked", "403 invalid_token"),
        ("prohibited", "403 action_prohibited"),
        ("removed", "404 no_service"),
        ("channel_not_found", "404 channel_not_found"),
        ("archived", "410 channel_is_archived"),
    ],
)
async def test_refusals_are_permanent_with_slacks_code(
    fake: FakeSlack,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    state: HookState,
    answer: str,
) -> None:
    fake.set_state(state)
    with pytest.raises(PermanentError) as caught:
        await _driver(fake, session, monkeypatch).send(MESSAGE, key="r1-0")
    assert str(caught.value) == f"target chat: Slack answered {answer}"
    assert fake.messages == []


async def test_invalid_payload_is_permanent(
    fake: FakeSlack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail_next(400, "invalid_payload")
    with pytest.raises(PermanentError, match="400 invalid_payload"):
        await _driver(fake, session, monkeypatch).send(MESSAGE, key="r1-0")


async def test_check_sends_nothing(
    fake: FakeSlack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    [check] = await _driver(fake, session, monkeypatch).check()
    assert check.ok
    assert check.detail == "URL configured; not contacted: sending is the only call"
    assert fake.requests == []


# -- the fake itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (b"not json", (400, "invalid_payload")),
        (b"[1]", (400, "invalid_payload")),
        (b'{"text": 5}', (400, "invalid_payload")),
        (b'{"username": "x"}', (400, "no_text")),
        (
            b'{"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]}',
            (
                400,
                "invalid_blocks",
            ),
        ),
        (
            b'{"blocks": [{"type": "section", "text": {"type": "plain_text", "text": ""}}]}',
            (
                400,
                "invalid_blocks",
            ),
        ),
        (b'{"text": "hello"}', (200, "ok")),
    ],
)
async def test_the_fake_validates_like_slack(
    fake: FakeSlack, session: aiohttp.ClientSession, body: bytes, answer: tuple[int, str]
) -> None:
    headers = {"Content-Type": "application/json"}
    async with session.post(fake.webhook_url, data=body, headers=headers) as resp:
        assert (resp.status, await resp.text()) == answer


async def test_the_fake_knows_its_webhook(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    wrong_token = fake.webhook_url.rsplit("/", 1)[0] + "/not-the-token"
    async with session.post(wrong_token, json={"text": "x"}) as resp:
        assert (resp.status, await resp.text()) == (403, "invalid_token")
    async with session.post(f"{fake.url}/services/T1/B1/x", json={"text": "x"}) as resp:
        assert (resp.status, await resp.text()) == (404, "no_service")
    # Slack also takes the JSON form-encoded in `payload`.
    async with session.post(fake.webhook_url, data={"payload": '{"text": "x"}'}) as resp:
        assert (resp.status, await resp.text()) == (200, "ok")
    assert fake.messages == [{"text": "x"}]


async def test_the_fake_throttle_window_is_one_second(session: aiohttp.ClientSession) -> None:
    now = [50.0]
    with FakeSlack(throttle=True, clock=lambda: now[0]).running() as fake:
        answers = []
        for at in (50.0, 50.2, 50.99, 51.0):
            now[0] = at
            async with session.post(fake.webhook_url, json={"text": "x"}) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After")))
    assert answers == [(200, None), (429, "1"), (429, "1"), (200, None)]
    assert len(fake.messages) == 2
