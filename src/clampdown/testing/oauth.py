"""A fake OAuth 2.0 token revocation endpoint (RFC 7009) with client authentication (RFC 6749)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote_plus

import orjson
from aiohttp import web

from clampdown.testing.server import FakeServer, Fault

TokenType = Literal["access_token", "refresh_token"]
AuthMethod = Literal["basic", "post", "either"]


@dataclass
class RevocationRequest:
    """One request the server received, with how the client authenticated and the answer."""

    path: str
    headers: dict[str, str]
    form: dict[str, str]
    auth: Literal["basic", "post", "none"]
    status: int = 0


@dataclass
class Token:
    """A token the server issued: its type, its refresh token if any, and whether it is revoked."""

    value: str
    type: TokenType
    refresh: str | None = None
    revoked: bool = False


@dataclass
class _Reply:
    status: int
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeRevocationServer(FakeServer):
    """A revocation endpoint for one confidential client.

    `auth` is the client authentication it accepts: HTTP Basic (`client_secret_basic`), form
    fields (`client_secret_post`) or either. `supported` lists the token types it can revoke;
    a hint or token of another type is refused with `unsupported_token_type`.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        auth: AuthMethod = "basic",
        *,
        path: str = "/revoke",
        supported: Iterable[str] = ("access_token", "refresh_token"),
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth = auth
        self.path = path
        self.supported = set(supported)
        self.requests: list[RevocationRequest] = []
        self.tokens: dict[str, Token] = {}
        self.revoked: list[str] = []

    @property
    def revocation_url(self) -> str:
        """The full URL of the revocation endpoint."""
        return self.url + self.path

    def issue(
        self, token: str, type: TokenType = "access_token", refresh: str | None = None
    ) -> None:
        """Make `token` known and active; an access token may name its refresh token."""
        with self.lock:
            self.tokens[token] = Token(token, type, refresh)

    def is_active(self, token: str) -> bool:
        """Whether `token` was issued and not revoked."""
        with self.lock:
            known = self.tokens.get(token)
            return known is not None and not known.revoked

    def fail_next(
        self,
        status: int = 503,
        retry_after: int | str | None = None,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (and Retry-After); nothing is revoked."""
        if error is None:
            error = {429: "slow_down", 500: "server_error"}.get(status, "temporarily_unavailable")
        self._add_fault(Fault(status, retry_after=retry_after, times=times, code=error))

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        authorization = request.headers.get("Authorization", "")
        used: Literal["basic", "post", "none"] = "none"
        if authorization:
            used = "basic"
        elif "client_secret" in form:
            used = "post"
        entry = RevocationRequest(request.path, dict(request.headers), form, used)
        with self.lock:
            self.requests.append(entry)
            reply = self._fault()
            if reply is None:
                reply = self._revoke(request, pairs, form, authorization)
            entry.status = reply.status
        if reply.error is None:
            return web.Response(status=reply.status, headers=reply.headers)
        headers = {
            **reply.headers,
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
        }
        body = orjson.dumps({"error": reply.error})
        return web.Response(status=reply.status, headers=headers, body=body)

    def _fault(self) -> _Reply | None:
        fault = self._take_fault("", "")
        if fault is None:
            return None
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return _Reply(fault.status, fault.code, headers)

    def _revoke(
        self,
        request: web.Request,
        pairs: list[tuple[str, str]],
        form: dict[str, str],
        authorization: str,
    ) -> _Reply:
        if request.content_type != "application/x-www-form-urlencoded":
            return _Reply(400, "invalid_request")
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):
            return _Reply(400, "invalid_request")
        if authorization and "client_secret" in form:
            return _Reply(400, "invalid_request")
        rejected = self._authenticate(form, authorization)
        if rejected is not None:
            return rejected
        token = form.get("token")
        if not token:
            return _Reply(400, "invalid_request")
        hint = form.get("token_type_hint")
        if hint is not None and hint not in self.supported:
            return _Reply(400, "unsupported_token_type")
        known = self.tokens.get(token)
        if known is None:
            return _Reply(200)
        if known.type not in self.supported:
            return _Reply(400, "unsupported_token_type")
        for other in self.tokens.values():
            linked = known.type == "refresh_token" and other.refresh == token
            if (other is known or linked) and not other.revoked:
                other.revoked = True
                self.revoked.append(other.value)
        return _Reply(200)

    def _authenticate(self, form: dict[str, str], authorization: str) -> _Reply | None:
        """None if the client authenticated as configured, else the 401 to answer."""
        basic_challenge = {"WWW-Authenticate": "Basic"}
        if authorization:
            challenge = basic_challenge
            scheme, _, encoded = authorization.partition(" ")
            if self.auth == "post" or scheme.lower() != "basic":
                return _Reply(401, "invalid_client", challenge)
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _Reply(401, "invalid_client", challenge)
            client_id, sep, secret = decoded.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            if not sep or form.get("client_id", client_id) != client_id:
                return _Reply(401, "invalid_client", challenge)
        elif "client_secret" in form:
            if self.auth == "basic":
                return _Reply(401, "invalid_client")
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            return _Reply(401, "invalid_client", basic_challenge if self.auth != "post" else {})
        if client_id != self.client_id or secret != self.client_secret:
            return _Reply(401, "invalid_client", basic_challenge if authorization else {})
        return None
