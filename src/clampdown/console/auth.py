"""Console sessions: signed cookies naming an API token, CSRF tokens, and same-origin checks.

A session cookie holds the token's name, a binding to the token's secret, a random session
id and an expiry, signed with HMAC-SHA256. Nothing is kept on the server: every request
looks the named token up in the config again, so a token removed from the config (or given a
new secret) ends its sessions, and a token's scopes count as they are now, not at login.
Each form carries a CSRF token, an HMAC of the session id; the login form, which comes
before any session, carries one derived from a short-lived nonce cookie instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from clampdown.config import ConsoleConfig, Scope, TokenConfig
from clampdown.errors import ConfigError

SESSION_COOKIE = "clampdown_session"
LOGIN_COOKIE = "clampdown_login"
FLASH_COOKIE = "clampdown_flash"
COOKIE_PATH = "/console"
LOGIN_FORM_TTL = timedelta(hours=1)
FLASH_TTL = timedelta(minutes=5)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 over small JSON claims; each use has its own purpose, so a value signed
    for one (a flash message) is worthless as another (a session)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, text: str) -> str:
        """A keyed digest of `text` for `purpose`."""
        message = f"{purpose}\x1f{text}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, purpose: str, claims: dict[str, Any]) -> str:
        """`claims` as a cookie value: base64url JSON, a dot, the MAC."""
        body = _b64(orjson.dumps(claims))
        return f"{body}.{self.mac(purpose, body)}"

    def read(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The claims of a value signed for `purpose`; None when absent, forged or damaged."""
        if not value:
            return None
        body, _, signature = value.partition(".")
        if not hmac.compare_digest(signature.encode(), self.mac(purpose, body).encode()):
            return None
        try:
            claims = orjson.loads(_unb64(body))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None


@dataclass(frozen=True)
class Session:
    """A signed-in person, as the token they signed in with allows now."""

    token: TokenConfig
    session_id: str
    expires_at: datetime
    csrf: str

    @property
    def actor(self) -> str:
        """How what they do is recorded."""
        return f"console:{self.token.name}"

    @property
    def can_approve(self) -> bool:
        """Whether they may act (approve, reject, undo, extend, tick tasks)."""
        return self.token.allows(Scope.APPROVE)


class Sessions:
    """Issues and reads session cookies, CSRF tokens and flash messages."""

    def __init__(self, key: bytes, ttl: timedelta) -> None:
        self.signer = Signer(key)
        self.ttl = ttl

    @classmethod
    def from_config(cls, config: ConsoleConfig) -> Sessions:
        """Keys from `console.session_secret`, or random ones for this process only."""
        if config.session_secret is None:
            key = secrets.token_bytes(32)
        else:
            secret = config.session_secret.resolve()
            if len(secret) < 16:
                raise ConfigError("console.session_secret: use at least 16 characters")
            key = secret.encode()
        return cls(key, timedelta(hours=config.session_hours))

    # -- sessions ----------------------------------------------------------------------

    def issue(self, token: TokenConfig, *, now: datetime | None = None) -> tuple[str, datetime]:
        """A session cookie for `token`, and when it expires."""
        expires = (now or datetime.now(UTC)) + self.ttl
        claims = {
            "n": token.name,
            "b": self._binding(token.digest()),
            "s": secrets.token_urlsafe(16),
            "e": int(expires.timestamp()),
        }
        return self.signer.sign("session", claims), expires

    def resume(
        self, value: str | None, tokens: list[TokenConfig], *, now: datetime | None = None
    ) -> Session | None:
        """The session a cookie holds, if it is genuine, unexpired, and its token still
        exists with the same secret and a scope that opens the console."""
        claims = self.signer.read("session", value)
        if claims is None:
            return None
        try:
            name, binding, sid = str(claims["n"]), str(claims["b"]), str(claims["s"])
            expires = datetime.fromtimestamp(int(claims["e"]), UTC)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            return None
        if expires <= (now or datetime.now(UTC)):
            return None
        for token in tokens:
            if token.name == name and self._bound(token, binding):
                if not may_open(token):
                    return None
                return Session(token, sid, expires, self.csrf_token(sid))
        return None

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of every form of one session."""
        return self.signer.mac("csrf", session_id)

    def _binding(self, digest: str) -> str:
        return self.signer.mac("token", digest)[:22]

    def _bound(self, token: TokenConfig, binding: str) -> bool:
        try:
            digest = token.digest()
        except ConfigError:
            return False  # its secret cannot be read any more: no session either
        return hmac.compare_digest(self._binding(digest).encode(), binding.encode())

    # -- the login form ----------------------------------------------------------------

    def login_form(self, *, now: datetime | None = None) -> tuple[str, str]:
        """A nonce cookie for the login form, and the CSRF token the form must send back."""
        nonce = secrets.token_urlsafe(16)
        expires = int(((now or datetime.now(UTC)) + LOGIN_FORM_TTL).timestamp())
        cookie = self.signer.sign("login", {"n": nonce, "e": expires})
        return cookie, self.signer.mac("login-csrf", nonce)

    def login_form_valid(
        self, cookie: str | None, presented: str, *, now: datetime | None = None
    ) -> bool:
        """Whether a login POST comes from a login form this server gave out recently."""
        claims = self.signer.read("login", cookie)
        if claims is None or not presented:
            return False
        try:
            expired = int(claims["e"]) <= int((now or datetime.now(UTC)).timestamp())
            expected = self.signer.mac("login-csrf", str(claims["n"]))
        except (KeyError, TypeError, ValueError):
            return False
        return not expired and hmac.compare_digest(expected.encode(), presented.encode())

    # -- flash messages ----------------------------------------------------------------

    def flash(self, kind: str, message: str, *, now: datetime | None = None) -> str:
        """A cookie value carrying a message to show on the next page."""
        expires = int(((now or datetime.now(UTC)) + FLASH_TTL).timestamp())
        return self.signer.sign("flash", {"k": kind, "m": message[:500], "e": expires})

    def read_flash(self, value: str | None) -> tuple[str, str] | None:
        """(kind, message) of a flash cookie, if genuine and recent."""
        claims = self.signer.read("flash", value)
        if claims is None:
            return None
        try:
            if int(claims["e"]) <= int(datetime.now(UTC).timestamp()):
                return None
            kind = "error" if claims["k"] == "error" else "ok"
            return kind, str(claims["m"])
        except (KeyError, TypeError, ValueError):
            return None


def may_open(token: TokenConfig) -> bool:
    """Whether a token opens the console: read to look, or approve (which must see what it
    approves, as the signed links do)."""
    return token.allows(Scope.READ) or token.allows(Scope.APPROVE)


def csrf_matches(session: Session, presented: str) -> bool:
    """Constant-time comparison of a form's CSRF token with the session's."""
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), presented.encode())


def same_origin(headers: Mapping[str, str]) -> bool:
    """False when Origin (or, without it, Referer) names another host than this request's.

    Hosts are compared, not schemes: behind a proxy that terminates TLS the browser's origin
    is https while the request reaching Clampdown is plain http.
    """
    host = str(headers.get("host", "")).lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = headers.get("referer")
    if referer:
        return urlsplit(referer).netloc.lower() == host
    return True


def safe_next(value: str | None, default: str = "/console/") -> str:
    """A console path to return to; anything else (another site, odd characters) is the
    default, so that the login and action redirects cannot be turned into open redirects."""
    if not value or not (value == COOKIE_PATH or value.startswith(COOKIE_PATH + "/")):
        return default
    if "//" in value or "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return default
    return value
