"""The jira target against a fake Jira Cloud site (REST API v3)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.errors import ConfigError, PermanentError, PreconditionError, TransientError
from clampdown.messages import adf
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.targets.driver import Ticket, TicketRef
from clampdown.targets.jira import JiraDriver, correlation_label, search_jql
from clampdown.targets.settings import JiraTarget
from clampdown.testing.jira import NOT_ADF, FakeJira

EMAIL = "clampdown@example.com"
TOKEN = "ATATT3xFfGF0-api-token"


@pytest.fixture
def site() -> Iterator[FakeJira]:
    with FakeJira(EMAIL, TOKEN).running() as fake:
        yield fake


@pytest.fixture
async def session(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aiohttp.ClientSession]:
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    async with aiohttp.ClientSession() as session:
        yield session


def _driver(site: FakeJira, session: aiohttp.ClientSession, **settings: Any) -> JiraDriver:
    settings = {"project_key": "SEC", **settings}
    target = JiraTarget(
        site_url=site.url, email=EMAIL, api_token=SecretRef(env="JIRA_TOKEN"), **settings
    )
    return JiraDriver("jira", target, TargetHttp(session, target.origins(), "jira"))


def _ticket(rid: str = "rem-1", correlation: str = "alert-1") -> Ticket:
    briefing = Briefing(
        remediation_id=rid,
        playbook="contain",
        state="running",
        finding={"title": "Suspicious IP", "ip": "203.0.113.7"},
    )
    message = compose("Blocked 203.0.113.7\nfor 1h", "Clampdown blocked the client.", briefing)
    return Ticket(message.title, message, correlation, 2)


def _texts(site: FakeJira, key: str) -> list[str]:
    return [adf.text_of(body) for body in site.comments(key)]


async def test_opens_an_issue_labelled_by_the_correlation_id(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    ref = await _driver(site, session).open_ticket(_ticket())
    assert ref == TicketRef("10001", "SEC-1", f"{site.url}/browse/SEC-1")
    fields = site.issue("SEC-1")["fields"]
    label = correlation_label("alert-1")
    assert label == "clampdown-" + hashlib.sha256(b"alert-1").hexdigest()[:12]
    assert fields["labels"] == ["clampdown", label]
    assert fields["summary"] == "Blocked 203.0.113.7 for 1h"  # Jira refuses line breaks
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["description"]["type"] == "doc"
    assert adf.made_for(fields["description"], "rem-1")
    [post] = site.calls("POST", "/issue")
    assert post.headers["Authorization"].startswith("Basic ")


async def test_an_open_issue_with_the_same_label_is_reused_with_a_comment(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    driver = _driver(site, session)
    first = await driver.open_ticket(_ticket("rem-1"))
    again = await driver.open_ticket(_ticket("rem-2"))
    assert again.reused
    assert again.number == first.number
    assert len(site.issues()) == 1
    [comment] = _texts(site, first.number)
    assert comment.startswith("Seen again: Clampdown remediation rem-2 (contain) matched")
    search = site.calls("POST", "/search/jql")[0]
    assert search.json == {
        "jql": search_jql("SEC", correlation_label("alert-1")),
        "fields": ["summary", "status", "labels", "description"],
        "maxResults": 1,
    }
    assert search.json["jql"] == (
        f'project = "SEC" AND labels = "{correlation_label("alert-1")}" AND statusCategory != Done'
    )


async def test_a_retry_by_the_same_remediation_finds_its_issue_without_a_comment(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    driver = _driver(site, session)
    first = await driver.open_ticket(_ticket("rem-1"))
    again = await driver.open_ticket(_ticket("rem-1"))
    assert again == first
    assert len(site.calls("POST", "/rest/api/3/issue")) == 1
    assert site.comments(first.number) == []


async def test_a_done_issue_is_not_reused(site: FakeJira, session: aiohttp.ClientSession) -> None:
    site.seed("SEC", "old", ["clampdown", correlation_label("alert-1")], status="Done")
    ref = await _driver(site, session).open_ticket(_ticket())
    assert not ref.reused
    assert ref.number == "SEC-2"


async def test_update_adds_a_plain_text_comment(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    driver = _driver(site, session)
    ref = await driver.open_ticket(_ticket())
    await driver.update_ticket(
        TicketRef(ref.number, ref.number, ""), "Blocked *for* [1h](http://x)"
    )
    [body] = site.comments(ref.number)
    assert body == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "Blocked *for* [1h](http://x)"}],
            }
        ],
    }
    with pytest.raises(PermanentError, match="Issue does not exist"):
        await driver.update_ticket(TicketRef("SEC-99", "", ""), "x")
    with pytest.raises(PermanentError, match="no Jira issue id or key"):
        await driver.update_ticket(TicketRef("../../myself", "", ""), "x")


async def test_resolve_runs_the_done_transition_and_comments_once(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    driver = _driver(site, session)
    ref = await driver.open_ticket(_ticket())
    await driver.resolve_ticket(ref, "Remediation expired.\n\n- block")
    assert site.status(ref.number) == "Done"
    [transition] = site.calls("POST", "/transitions")
    assert transition.json == {"transition": {"id": "31"}}
    assert _texts(site, ref.number) == ["Remediation expired.\n- block"]
    await driver.resolve_ticket(ref, "Remediation expired.\n\n- block")
    assert len(site.calls("POST", "/transitions")) == 1
    assert len(site.comments(ref.number)) == 1
    await driver.resolve_ticket(ref, "Another remediation ended.")
    assert _texts(site, ref.number)[-1] == "Another remediation ended."


async def test_any_transition_to_done_serves_when_the_named_one_is_missing(
    session: aiohttp.ClientSession,
) -> None:
    flow = {"2": ("Start", "In Progress"), "5": ("Close issue", "Done")}
    with FakeJira(EMAIL, TOKEN, transitions=flow).running() as site:
        driver = _driver(site, session, done_transition="Resolve")
        ref = await driver.open_ticket(_ticket())
        await driver.resolve_ticket(ref, "done")
        assert site.status(ref.number) == "Done"
        only_start = {"2": ("Start", "In Progress")}
        site.transitions = only_start
        other = await driver.open_ticket(_ticket("rem-2", "alert-2"))
        with pytest.raises(PermanentError, match=r"no transition 'Resolve'.*offers: Start"):
            await driver.resolve_ticket(other, "done")


async def test_throttling_and_server_errors_are_transient(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    driver = _driver(site, session)
    site.fail_next(status=429, retry_after=30)
    with pytest.raises(TransientError, match="429: Rate limit exceeded") as caught:
        await driver.open_ticket(_ticket())
    assert caught.value.retry_after == 30
    site.fail_next(method="POST", path_contains="/comment", status=502)
    ref = await driver.open_ticket(_ticket())
    with pytest.raises(TransientError, match="502") as caught:
        await driver.update_ticket(ref, "x")
    assert caught.value.maybe_delivered
    assert site.comments(ref.number) == []


async def test_refusals_carry_jiras_messages_and_never_the_token(
    site: FakeJira, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PermanentError, match="400: The value 'NOPE' does not exist for the field"):
        await _driver(site, session, project_key="NOPE").open_ticket(_ticket())
    with pytest.raises(PermanentError, match="issuetype: The issue type selected is invalid"):
        await _driver(site, session, issue_type="Epic").open_ticket(_ticket())
    site.read_only = True
    with pytest.raises(PreconditionError, match="403: You do not have permission to create"):
        await _driver(site, session).open_ticket(_ticket())
    monkeypatch.setenv("JIRA_TOKEN", "wrong-token")
    with pytest.raises(PreconditionError, match="401: You are not authenticated") as caught:
        await _driver(site, session).open_ticket(_ticket())
    assert "wrong-token" not in str(caught.value)
    monkeypatch.delenv("JIRA_TOKEN")
    with pytest.raises(ConfigError, match=r"api_token.*JIRA_TOKEN"):
        await _driver(site, session).open_ticket(_ticket())


async def test_the_fake_refuses_what_jira_refuses(
    site: FakeJira, session: aiohttp.ClientSession
) -> None:
    """Plain-string descriptions and JQL other than the driver's are refused, as in Jira."""
    http = TargetHttp(session, [site.url], "jira")
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    fields = {"project": {"key": "SEC"}, "issuetype": {"name": "Task"}, "summary": "s"}
    reply = await http.request(
        "POST",
        f"{site.url}/rest/api/3/issue",
        json={"fields": {**fields, "description": "plain"}},
        headers=headers,
    )
    assert reply.status == 400
    assert reply.json() == {"errorMessages": [], "errors": {"description": NOT_ADF}}
    reply = await http.request(
        "POST",
        f"{site.url}/rest/api/3/search/jql",
        json={"jql": "project = SEC ORDER BY created"},
        headers=headers,
    )
    assert reply.status == 400
    assert reply.json()["errorMessages"][0].startswith("Error in the JQL Query")


async def test_check_reads_the_account_and_the_project(
    site: FakeJira, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = await _driver(site, session).check()
    assert [(c.name, c.ok) for c in checks] == [("credentials", True), ("project", True)]
    assert checks[1].detail == "SEC: Security"
    assert {r.method for r in site.requests} == {"GET"}
    [_, wrong_type] = await _driver(site, session, issue_type="Story").check()
    assert not wrong_type.ok
    assert "no issue type 'Story'" in wrong_type.detail
    [_, missing] = await _driver(site, session, project_key="OPS").check()
    assert not missing.ok
    assert "No project could be found with key 'OPS'" in missing.detail
    monkeypatch.setenv("JIRA_TOKEN", "wrong-token")
    [credentials, _] = await _driver(site, session).check()
    assert not credentials.ok
    assert "wrong-token" not in credentials.detail
