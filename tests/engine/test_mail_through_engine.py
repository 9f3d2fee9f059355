"""notify.send to an smtp target through the engine: one mail over a real SMTP server, with the
finding's facts, and never a second one after a crash between sending and recording."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clampdown.actions.contract import Briefing
from clampdown.messages.model import compose
from clampdown.services import Clampdown
from clampdown.store import remediations
from clampdown.targets.settings import SmtpTarget
from clampdown.targets.smtp import SmtpDriver
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.engine.test_recovery import die_mid_call, lapsed
from tests.targets.smtp_server import PASSWORD, USER, SmtpServer

IP = "203.0.113.21"
TELL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: mail-soc}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: tell
      uses: notify.send
      with: {target: mail, title: "Suspicious access", text: "Access from ${{ finding.ip }}"}
"""


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path).running() as running:
        yield running


def _target(server: SmtpServer) -> dict[str, Any]:
    return {
        "type": "smtp",
        "host": server.host,
        "port": server.port,
        "username": USER,
        "password": {"env": "SMTP_PASSWORD"},
        "sender": "clampdown@example.com",
        "to": ["soc@example.com"],
        "ca_file": str(server.ca_file),
        "timeout": 3,
    }


def _app(make_app: AppFactory, server: SmtpServer) -> Clampdown:
    return make_app(TELL, targets={"mail": _target(server)})


def test_one_mail_with_the_finding_facts_is_delivered(
    make_app: AppFactory, server: SmtpServer
) -> None:
    app = _app(make_app, server)
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    [step] = rem["steps"]
    message_id = f"<{step['idempotency_key']}@clampdown>"
    assert step["result"]["output"] == {"message_id": message_id, "recipients": 1}
    assert step["result"]["summary"] == "sent to mail"
    [delivered] = server.messages()
    assert (delivered.tls, delivered.login, delivered.rcpt_tos) == (True, USER, ["soc@example.com"])
    mail = delivered.parsed()
    assert mail["Subject"] == "[Clampdown] Suspicious access"
    assert mail["Message-ID"] == message_id
    assert mail["X-Clampdown-Remediation"] == rid
    plain, rich = mail.iter_parts()
    text = plain.get_content()
    assert f"Access from {IP}" in text
    assert f"Client IP: {IP}" in text
    assert "Type: API_AccessFromSuspiciousIP" in text
    assert f"Remediation {rid} (mail-soc)" in text
    assert f'<th align="left" valign="top">Client IP</th><td>{IP}</td>' in rich.get_content()
    assert PASSWORD not in json.dumps(rem, default=str)


def test_a_crash_between_sending_and_recording_sends_no_second_mail(
    make_app: AppFactory, server: SmtpServer
) -> None:
    app = _app(make_app, server)
    rid = app.ingest(suspicious_ip_alert(2, IP))[0].remediations[0].remediation_id
    # The worker committed the step as running, sent the mail, and died before recording it.
    die_mid_call(app, rid, "tell", owner="elsewhere:1:dead", lease_until=lapsed())
    with app.db.write() as conn:
        params = {"target": "mail", "title": "Suspicious access", "text": f"Access from {IP}"}
        assert remediations.update_step(
            conn, rid, "tell", expect_state="running", params={**params, "data": {}}
        )
        step = remediations.get_step(conn, rid, "tell")
    assert step is not None
    asyncio.run(_send_directly(server, step["idempotency_key"]))
    assert len(server.messages()) == 1

    drain(app)
    assert len(server.messages()) == 1
    rem = app.get_remediation(rid)
    [failed] = rem["steps"]
    assert (failed["state"], failed["attempts"]) == ("failed", 1)
    assert "may or may not have reached the target" in failed["error"]
    assert "not idempotent" in failed["error"]
    assert rem["state"] == "failed"
    # The one mail carries the step's key, so a receiving system could tell a repeat.
    [delivered] = server.messages()
    assert delivered.parsed()["Message-ID"] == f"<{step['idempotency_key']}@clampdown>"


async def _send_directly(server: SmtpServer, key: str) -> None:
    settings = SmtpTarget.model_validate(_target(server))
    briefing = Briefing(remediation_id="r", playbook="mail-soc", state="running", finding={})
    driver = SmtpDriver("mail", settings, http=None)  # type: ignore[arg-type]
    await driver.send(compose("Suspicious access", f"Access from {IP}", briefing), key=key)
