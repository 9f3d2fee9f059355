"""The defender-alerts collector against FakeDefender: paging, filters, throttling, checkpoints."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from clampdown.collectors.base import PullError
from clampdown.collectors.health import read_health
from clampdown.collectors.runner import pull_once
from clampdown.model import Finding
from clampdown.store import sources
from clampdown.testing.defender import FakeDefender
from tests.collectors.conftest import (
    OTHER_SUB,
    SUB,
    OpenApp,
    Sleeps,
    ago,
    arm_alert,
    defender_alerts_source,
    source_ids,
)

ALERTS_PATH = f"/subscriptions/{SUB}/providers/Microsoft.Security/alerts"
NAMES = [f"alert-{n}" for n in range(7)]


def seed(defender: FakeDefender, names: list[str] = NAMES) -> None:
    for name in names:
        defender.add_alert(arm_alert(name, at=ago(minutes=5)))


async def test_a_pull_reads_every_page_and_ingests_each_alert_once(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """Seven alerts, three per page: three list requests, seven findings, nothing retried."""
    seed(defender)
    app = open_app(defender_alerts_source(defender.url))
    result = await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert (result.pages, result.received, result.kept, result.new) == (3, 7, 7, 7)
    assert result.repeats == 0
    lists = defender.requests_to("GET", "/providers/Microsoft.Security/alerts")
    assert [r.path for r in lists] == [ALERTS_PATH] * 3
    assert lists[0].query == {"api-version": "2022-01-01"}
    assert [r.query.get("$skipToken") for r in lists] == [None, "3", "6"]
    assert source_ids(app) == sorted(NAMES)
    assert sleeps.waits == []


async def test_a_resource_group_scope_lists_that_group_only(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    defender.add_alert(arm_alert("in-group"))
    defender.add_alert(arm_alert("elsewhere", group="rg-other"))
    source = defender_alerts_source(
        defender.url, scope={"subscription_id": SUB, "resource_group": "rg-payments"}
    )
    app = open_app(source)
    await pull_once(app, "mdc-alerts", sleep=sleeps)
    [request] = defender.requests_to("GET", "/providers/Microsoft.Security/alerts")
    assert request.path == f"/subscriptions/{SUB}/resourceGroups/rg-payments" + (
        "/providers/Microsoft.Security/alerts"
    )
    assert source_ids(app) == ["in-group"]


async def test_alerts_of_other_types_and_older_alerts_are_skipped(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """Only Defender for APIs types by default, generated after checkpoint - overlap."""
    defender.add_alert(arm_alert("api-alert", alert_type="API_SpikeInAPITraffic"))
    defender.add_alert(arm_alert("vm-alert", alert_type="VM_SuspiciousProcess"))
    defender.add_alert(arm_alert("storage-alert", alert_type="Storage.Blob_AnonymousAccess"))
    defender.add_alert(arm_alert("ancient", at=ago(days=3)))
    app = open_app(defender_alerts_source(defender.url))
    result = await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert (result.received, result.kept, result.new) == (4, 1, 1)
    assert source_ids(app) == ["api-alert"]


async def test_alert_types_can_be_configured_with_globs(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    defender.add_alert(arm_alert("api-alert", alert_type="API_SpikeInAPITraffic"))
    defender.add_alert(arm_alert("vm-alert", alert_type="VM_SuspiciousProcess"))
    app = open_app(defender_alerts_source(defender.url, alert_types=["VM_*"]))
    await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert source_ids(app) == ["vm-alert"]


async def test_a_throttled_request_waits_as_retry_after_says(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """429 with Retry-After: 7, then a 503: the pull waits at least 7 s, retries, completes."""
    seed(defender)
    defender.fail_next(429, path_contains="/Microsoft.Security/alerts", retry_after=7)
    defender.fail_next(503, path_contains="/Microsoft.Security/alerts")
    app = open_app(defender_alerts_source(defender.url))
    result = await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert result.new == 7
    assert len(sleeps.waits) == 2
    assert sleeps.waits[0] >= 7
    assert len(defender.requests_to("GET", "/Microsoft.Security/alerts")) == 3 + 2


async def test_a_crash_mid_pull_is_resumed_from_the_checkpoint_without_loss_or_repeats(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """Page 2 keeps failing: the pull fails, the checkpoint stays; a new process on the same
    database pulls everything again and ends with each alert stored exactly once."""
    seed(defender)
    source = defender_alerts_source(defender.url, max_attempts=2)
    first = open_app(source)
    broke: list[bool] = []

    def break_after_first_page(found: list[Finding]) -> None:
        if not broke:
            broke.append(True)
            defender.fail_next(500, path_contains="/Microsoft.Security/alerts", times=2)

    first.on_ingested = break_after_first_page
    with pytest.raises(PullError, match=r"source mdc-alerts: GET .* answered 500"):
        await pull_once(first, "mdc-alerts", sleep=sleeps)
    assert len(source_ids(first)) == 3
    with first.db.read() as conn:
        state = sources.get(conn, "mdc-alerts")
    assert state is not None
    assert state.checkpoint is None
    assert state.errors_total == 1
    assert state.last_error is not None
    assert "answered 500" in state.last_error
    first.close()

    defender.add_alert(arm_alert("alert-late"))
    restarted = open_app(source)
    result = await pull_once(restarted, "mdc-alerts", sleep=sleeps)
    assert (result.received, result.new, result.repeats) == (8, 5, 3)
    assert source_ids(restarted) == sorted([*NAMES, "alert-late"])


async def test_the_next_pull_starts_at_checkpoint_minus_overlap(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """Alerts from before checkpoint - overlap are not ingested again; those inside are
    (idempotently), and new ones are added."""
    defender.add_alert(arm_alert("old", at=ago(hours=2)))
    defender.add_alert(arm_alert("recent", at=ago(minutes=2)))
    app = open_app(defender_alerts_source(defender.url, overlap="10m"))
    first = await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert first.new == 2
    defender.add_alert(arm_alert("newer"))
    second = await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert second.since == first.checkpoint - timedelta(minutes=10)
    assert (second.received, second.kept, second.new, second.repeats) == (3, 2, 1, 1)
    assert source_ids(app) == ["newer", "old", "recent"]


async def test_a_failed_pull_records_the_error_and_keeps_the_checkpoint(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    seed(defender)
    app = open_app(defender_alerts_source(defender.url))
    ok = await pull_once(app, "mdc-alerts", sleep=sleeps)
    defender.fail_next(403, path_contains="/Microsoft.Security/alerts", code="AuthorizationFailed")
    with pytest.raises(PullError, match="Security Reader role") as failure:
        await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert str(failure.value).startswith("source mdc-alerts: GET ")
    [health] = read_health(app)
    assert health["status"] == "failing"
    assert health["checkpoint"] == ok.checkpoint
    assert health["last_success_at"] is not None
    assert health["last_error"] == str(failure.value)
    assert health["errors_total"] == 1
    assert health["ingested_total"] == 7


async def test_a_wrong_secret_names_the_setting_to_fix(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAMPDOWN_TEST_SOURCE_SECRET", "not-the-secret")
    app = open_app(defender_alerts_source(defender.url))
    with pytest.raises(PullError) as failure:
        await pull_once(app, "mdc-alerts", sleep=sleeps)
    message = str(failure.value)
    assert message.startswith("source mdc-alerts: sign-in as c refused: invalid_client")
    assert "check identity.client_secret" in message
    assert "not-the-secret" not in message


async def test_a_next_link_to_another_host_is_refused(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """The bearer token never leaves the configured service: the pull fails, nothing moves."""
    seed(defender)
    defender.next_link_base = "http://127.0.0.2:9"
    app = open_app(defender_alerts_source(defender.url))
    with pytest.raises(PullError, match=re.escape("refusing a nextLink to 127.0.0.2")):
        await pull_once(app, "mdc-alerts", sleep=sleeps)
    assert len(defender.requests_to("GET", "/Microsoft.Security/alerts")) == 1
    [health] = read_health(app)
    assert health["checkpoint"] is None
    assert health["status"] == "failing"


async def test_lag_is_now_minus_the_checkpoint(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    seed(defender)
    app = open_app(defender_alerts_source(defender.url))
    result = await pull_once(app, "mdc-alerts", sleep=sleeps)
    [health] = read_health(app, now=result.checkpoint + timedelta(seconds=90))
    assert health["lag_seconds"] == 90
    assert health["status"] == "ok"
    assert health["pulled"] == 7
    assert health["last_error"] is None


async def test_an_unknown_subscription_is_arms_404(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    source = defender_alerts_source(defender.url, scope={"subscription_id": OTHER_SUB})
    app = open_app(source)
    with pytest.raises(PullError, match="404 SubscriptionNotFound"):
        await pull_once(app, "mdc-alerts", sleep=sleeps)
