"""The smtp target against a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clampdown.actions.contract import Briefing
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.messages.mail import html, subject
from clampdown.messages.model import Message, compose
from clampdown.secrets import SecretRef
from clampdown.sources import normalize
from clampdown.targets.settings import SmtpTarget
from clampdown.targets.smtp import SmtpDriver
from tests.conftest import FIXTURES
from tests.targets.smtp_server import PASSWORD, USER, SmtpServer, _free_port

SENDER = "Clampdown <clampdown@example.com>"
TO = ["soc@example.com", "oncall@example.com"]
KEY = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-1"


class _NoHttp:
    """The smtp driver makes no HTTP calls."""

    async def post_json(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no HTTP expected")

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no HTTP expected")


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    return PASSWORD


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path).running() as running:
        yield running


def _driver(server: SmtpServer, **changes: Any) -> SmtpDriver:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": USER,
        "password": SecretRef(env="SMTP_PASSWORD"),
        "sender": SENDER,
        "to": TO,
        "ca_file": server.ca_file,
        "timeout": 3,
        **changes,
    }
    return SmtpDriver("mail", SmtpTarget(**fields), _NoHttp())


def _message() -> Message:
    payload = json.loads((FIXTURES / "securityalert-row-useragent.json").read_text())
    [finding] = normalize(payload, "securityalert")
    briefing = Briefing(
        remediation_id="0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        playbook="block-ua",
        state="running",
        finding=finding.expression_view(),
        done=("Blocked 192.0.2.45",),
        links={"undo": "https://clampdown.example/undo?t=a&s=b"},
    )
    return compose("", "Blocked the client.", briefing)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n")


async def test_delivers_both_parts_over_starttls_after_login(server: SmtpServer) -> None:
    message = _message()
    sent = await _driver(server).send(message, key=KEY)
    assert sent == {"message_id": f"<{KEY}@clampdown>", "recipients": 2}
    [delivered] = server.messages()
    assert delivered.mail_from == "clampdown@example.com"
    assert delivered.rcpt_tos == TO
    assert delivered.tls
    assert delivered.login == USER
    mail = delivered.parsed()
    assert mail["Subject"] == subject(message)
    assert mail["From"] == SENDER
    assert mail["To"] == ", ".join(TO)
    assert mail["Message-ID"] == sent["message_id"]
    assert mail["X-Clampdown-Remediation"] == message.remediation_id
    assert mail.get_content_type() == "multipart/alternative"
    plain, rich = mail.iter_parts()
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert _lines(plain.get_content()) == message.plain()
    assert _lines(rich.get_content()) == html(message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rich.get_content()
    # Nothing but EHLO and STARTTLS before TLS; the credentials only inside it.
    assert server.verbs() == [
        "EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "DATA", "QUIT",
    ]  # fmt: skip
    assert [tls for _, tls in server.commands[:2]] == [False, False]
    assert all(tls for _, tls in server.commands[2:])


async def test_wrong_password_is_a_precondition_error_that_does_not_show_it(
    server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-wrong")
    with pytest.raises(PreconditionError) as caught:
        await _driver(server).send(_message(), key=KEY)
    text = str(caught.value)
    assert "535" in text
    assert "check username and password" in text
    assert "hunter2-wrong" not in text
    assert "hunter2-wrong" not in repr(caught.value.__cause__)
    assert server.messages() == []
    assert "MAIL" not in server.verbs()


async def test_451_on_data_is_transient_and_not_delivered(server: SmtpServer) -> None:
    server.fail_next("DATA", "451 4.3.0 Mail server temporarily rejected message")
    with pytest.raises(TransientError) as caught:
        await _driver(server).send(_message(), key=KEY)
    assert "451 4.3.0 Mail server temporarily rejected message" in str(caught.value)
    assert not caught.value.maybe_delivered
    assert server.messages() == []


async def test_550_on_rcpt_is_permanent_with_the_servers_reply(server: SmtpServer) -> None:
    reply = "550 5.1.1 <soc@example.com>: Recipient address rejected: User unknown"
    server.refused["soc@example.com"] = reply
    with pytest.raises(PermanentError) as caught:
        await _driver(server, to=["soc@example.com"]).send(_message(), key=KEY)
    assert "soc@example.com: " + reply in str(caught.value)
    assert server.messages() == []
    assert "DATA" not in server.verbs()


async def test_one_refused_recipient_of_two_still_delivers_to_the_other(
    server: SmtpServer,
) -> None:
    server.refused["soc@example.com"] = "550 5.1.1 User unknown"
    sent = await _driver(server).send(_message(), key=KEY)
    assert sent["recipients"] == 1
    assert sent["refused"] == {"soc@example.com": "550 5.1.1 User unknown"}
    [delivered] = server.messages()
    assert delivered.rcpt_tos == ["oncall@example.com"]


async def test_4xx_on_every_recipient_is_transient(server: SmtpServer) -> None:
    server.fail_next("RCPT", "450 4.2.1 Mailbox busy")
    server.fail_next("RCPT", "550 5.1.1 User unknown")
    with pytest.raises(TransientError) as caught:
        await _driver(server).send(_message(), key=KEY)
    assert "450 4.2.1 Mailbox busy" in str(caught.value)
    assert not caught.value.maybe_delivered


async def test_552_on_data_is_permanent(server: SmtpServer) -> None:
    server.fail_next("DATA", "552 5.3.4 Message size exceeds fixed limit")
    with pytest.raises(PermanentError, match=r"552 5\.3\.4 Message size exceeds fixed limit"):
        await _driver(server).send(_message(), key=KEY)


async def test_no_starttls_offered_is_refused_before_any_credential(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, starttls=False).running() as plain:
        with pytest.raises(PreconditionError, match="does not offer STARTTLS"):
            await _driver(plain).send(_message(), key=KEY)
        assert plain.verbs() == ["EHLO"]
        assert plain.messages() == []


async def test_credentials_without_tls_are_refused_before_connecting(server: SmtpServer) -> None:
    with pytest.raises(PreconditionError, match="refusing to send credentials without TLS"):
        await _driver(server, starttls=False).send(_message(), key=KEY)
    assert server.verbs() == []


async def test_an_untrusted_certificate_is_a_clear_error(server: SmtpServer) -> None:
    with pytest.raises(PreconditionError) as caught:
        await _driver(server, ca_file=None).send(_message(), key=KEY)
    text = str(caught.value)
    assert "certificate is not trusted" in text
    assert "ca_file" in text
    assert "AUTH" not in server.verbs()
    assert server.messages() == []


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, names=("mail.example.com",)).running() as other:
        with pytest.raises(PreconditionError, match="certificate is not trusted") as caught:
            await _driver(other).send(_message(), key=KEY)
        assert "mismatch" in str(caught.value)
        assert "AUTH" not in other.verbs()


async def test_a_missing_ca_file_is_a_precondition_error(
    server: SmtpServer, tmp_path: Path
) -> None:
    with pytest.raises(PreconditionError, match="cannot load ca_file"):
        await _driver(server, ca_file=tmp_path / "missing.pem").send(_message(), key=KEY)


async def test_connection_refused_is_transient_and_not_delivered(server: SmtpServer) -> None:
    with pytest.raises(TransientError, match="cannot connect") as caught:
        await _driver(server, port=_free_port()).send(_message(), key=KEY)
    assert not caught.value.maybe_delivered


async def test_no_answer_before_data_is_not_delivered(server: SmtpServer) -> None:
    server.fail_next("RCPT", None, delay=2)
    with pytest.raises(TransientError) as caught:
        await _driver(server, timeout=0.5).send(_message(), key=KEY)
    assert not caught.value.maybe_delivered


async def test_no_answer_after_data_may_have_been_delivered(server: SmtpServer) -> None:
    server.fail_next("DATA", None, delay=2)
    with pytest.raises(TransientError, match="may have been delivered") as caught:
        await _driver(server, timeout=0.5).send(_message(), key=KEY)
    assert caught.value.maybe_delivered


async def test_check_logs_in_and_sends_nothing(server: SmtpServer) -> None:
    checks = await _driver(server).check()
    assert [(c.name, c.ok) for c in checks] == [
        ("connect", True),
        ("starttls", True),
        ("login", True),
    ]
    assert "certificate of 127.0.0.1 verified" in checks[1].detail
    assert server.verbs() == ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]
    assert server.messages() == []


async def test_check_reports_the_failing_step_without_the_password(
    server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-wrong")
    checks = await _driver(server).check()
    assert [(c.name, c.ok) for c in checks] == [
        ("connect", True),
        ("starttls", True),
        ("login", False),
    ]
    assert "535" in checks[-1].detail
    assert "hunter2-wrong" not in checks[-1].detail
    assert "MAIL" not in server.verbs()


async def test_without_username_no_login_is_attempted(server: SmtpServer) -> None:
    checks = await _driver(server, username=None, password=None).check()
    assert [c.name for c in checks] == ["connect", "starttls"]
    assert "AUTH" not in server.verbs()
