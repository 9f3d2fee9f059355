"""The playbook language through the engine: vars, step outputs, retries, timeout, on_failure,
exclusive playbooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.engine.decisions import Request
from clampdown.engine.executor import Executor
from clampdown.model import Decision
from clampdown.services import Clampdown
from clampdown.testing.kong import FakeKong
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.fakes import Reply, WebhookReceiver

ALERT = "defender-rest-suspicious-ip.json"
IP = "203.0.113.77"


def _run(app: Clampdown) -> dict[str, Any]:
    """Ingest the suspicious-IP alert, run the engine, return the one remediation."""
    [result] = app.ingest(sample(ALERT))
    [planned] = result.remediations
    drain(app)
    return app.get_remediation(planned.remediation_id)


def _playbook(steps: str, *, name: str = "pb", extra: str = "") -> str:
    return f"""
apiVersion: clampdown/v1
kind: Playbook
metadata: {{name: {name}}}
spec:
  match: {{types: [API_AccessFromSuspiciousIP]{extra}}}
  mode: automatic
  steps:
{steps}
"""


BLOCK = """\
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: test}
      expires: 1h
"""

VARIABLES = """
apiVersion: clampdown/v1
kind: Variables
metadata: {name: shared}
spec:
  vars:
    trusted_ranges: [10.0.0.0/8, 198.51.100.0/24]
    owners_by_api: {orders-api: orders-team@example.com}
    throttle_rate: 30
---
"""


# vars and step outputs ---------------------------------------------------------------------


def test_vars_are_read_in_match_if_and_with(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """`when` uses ip_in with a shared list; `with` reads a map and a number from vars."""
    steps = """\
    - id: slow
      uses: gateway.throttle
      with:
        target: builtin
        ip: "${{ finding.ip }}"
        rate: "${{ vars.throttle_rate }}"
        reason: "owner ${{ vars.owners_by_api[finding.api.api] }}"
      expires: 1h
    - id: tell
      uses: notify.send
      if: vars.throttle_rate < 60
      with: {target: hook, text: "throttled to ${{ vars.throttle_rate }}/min"}
"""
    playbook = _playbook(steps, extra=", when: '!ip_in(finding.ip, vars.trusted_ranges)'")
    app = make_app(VARIABLES + playbook, webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "succeeded"
    slow, tell = rem["steps"]
    assert slow["params"]["rate"] == 30
    assert slow["params"]["reason"] == "owner orders-team@example.com"
    assert slow["spec"]["vars"] == {
        "owners_by_api": {"orders-api": "orders-team@example.com"},
        "throttle_rate": 30,
    }
    assert tell["state"] == "succeeded"
    assert [d.body["text"] for d in webhook.deliveries] == ["throttled to 30/min"]


def test_a_trusted_ip_matches_nothing(make_app: AppFactory) -> None:
    variables = VARIABLES.replace("198.51.100.0/24", "203.0.113.0/24")
    playbook = _playbook(BLOCK, extra=", when: '!ip_in(finding.ip, vars.trusted_ranges)'")
    app = make_app(variables + playbook)
    [result] = app.ingest(sample(ALERT))
    assert result.remediations == []


def test_a_later_step_reads_an_earlier_steps_output(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    steps = (
        BLOCK
        + """\
    - id: tell
      uses: notify.send
      if: has(steps.block.output.containment_id)
      with: {target: hook, text: "containment ${{ steps.block.output.containment_id }}"}
"""
    )
    app = make_app(_playbook(steps), webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "succeeded"
    containment_id = rem["steps"][0]["result"]["output"]["containment_id"]
    assert [d.body["text"] for d in webhook.deliveries] == [f"containment {containment_id}"]


# retries and timeout -----------------------------------------------------------------------

TELL = """\
    - id: tell
      uses: notify.send
      with: {{target: hook, text: "alert"}}
{options}"""


def test_retries_override_max_attempts(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    webhook.default = Reply(503)
    app = make_app(_playbook(TELL.format(options="      retries: 1\n")), webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "failed"
    assert rem["steps"][0]["error"].startswith("gave up after 2 attempts")
    assert len(webhook.deliveries) == 2


def test_no_retries_means_one_attempt(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    webhook.default = Reply(429, {"Retry-After": "0"})
    app = make_app(_playbook(TELL.format(options="      retries: 0\n")), webhook=webhook)
    rem = _run(app)
    assert rem["steps"][0]["error"].startswith("gave up after 1 attempts")
    assert len(webhook.deliveries) == 1


def test_step_timeout_cuts_a_slow_call(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    webhook.default = Reply(delay=1.5)
    app = make_app(_playbook(TELL.format(options="      timeout: 1s\n")), webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "failed"
    assert rem["steps"][0]["error"].startswith("timed out after 1s")
    assert len(webhook.deliveries) == 1


async def test_step_timeout_stays_below_the_lease(make_app: AppFactory) -> None:
    """A call must end before its job's lease lapses, or another worker could repeat it."""
    app = make_app(_playbook(BLOCK), lease_seconds=20)
    async with aiohttp.ClientSession() as session:
        executor = Executor(app.db, app.config, app.decisions, session)
        assert executor._call_timeout({"spec": {"timeout": 3600}}, 2.0) == 15.0
        assert executor._call_timeout({"spec": {"timeout": 4}}, 2.0) == 4.0
        assert executor._call_timeout({"spec": {}}, 2.0) == 3.0


# on_failure --------------------------------------------------------------------------------


def test_continue_goes_on_and_the_remediation_succeeds(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """A failed optional step is reported; the steps after it run, one of them because of it."""
    webhook.script = [Reply(400, body="invalid_payload")]
    steps = (
        TELL.format(options="      on_failure: continue\n")
        + BLOCK
        + """\
    - id: retell
      uses: notify.send
      if: steps.tell.status == "failed"
      with: {target: hook, text: "second try"}
"""
    )
    app = make_app(_playbook(steps), webhook=webhook)
    rem = _run(app)
    assert [s["state"] for s in rem["steps"]] == ["failed", "succeeded", "succeeded"]
    assert "invalid_payload" in rem["steps"][0]["error"]
    assert rem["state"] == "succeeded"
    verdict = rem["history"][-1]
    assert verdict["to_state"] == "succeeded"
    assert verdict["reason"] == "verified; passed over failed steps: tell (on_failure: continue)"
    assert app.decide(Request(ip=IP)).decision is Decision.DENY
    assert len(webhook.deliveries) == 2


def test_continue_with_nothing_achieved_fails(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    webhook.default = Reply(400)
    steps = TELL.format(options="      on_failure: continue\n")
    steps += steps.replace("id: tell", "id: again")
    app = make_app(_playbook(steps), webhook=webhook)
    rem = _run(app)
    assert [s["state"] for s in rem["steps"]] == ["failed", "failed"]
    assert rem["state"] == "failed"
    assert rem["history"][-1]["reason"] == "no step succeeded; failed: tell, again"


def test_undo_previous_undoes_latest_first_then_fails(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    webhook.script = [Reply(200)]
    webhook.default = Reply(400, body="invalid_payload")
    steps = (
        BLOCK
        + """\
    - id: note
      uses: notify.send
      with: {target: hook, text: "Blocked ${{ finding.ip }}"}
    - id: slow
      uses: gateway.throttle
      with: {target: builtin, cidr: 198.51.100.0/24, rate: 10}
      expires: 1h
"""
        + TELL.format(options="      on_failure: undo_previous\n")
        + BLOCK.replace("id: block", "id: never")
    )
    app = make_app(_playbook(steps), webhook=webhook)
    [result] = app.ingest(sample(ALERT))
    rid = result.remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "failed")
    rem = app.get_remediation(rid)
    states = [s["state"] for s in rem["steps"]]
    assert states == ["undone", "succeeded", "undone", "failed", "skipped"]
    assert app.list_containments() == []
    assert app.decide(Request(ip=IP)).decision is Decision.ALLOW
    undone = [h["step_key"] for h in rem["history"] if h["to_state"] == "undone"]
    assert undone == ["slow", "block"]
    assert rem["history"][-1]["reason"] == (
        "step tell failed: target hook answered 400: invalid_payload; undone: slow, block"
    )


def test_undo_previous_with_nothing_to_undo_just_fails(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    webhook.default = Reply(400)
    steps = TELL.format(options="      on_failure: undo_previous\n") + BLOCK
    app = make_app(_playbook(steps), webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "failed"
    assert [s["state"] for s in rem["steps"]] == ["failed", "skipped"]
    assert rem["history"][-1]["reason"].endswith("; no earlier step to undo")


def test_stop_is_the_default(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    webhook.default = Reply(400)
    app = make_app(_playbook(TELL.format(options="") + BLOCK), webhook=webhook)
    rem = _run(app)
    assert rem["state"] == "failed"
    assert [s["state"] for s in rem["steps"]] == ["failed", "skipped"]
    assert app.list_containments() == []


# priorities --------------------------------------------------------------------------------


def test_an_exclusive_playbook_keeps_lower_priorities_out(make_app: AppFactory) -> None:
    exclusive = _playbook(BLOCK, name="first", extra="").replace(
        "  match:", "  priority: 10\n  exclusive: true\n  match:"
    )
    same = _playbook(BLOCK, name="peer").replace("  match:", "  priority: 10\n  match:")
    lower = _playbook(BLOCK, name="later")
    app = make_app(exclusive + "---" + same + "---" + lower)
    [result] = app.ingest(sample(ALERT))
    assert [p.playbook for p in result.remediations] == ["first", "peer"]


KONG_THEN_FAIL = """\
    - id: block
      uses: gateway.block
      with: {target: edge, ip: "${{ finding.ip }}", scope: "service:orders"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "blocked"}
      on_failure: undo_previous
"""


@pytest.fixture
def kong() -> Iterator[FakeKong]:
    with FakeKong().running() as fake:
        fake.add_service("orders")
        yield fake


def _kong_app(make_app: AppFactory, kong: FakeKong, webhook: WebhookReceiver) -> Clampdown:
    webhook.default = Reply(400)
    targets = {"edge": {"type": "kong", "admin_url": kong.url}}
    return make_app(_playbook(KONG_THEN_FAIL), webhook=webhook, targets=targets)


def test_a_rollback_undo_is_retried_on_a_transient_error(
    make_app: AppFactory, kong: FakeKong, webhook: WebhookReceiver
) -> None:
    app = _kong_app(make_app, kong, webhook)
    kong.fail_next("DELETE", status=503)
    rem = _run(app)
    assert rem["state"] == "failed"
    assert [s["state"] for s in rem["steps"]] == ["undone", "failed"]
    assert kong.plugins("ip-restriction", service="orders") == []
    assert any(h["reason"].startswith("rollback: ") for h in rem["history"])


def test_a_rollback_undo_that_fails_is_reported(
    make_app: AppFactory, kong: FakeKong, webhook: WebhookReceiver
) -> None:
    app = _kong_app(make_app, kong, webhook)
    kong.fail_next("DELETE", status=403, times=20, message="no permission")
    rem = _run(app)
    assert rem["state"] == "failed"
    block = rem["steps"][0]
    assert block["state"] == "succeeded"
    assert block["error"].startswith("rollback undo failed: ")
    assert rem["history"][-1]["reason"].endswith(
        "answered 400: ok; could not undo block: still in force, check the target"
    )
