"""The pagerduty target against the Events API v2 fake: trigger, dedup and resolve."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.errors import PermanentError, TransientError
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.targets.pagerduty import PagerDutyDriver, dedup_key
from clampdown.targets.settings import PagerDutyTarget
from clampdown.testing.pagerduty import ROUTING_KEY, FakePagerDuty

FINDING = {"ip": "192.0.2.45", "severity": "high", "title": "Suspicious access"}
MESSAGE = compose(
    "",
    "Blocked the client.",
    Briefing(remediation_id="r1", playbook="contain", state="running", finding=FINDING),
)
ENDED = compose(
    "",
    "Blocked the client.",
    Briefing(
        remediation_id="r1",
        playbook="contain",
        state="expired",
        finding=FINDING,
        done=("block: blocked 192.0.2.45 at builtin",),
    ),
)


@pytest.fixture
def fake() -> Iterator[FakePagerDuty]:
    with FakePagerDuty().running() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _driver(
    fake: FakePagerDuty,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    routing_key: str = ROUTING_KEY,
) -> PagerDutyDriver:
    monkeypatch.setenv("PD_ROUTING_KEY", routing_key)
    settings = PagerDutyTarget(
        routing_key=SecretRef(env="PD_ROUTING_KEY"), events_url=fake.events_url
    )
    return PagerDutyDriver("pager", settings, TargetHttp(session, settings.origins(), "pager"))


async def test_a_send_triggers_one_incident_and_a_repeat_adds_to_it(
    fake: FakePagerDuty, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _driver(fake, session, monkeypatch)
    first = await driver.send(MESSAGE, key="r1-0")
    again = await driver.send(MESSAGE, key="r1-0")
    assert first == again == {"dedup_key": "clampdown-r1-0"}
    [incident] = fake.incidents
    assert (incident.dedup_key, incident.state, incident.triggers) == (
        "clampdown-r1-0",
        "triggered",
        2,
    )
    assert incident.summary == "Suspicious access: Blocked the client."
    assert incident.severity == "error"  # high
    event = fake.events[0].body
    assert event["routing_key"] == ROUTING_KEY
    assert event["payload"]["source"] == "clampdown"
    assert ROUTING_KEY not in str(first)


async def test_resolve_closes_the_incident_with_how_it_ended(
    fake: FakePagerDuty, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _driver(fake, session, monkeypatch)
    sent = await driver.send(MESSAGE, key="r1-0")
    await driver.resolve(ENDED, sent)
    [incident] = fake.incidents
    assert incident.state == "resolved"
    assert incident.resolution == "Remediation r1 expired: block: blocked 192.0.2.45 at builtin"
    assert [e.action for e in fake.events] == ["trigger", "resolve"]
    assert {e.dedup_key for e in fake.events} == {"clampdown-r1-0"}


async def test_resolve_needs_the_dedup_key(
    fake: FakePagerDuty, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PermanentError, match="no dedup key"):
        await _driver(fake, session, monkeypatch).resolve(ENDED, {})
    assert fake.events == []


@pytest.mark.parametrize(
    ("routing_key", "error"),
    [
        ("unknown-key-of-thirty-two-chars!", "Invalid routing key"),
        ("short-secret", "Length of 'routing_key' is incorrect (should be 32 characters)"),
    ],
)
async def test_a_refused_event_is_permanent_and_never_shows_the_key(
    fake: FakePagerDuty,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    routing_key: str,
    error: str,
) -> None:
    with pytest.raises(PermanentError) as caught:
        await _driver(fake, session, monkeypatch, routing_key).send(MESSAGE, key="r1-0")
    assert str(caught.value) == (
        f"target pager: PagerDuty refused the trigger (400): Event object is invalid: {error}"
    )
    assert routing_key not in str(caught.value)
    assert fake.incidents == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, 20), (500, None), (503, 5)])
async def test_throttling_and_server_errors_are_transient(
    fake: FakePagerDuty,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    retry_after: int | None,
) -> None:
    fake.fail_next(status, retry_after=retry_after)
    driver = _driver(fake, session, monkeypatch)
    with pytest.raises(TransientError, match=f"\\({status}\\)") as caught:
        await driver.send(MESSAGE, key="r1-0")
    assert caught.value.retry_after == retry_after
    assert fake.incidents == []
    await driver.send(MESSAGE, key="r1-0")  # the retry
    assert len(fake.incidents) == 1


async def test_check_sends_nothing_and_checks_the_key_length(
    fake: FakePagerDuty, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    [ok] = await _driver(fake, session, monkeypatch).check()
    assert ok.ok
    assert "not contacted: sending is the only call" in ok.detail
    [short] = await _driver(fake, session, monkeypatch, "short-secret").check()
    assert not short.ok
    assert "short-secret" not in short.detail
    assert fake.events == []


def test_the_dedup_key_follows_the_idempotency_key() -> None:
    assert dedup_key("4f2a-3") == "clampdown-4f2a-3"
    assert len(dedup_key("k" * 300)) == 255


# -- the fake itself -------------------------------------------------------------------------


async def test_the_fake_lists_every_problem_of_an_invalid_event(
    fake: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    event = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "x" * 1025, "severity": "urgent"},
    }
    async with session.post(fake.events_url, json=event) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": [
            "'payload.summary' is too long (max 1024 characters)",
            "'payload.source' is missing or blank",
            "'payload.severity' is invalid (must be one of the following: "
            "'critical', 'warning', 'error' or 'info')",
        ],
    }
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve"}
    async with session.post(fake.events_url, json=resolve) as resp:
        assert (await resp.json())["errors"] == ["'dedup_key' is missing or blank"]
    assert fake.incidents == []


async def test_the_fake_opens_a_new_incident_after_a_resolve(
    fake: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    trigger = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "k1",
        "payload": {"summary": "s", "source": "src", "severity": "info"},
    }
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "k1"}
    answers = []
    for event in (trigger, resolve, resolve, trigger):
        async with session.post(fake.events_url, json=event) as resp:
            answers.append((resp.status, await resp.json()))
    assert answers[0] == (
        202,
        {"status": "success", "message": "Event processed", "dedup_key": "k1"},
    )
    assert {status for status, _ in answers} == {202}
    assert [i.state for i in fake.incidents_for("k1")] == ["resolved", "triggered"]
    opened = fake.open_incident("k1")
    assert opened is fake.incidents[1]
    # Without a dedup key, PagerDuty makes one up and answers it.
    async with session.post(fake.events_url, json={**trigger, "dedup_key": None}) as resp:
        made_up = (await resp.json())["dedup_key"]
    assert len(made_up) == 32
    assert fake.open_incident(made_up) is not None
