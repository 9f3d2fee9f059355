"""The `smtp` target: email over SMTP submission, with STARTTLS and authentication.

With `starttls: true` (the default) nothing but EHLO and STARTTLS is said before TLS is up:
a server that does not offer STARTTLS is refused, and so is a certificate that does not
verify (system CAs, or `ca_file`). Credentials are never sent over plaintext. Email is not
idempotent: a failure is `maybe_delivered` only once the DATA phase has begun.
"""

from __future__ import annotations

import asyncio
import ssl
from contextlib import suppress
from typing import Any, ClassVar

import aiosmtplib

from clampdown.errors import ActionError, PermanentError, PreconditionError, TransientError
from clampdown.messages.mail import render_mail
from clampdown.messages.model import Message
from clampdown.targets.driver import Check, Driver
from clampdown.targets.settings import SmtpTarget, require_secret

_QUIT_GRACE = 0.5
"""Seconds a QUIT may take past the deadline: the engine's own limit is `timeout` + 1."""


class _Exchange:
    """Where a session stands: which step an error belongs to."""

    def __init__(self) -> None:
        self.stage = "connect"
        self.checks: list[Check] = []

    def passed(self, detail: str) -> None:
        self.checks.append(Check(self.stage, True, detail))


class SmtpDriver(Driver):
    """Sends messages as email through one SMTP submission server."""

    type: ClassVar[str] = "smtp"
    settings: SmtpTarget
    _tls: ssl.SSLContext | None = None

    async def send(self, message: Message, *, key: str) -> dict[str, Any]:
        settings = self.settings
        mail = render_mail(message, sender=settings.sender, to=settings.to, key=key)
        exchange = _Exchange()
        refused = await self._session(exchange, mail.as_bytes())
        sent: dict[str, Any] = {
            "message_id": str(mail["Message-ID"]),
            "recipients": len(settings.to) - len(refused),
        }
        if refused:
            sent["refused"] = refused
        return sent

    async def check(self) -> list[Check]:
        exchange = _Exchange()
        try:
            await self._session(exchange, None)
        except ActionError as exc:
            return [*exchange.checks, Check(exchange.stage, False, str(exc))]
        return exchange.checks

    async def _session(self, exchange: _Exchange, content: bytes | None) -> dict[str, str]:
        """Connect, secure, log in, then send `content` (None: nothing); returns refusals."""
        settings = self.settings
        password = self._password()
        deadline = asyncio.get_running_loop().time() + self.timeout
        tls = await self._tls_context() if settings.starttls else None
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            # The whole exchange is bounded by `deadline` below; this is a backstop.
            timeout=self.timeout + 1,
            start_tls=False,  # done below, so that a server without it is refused
            tls_context=tls,
        )
        try:
            async with asyncio.timeout_at(deadline):
                await self._open(smtp, exchange, password)
                refused = {} if content is None else await self._transfer(smtp, exchange, content)
        except BaseException as exc:
            if isinstance(smtp.transport, asyncio.WriteTransport):
                smtp.transport.abort()  # a broken session owes the server no TLS goodbye
            smtp.close()
            error = (
                self._error(exc, exchange.stage, password) if isinstance(exc, Exception) else None
            )
            if error is None:
                raise
            echoed = bool(password) and password in str(exc)
            raise error from (None if echoed else exc)
        exchange.stage = "quit"
        try:
            # The message is with the server: a QUIT that fails or hangs changes nothing.
            with suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                async with asyncio.timeout_at(deadline + _QUIT_GRACE):
                    await smtp.quit()
        finally:
            smtp.close()
        return refused

    async def _open(self, smtp: aiosmtplib.SMTP, exchange: _Exchange, password: str) -> None:
        settings = self.settings
        banner = await smtp.connect()
        await smtp.ehlo()
        exchange.passed(f"{settings.host}:{settings.port} answered {banner.code}")
        if settings.starttls:
            exchange.stage = "starttls"
            if not smtp.supports_extension("starttls"):
                raise PreconditionError(
                    f"{self._where}: the server does not offer STARTTLS; refusing to go on "
                    "without TLS"
                )
            await smtp.starttls()
            await smtp.ehlo()
            version = smtp.get_transport_info("ssl_object").version()
            exchange.passed(f"{version}, certificate of {settings.host} verified")
        if settings.username is not None:
            exchange.stage = "login"
            await smtp.login(settings.username, password)
            exchange.passed(f"logged in as {settings.username}")

    async def _transfer(
        self, smtp: aiosmtplib.SMTP, exchange: _Exchange, content: bytes
    ) -> dict[str, str]:
        settings = self.settings
        exchange.stage = "envelope"
        await smtp.mail(settings.sender)
        refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
        for recipient in settings.to:
            try:
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[recipient] = exc
        if len(refused) == len(settings.to):
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))
        if not smtp.is_connected:  # a 421 to a RCPT closes the session before DATA
            raise aiosmtplib.SMTPServerDisconnected("closed by the server before DATA")
        # From here on the server may have the message, whatever happens to the answer.
        exchange.stage = "data"
        await smtp.data(content)
        return {rcpt: f"{exc.code} {exc.message}" for rcpt, exc in refused.items()}

    def _password(self) -> str:
        settings = self.settings
        if settings.username is None:
            return ""
        if settings.password is None:
            raise PreconditionError(f"target {self.name}: username is set but password is not")
        if not settings.starttls:
            raise PreconditionError(
                f"target {self.name}: refusing to send credentials without TLS "
                "(set starttls: true, or remove username and password)"
            )
        return require_secret(settings.password, f"target {self.name} password")

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ca_file = self.settings.ca_file
            try:
                # Certificate and host name verification are on: the default context's.
                self._tls = await asyncio.to_thread(
                    ssl.create_default_context, cafile=str(ca_file) if ca_file else None
                )
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise PreconditionError(
                    f"target {self.name}: cannot load ca_file {ca_file}: {reason}"
                ) from exc
        return self._tls

    def _error(self, exc: Exception, stage: str, password: str) -> ActionError | None:
        """The Clampdown error for a failure at `stage`; None for one we do not know."""
        error = self._classify(exc, stage)
        if error is None or not password or password not in str(error):
            return error
        # A server that echoes what it was sent must not put the password in an error.
        text = str(error).replace(password, "***")
        if isinstance(error, TransientError):
            return TransientError(
                text, retry_after=error.retry_after, maybe_delivered=error.maybe_delivered
            )
        return type(error)(text)

    @property
    def _where(self) -> str:
        return f"target {self.name} ({self.settings.host}:{self.settings.port})"

    def _classify(self, exc: Exception, stage: str) -> ActionError | None:
        where = self._where
        sent = stage == "data"
        if isinstance(exc, ActionError):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PreconditionError(
                f"{where}: the server's certificate is not trusted ({exc.verify_message}); "
                "give the CA that issued it as ca_file"
            )
        if isinstance(exc, ssl.SSLError):
            return PreconditionError(f"{where}: TLS handshake failed: {exc.reason or exc}")
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            replies = [(r.code, f"{r.recipient}: {r.code} {r.message}") for r in exc.recipients]
            text = f"{where}: every recipient refused: " + "; ".join(t for _, t in replies)
            if any(code < 500 for code, _ in replies):
                return TransientError(text)
            return PermanentError(text)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return self._reply_error(where, stage, exc.code, exc.message)
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError):
            return TransientError(f"{where}: cannot connect: {exc.message}")
        if isinstance(exc, TimeoutError | OSError):  # OSError: the connection was lost
            what = (
                f"no answer within {self.timeout:g}s"
                if isinstance(exc, TimeoutError)
                else f"connection lost ({str(exc) or type(exc).__name__})"
            )
            if sent:
                return TransientError(
                    f"{where}: {what} once the message was being sent; it may have been delivered",
                    maybe_delivered=True,
                )
            return TransientError(f"{where}: {what} during {stage}")
        if isinstance(exc, aiosmtplib.SMTPException):
            if stage == "login":
                return PreconditionError(f"{where}: cannot log in: {exc.message}")
            return PermanentError(f"{where}: {stage} failed: {exc.message}")
        if isinstance(exc, ValueError) and stage == "envelope":
            return PreconditionError(f"{where}: an address cannot be sent: {exc}")
        return None

    def _reply_error(self, where: str, stage: str, code: int, text: str) -> ActionError:
        message = f"{where}: the server answered {code} {text.strip()} during {stage}"
        if stage == "login" and code >= 500:
            return PreconditionError(message + " (check username and password)")
        if code < 500:
            # An explicit refusal, also after DATA: the server did not take the message.
            return TransientError(message)
        if stage in ("connect", "starttls"):
            return PreconditionError(message)
        return PermanentError(message)
