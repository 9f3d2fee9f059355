"""Acceptance: a finding on an API mapped to an owner routes the default pack's notification to
that owner's channel, through the real engine, to a fake Teams or Slack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clampdown.ownership.refresher import ContextRefresher
from clampdown.services import Clampdown
from clampdown.testing.arm import FakeArm
from clampdown.testing.slack import FakeSlack
from clampdown.testing.teams import FakeTeams
from tests.conftest import make_config, sample
from tests.engine.conftest import drain

SUB = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
SERVICE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-payments"
    "/providers/Microsoft.ApiManagement/service/apim-contoso-prod"
)
ORDERS_GLOB = (
    "/subscriptions/*/resourceGroups/rg-payments"
    "/providers/Microsoft.ApiManagement/service/apim-contoso-prod/apis/orders*"
)
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.05}
IP = "203.0.113.77"  # the suspicious IP of defender-rest-suspicious-ip.json, on orders-api


@pytest.fixture
def chat() -> Iterator[tuple[FakeTeams, FakeSlack]]:
    with FakeTeams().running() as teams, FakeSlack().running() as slack:
        yield teams, slack


def open_app(tmp_path: Path, database_url: str, **settings: Any) -> Iterator[Clampdown]:
    """The shipped default pack, with the test's targets and ownership rules."""
    config = make_config(tmp_path, engine=FAST, **settings)
    app = Clampdown.open(config, database_url=database_url)
    try:
        yield app
    finally:
        app.close()


def chat_targets(
    teams: FakeTeams, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("TEAMS_PAYMENTS_URL", teams.workflow_url)
    monkeypatch.setenv("SLACK_PAYMENTS_URL", slack.webhook_url)
    return {
        "teams-payments": {"type": "teams", "url": {"env": "TEAMS_PAYMENTS_URL"}},
        "slack-payments": {"type": "slack", "url": {"env": "SLACK_PAYMENTS_URL"}},
    }


def steps_of(app: Clampdown, rid: str) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in app.get_remediation(rid)["steps"]}


@pytest.mark.parametrize("channel", ["teams-payments", "slack-payments"])
def test_the_owner_s_channel_receives_the_default_pack_message(
    tmp_path: Path,
    database_url: str,
    chat: tuple[FakeTeams, FakeSlack],
    monkeypatch: pytest.MonkeyPatch,
    channel: str,
) -> None:
    teams, slack = chat
    rules = [
        {"name": "identity", "match": {"names": ["users-api"]}, "owner": "identity-team"},
        {
            "name": "payments",
            "match": {"ids": [ORDERS_GLOB]},
            "owner": "payments-team@example.com",
            "channel": channel,
        },
    ]
    targets = chat_targets(teams, slack, monkeypatch)
    for app in open_app(tmp_path, database_url, targets=targets, ownership=rules):
        [ingested] = app.ingest(sample("defender-rest-suspicious-ip.json"))
        finding = app.get_finding(ingested.finding_id)
        assert finding["context"]["owner"] == "payments-team@example.com"
        assert finding["context"]["channel"] == channel
        assert finding["context"]["rule"] == "ownership[1] (payments)"
        [planned] = ingested.remediations
        assert planned.playbook == "block-suspicious-ip"
        drain(app)
        rem = app.get_remediation(planned.remediation_id)
        steps = steps_of(app, planned.remediation_id)
        assert rem["state"] == "succeeded", rem["history"]
        assert steps["block"]["state"] == "succeeded"
        assert steps["tell-owner"]["state"] == "succeeded"
        assert steps["tell-owner"]["params"]["target"] == channel

    delivered = teams.cards if channel == "teams-payments" else slack.messages
    other = slack.messages if channel == "teams-payments" else teams.cards
    assert len(delivered) == 1
    assert other == []
    text = json.dumps(delivered[0])
    assert "203.0.113.77" in text
    assert "payments-team@example.com" in text
    assert "for one hour" in text


def test_an_owner_found_by_apim_tags_is_told_and_a_sensitive_api_blocked_for_a_day(
    tmp_path: Path,
    database_url: str,
    chat: tuple[FakeTeams, FakeSlack],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tag comes from APIM and the sensitivity from Defender's counters, both read by the
    context refresher; the rule only says which tag means which owner and channel."""
    teams, slack = chat
    monkeypatch.setenv("CTX_SECRET", "ctx-secret")
    arm = FakeArm(
        tenant="t",
        client_id="c",
        client_secret="ctx-secret",
        subscription_id=SUB,
        resource_group="rg-payments",
        service="apim-contoso-prod",
    )
    arm.add_api("orders-api")
    arm.tag_api("orders-api", "team-payments", "Team Payments")
    arm.onboard_api("orders-api", endpoints=8, sensitive_data=2)
    rules = [
        {"match": {"tags": ["team payments"]}, "owner": "payments", "channel": "slack-payments"}
    ]
    with arm.running():
        identity = {
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": {"env": "CTX_SECRET"},
            "login_url": arm.url,
        }
        source = {
            "identity": identity,
            "subscription_id": SUB,
            "resource_group": "rg-payments",
            "service": "apim-contoso-prod",
            "management_url": arm.url,
        }
        targets = chat_targets(teams, slack, monkeypatch)
        context = {"apim": [source]}
        for app in open_app(
            tmp_path, database_url, targets=targets, ownership=rules, context=context
        ):
            settings = app.config.context
            assert settings is not None
            assert asyncio.run(_refresh(ContextRefresher(settings, app.enricher.facts)))
            [ingested] = app.ingest(sample("defender-rest-suspicious-ip.json"))
            drain(app)
            steps = steps_of(app, ingested.remediations[0].remediation_id)
            finding = app.get_finding(ingested.finding_id)
    assert finding["context"]["sensitivity"] == "high"
    assert finding["context"]["tags"] == ["Team Payments"]
    assert finding["context"]["collection"]["sensitive_data"] == 2
    assert (steps["block"]["state"], steps["block-sensitive"]["state"]) == ("skipped", "succeeded")
    assert steps["block-sensitive"]["params"]["ip"] == IP
    [message] = slack.messages
    assert "24 hours" in json.dumps(message)
    assert teams.cards == []


async def _refresh(refresher: ContextRefresher) -> bool:
    async with aiohttp.ClientSession() as session:
        return await refresher.refresh(session)


def test_without_a_channel_the_message_is_skipped_with_its_reason(
    tmp_path: Path, database_url: str
) -> None:
    """Only the built-in target: the pack still contains, and says why nobody was told."""
    rules = [{"match": {"ids": [ORDERS_GLOB]}, "owner": "payments-team"}]
    for app in open_app(tmp_path, database_url, ownership=rules):
        [ingested] = app.ingest(sample("defender-rest-suspicious-ip.json"))
        drain(app)
        rid = ingested.remediations[0].remediation_id
        steps = steps_of(app, rid)
        assert app.get_remediation(rid)["state"] == "succeeded"
        assert steps["block"]["state"] == "succeeded"
        assert steps["tell-owner"]["state"] == "skipped"
        history = app.get_remediation(rid)["history"]
        [why] = [h["reason"] for h in history if h["step_key"] == "tell-owner"]
        assert why == 'if: finding.channel != "" was false'
