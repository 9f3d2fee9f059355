"""The servicenow target against a fake instance's Table API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.errors import ConfigError, PermanentError, PreconditionError, TransientError
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.targets.driver import Ticket, TicketRef
from clampdown.targets.servicenow import ServiceNowDriver, correlation_id
from clampdown.targets.settings import ServiceNowTarget
from clampdown.testing.servicenow import FakeServiceNow

PASSWORD = "pa:ss^w0rd/secret"
TOKEN = "bearer-token-value"


@pytest.fixture
def instance() -> Iterator[FakeServiceNow]:
    with FakeServiceNow("clampdown", PASSWORD, tokens=(TOKEN,)).running() as fake:
        yield fake


@pytest.fixture
async def session(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aiohttp.ClientSession]:
    monkeypatch.setenv("SN_PASSWORD", PASSWORD)
    monkeypatch.setenv("SN_TOKEN", TOKEN)
    async with aiohttp.ClientSession() as session:
        yield session


def _driver(
    instance: FakeServiceNow, session: aiohttp.ClientSession, **settings: Any
) -> ServiceNowDriver:
    login: dict[str, Any] = {"username": "clampdown", "password": SecretRef(env="SN_PASSWORD")}
    if "token" in settings:
        login = {}
    target = ServiceNowTarget(
        instance_url=instance.url,
        assignment_group="secops",
        caller_id="clampdown.integration",
        **login,
        **settings,
    )
    return ServiceNowDriver("itsm", target, TargetHttp(session, target.origins(), "itsm"))


def _ticket(rid: str = "rem-1", correlation: str = "alert-1", urgency: int = 2) -> Ticket:
    briefing = Briefing(
        remediation_id=rid,
        playbook="contain",
        state="running",
        finding={"title": "Suspicious IP", "ip": "203.0.113.7", "severity": "high"},
    )
    message = compose("Blocked 203.0.113.7", "Clampdown blocked the client.", briefing)
    return Ticket(message.title, message, correlation, urgency)


async def test_opens_an_incident_with_the_correlation_id(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    ref = await _driver(instance, session).open_ticket(_ticket(urgency=1))
    [incident] = instance.incidents()
    assert ref == TicketRef(
        incident["sys_id"], "INC0010001", f"{instance.url}/incident.do?sys_id={incident['sys_id']}"
    )
    assert incident["correlation_id"] == "alert-1"
    assert incident["correlation_display"] == "Clampdown"
    assert incident["short_description"] == "Blocked 203.0.113.7"
    assert incident["description"].startswith(
        "Clampdown remediation rem-1 (contain), running\n\nClampdown blocked the client.\n"
    )
    assert "Client IP: 203.0.113.7" in incident["description"]
    assert (incident["urgency"], incident["impact"], incident["priority"]) == ("1", "1", "1")
    assert (incident["assignment_group"], incident["caller_id"]) == (
        "secops",
        "clampdown.integration",
    )
    assert (incident["state"], incident["active"]) == ("1", "true")
    [post] = instance.calls("POST")
    assert post.headers["Authorization"].startswith("Basic ")


async def test_an_open_incident_with_the_same_correlation_is_reused_with_a_note(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    first = await driver.open_ticket(_ticket("rem-1"))
    again = await driver.open_ticket(_ticket("rem-2"))
    assert again.reused
    assert (again.id, again.number) == (first.id, first.number)
    assert len(instance.incidents()) == 1
    [note] = instance.work_notes(first.id)
    assert note.startswith("Seen again: Clampdown remediation rem-2 (contain) matched")
    # Another correlation id is another incident.
    other = await driver.open_ticket(_ticket("rem-3", correlation="alert-2"))
    assert not other.reused
    assert other.number == "INC0010002"
    first_lookup = instance.calls("GET")[0].query
    assert (
        first_lookup["sysparm_query"] == "correlation_id=alert-1^active=true^ORDERBYsys_created_on"
    )
    assert first_lookup["sysparm_limit"] == "1"


async def test_concurrent_opens_of_one_correlation_make_one_incident(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    refs = await asyncio.gather(*(driver.open_ticket(_ticket(f"rem-{n}")) for n in range(4)))
    assert len(instance.incidents()) == 1
    assert sorted(ref.reused for ref in refs) == [False, True, True, True]


async def test_a_retry_by_the_same_remediation_finds_its_incident_without_a_note(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    first = await driver.open_ticket(_ticket("rem-1"))
    again = await driver.open_ticket(_ticket("rem-1"))
    assert again == first
    assert not again.reused
    assert len(instance.calls("POST")) == 1
    assert instance.work_notes(first.id) == []


async def test_a_resolved_incident_is_reopened_and_a_closed_one_replaced(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    resolved = instance.seed(
        correlation_id="alert-1", state="6", close_code="Solved", close_notes="fixed"
    )
    instance.seed(correlation_id="alert-2", state="7", close_code="Solved", close_notes="done")
    ref = await driver.open_ticket(_ticket("rem-1", "alert-1"))
    assert ref.reused
    assert ref.id == resolved["sys_id"]
    reopened = instance.incident(ref.id)
    assert (reopened["state"], reopened["reopen_count"]) == ("2", "1")
    fresh = await driver.open_ticket(_ticket("rem-2", "alert-2"))
    assert not fresh.reused
    assert len(instance.incidents()) == 3


async def test_a_correlation_that_does_not_fit_is_hashed_and_still_deduplicates(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    odd = "/subscriptions/x/alerts/a^active=false^ORDERBYnumber" + "x" * 100
    driver = _driver(instance, session)
    await driver.open_ticket(_ticket("rem-1", odd))
    again = await driver.open_ticket(_ticket("rem-2", odd))
    [incident] = instance.incidents()
    assert incident["correlation_id"] == correlation_id(odd)
    assert incident["correlation_id"].startswith("clampdown-")
    assert len(incident["correlation_id"]) == len("clampdown-") + 40
    assert again.reused
    assert correlation_id("alert-1") == "alert-1"


async def test_update_adds_a_work_note_by_sys_id_or_number(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    ref = await driver.open_ticket(_ticket())
    await driver.update_ticket(ref, "Blocked for 1h")
    await driver.update_ticket(TicketRef(ref.number, ref.number, ""), "[code]<b>x</b>[/code]")
    assert instance.work_notes(ref.id) == [
        "Blocked for 1h",
        "\uff3bcode\uff3d<b>x</b>\uff3b/code\uff3d",
    ]
    with pytest.raises(PermanentError, match="no incident INC0099999"):
        await driver.update_ticket(TicketRef("INC0099999", "", ""), "x")
    with pytest.raises(PermanentError, match="No Record found"):
        await driver.update_ticket(TicketRef("0" * 32, "", ""), "x")


async def test_resolve_sets_state_6_with_code_and_notes_and_is_idempotent(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session, close_code="Solved (Permanently)")
    ref = await driver.open_ticket(_ticket())
    await driver.resolve_ticket(ref, "Remediation expired.\nDone:\n- block")
    incident = instance.incident(ref.id)
    assert (incident["state"], incident["active"]) == ("6", "true")
    assert incident["close_code"] == "Solved (Permanently)"
    assert incident["close_notes"] == "Remediation expired.\nDone:\n- block"
    patches = len(instance.calls("PATCH"))
    await driver.resolve_ticket(ref, "Remediation expired.\nDone:\n- block")
    assert len(instance.calls("PATCH")) == patches
    # Another summary on a resolved incident becomes a work note.
    await driver.resolve_ticket(ref, "Another remediation ended.")
    assert instance.work_notes(ref.id) == ["Another remediation ended."]
    assert instance.incident(ref.id)["close_notes"] == "Remediation expired.\nDone:\n- block"


async def test_a_closed_incident_is_left_alone(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    closed = instance.seed(state="7", close_code="Solved", close_notes="by a person")
    await _driver(instance, session).resolve_ticket(TicketRef(closed["sys_id"], "", ""), "x")
    assert instance.calls("PATCH") == []


async def test_resolving_without_a_close_code_meets_the_data_policy(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session, close_code="")
    ref = await driver.open_ticket(_ticket())
    with pytest.raises(PreconditionError, match=r"Data Policy Exception.*Resolution code"):
        await driver.resolve_ticket(ref, "done")
    assert instance.incident(ref.id)["state"] == "1"


async def test_throttling_and_server_errors_are_transient(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session)
    instance.fail_next(status=429, retry_after=7)
    with pytest.raises(TransientError, match="429: Rate limit exceeded") as caught:
        await driver.open_ticket(_ticket())
    assert caught.value.retry_after == 7
    assert not caught.value.maybe_delivered
    instance.fail_next(method="POST", status=500)
    with pytest.raises(TransientError, match="500") as caught:
        await driver.open_ticket(_ticket())
    assert caught.value.maybe_delivered
    instance.fail_next(status=503)
    with pytest.raises(TransientError, match="503"):
        await driver.open_ticket(_ticket())
    assert instance.incidents() == []
    await driver.open_ticket(_ticket())
    assert len(instance.incidents()) == 1


async def test_refusals_carry_servicenows_message_and_never_the_secret(
    instance: FakeServiceNow, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _driver(instance, session)
    instance.fail_next(status=400, message="Invalid request: field urgency")
    with pytest.raises(PermanentError, match="400: Invalid request: field urgency"):
        await driver.open_ticket(_ticket())
    monkeypatch.setenv("SN_PASSWORD", "wrong-password")
    with pytest.raises(PreconditionError, match="401: User Not Authenticated") as caught:
        await driver.open_ticket(_ticket())
    assert "wrong-password" not in str(caught.value)
    assert PASSWORD not in str(caught.value)
    [check] = await driver.check()
    assert not check.ok
    assert "User Not Authenticated" in check.detail
    monkeypatch.delenv("SN_PASSWORD")
    with pytest.raises(ConfigError, match=r"password.*SN_PASSWORD"):
        await driver.open_ticket(_ticket())


async def test_bearer_token_and_check_read_only(
    instance: FakeServiceNow, session: aiohttp.ClientSession
) -> None:
    driver = _driver(instance, session, token=SecretRef(env="SN_TOKEN"))
    [check] = await driver.check()
    assert check.ok, check.detail
    [get] = instance.requests
    assert get.method == "GET"
    assert get.query["sysparm_limit"] == "1"
    assert get.headers["Authorization"] == f"Bearer {TOKEN}"
    await driver.open_ticket(_ticket())
    assert len(instance.incidents()) == 1
