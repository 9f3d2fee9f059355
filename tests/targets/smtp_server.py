"""A real SMTP server (aiosmtpd) for the smtp target's tests: STARTTLS and AUTH.

The server runs in aiosmtpd's own thread on 127.0.0.1. Its certificate, for `127.0.0.1` and
`localhost`, is issued by a throwaway CA (trustme); `ca_file` is that CA's PEM for clients to
trust. Every command is recorded with whether TLS was on when it arrived, so a test can tell
that no credentials travelled before STARTTLS. Replies can be scripted per command.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "clampdown"
PASSWORD = "s3cr:t/with&odd=chars"


@dataclass(frozen=True)
class Delivered:
    """One accepted message: envelope, raw content, and how the session was secured."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None
    tls: bool

    def parsed(self) -> EmailMessage:
        """The message as a mail reader sees it."""
        message = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(message, EmailMessage)
        return message


@dataclass(frozen=True)
class _Fault:
    reply: str | None
    delay: float


class _Recording(SMTP):
    """aiosmtpd's SMTP, noting each command and whether TLS was on when it came."""

    def __init__(self, server: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server = server
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._recorded(name, method)

    def _recorded(
        self, name: str, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(method)
        async def call(arg: str) -> None:
            self._server._note(name, self._tls_protocol is not None)
            await method(arg)

        return call


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := await self._server._fault("MAIL"):
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refused = self._server.refused.get(address)
        if refused or (refused := await self._server._fault("RCPT")):
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := await self._server._fault("DATA"):
            return reply
        assert isinstance(envelope.content, bytes)
        assert envelope.mail_from is not None
        login = session.auth_data.login.decode() if session.authenticated else None
        self._server._deliver(
            Delivered(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                login=login,
                tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 OK: queued"


class SmtpServer:
    """An SMTP submission server on 127.0.0.1 that requires STARTTLS before anything else.

    `names`: the names the server's certificate is issued for.
    `starttls=False`: no TLS offered at all, and AUTH accepted in plaintext (so a client that
    would send credentials without TLS is caught sending them).
    """

    def __init__(
        self,
        directory: Path,
        *,
        user: str = USER,
        password: str = PASSWORD,
        starttls: bool = True,
        hostname: str = "127.0.0.1",
        names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.ca = trustme.CA()
        self.ca_file = directory / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.host = hostname
        self.port = _free_port()
        self.lock = threading.Lock()
        self.delivered: list[Delivered] = []
        self.commands: list[tuple[str, bool]] = []
        self.refused: dict[str, str] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._user, self._password = user.encode(), password.encode()
        tls: ssl.SSLContext | None = None
        if starttls:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(*names).configure_cert(tls)
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname=hostname,
            port=self.port,
            server_hostname="mail.test",
            tls_context=tls,
            require_starttls=starttls,
            auth_require_tls=starttls,
            authenticator=self._authenticate,
        )

    @contextmanager
    def running(self) -> Iterator[SmtpServer]:
        """Serve until the block ends."""
        self._controller.start()
        try:
            yield self
        finally:
            self._controller.stop()

    def fail_next(self, command: str, reply: str | None, *, delay: float = 0.0) -> None:
        """Answer the next MAIL, RCPT or DATA with `reply` (None: accept), after `delay` s."""
        with self.lock:
            self._faults.setdefault(command, []).append(_Fault(reply, delay))

    def verbs(self) -> list[str]:
        """The commands received so far, in order."""
        with self.lock:
            return [name for name, _ in self.commands]

    def messages(self) -> list[Delivered]:
        """The messages accepted so far."""
        with self.lock:
            return list(self.delivered)

    def _note(self, command: str, tls: bool) -> None:
        with self.lock:
            self.commands.append((command, tls))

    def _deliver(self, delivered: Delivered) -> None:
        with self.lock:
            self.delivered.append(delivered)

    async def _fault(self, command: str) -> str | None:
        with self.lock:
            queued = self._faults.get(command)
            fault = queued.pop(0) if queued else None
        if fault is None:
            return None
        await asyncio.sleep(fault.delay)
        return fault.reply

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == self._user
            and data.password == self._password
        )
        # handled=False: aiosmtpd answers the failure itself (535).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class _Controller(Controller):
    def __init__(self, server: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._server = server

    def factory(self) -> SMTP:
        return _Recording(self._server, self.handler, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
