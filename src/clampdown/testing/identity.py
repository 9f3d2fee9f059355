"""The Microsoft identity platform token endpoint, shared by `FakeArm` and `FakeGraph`.

`POST /{tenant}/oauth2/v2.0/token` with client credentials, answering tokens or the
platform's `AADSTS` error bodies; `fail_next` faults reach it only through a `path_contains`
it contains (such as "/oauth2/").
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from clampdown.testing.server import FakeServer, Fault

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
AUDIENCES = {
    MANAGEMENT_SCOPE: "https://management.azure.com/",
    GRAPH_SCOPE: "https://graph.microsoft.com",
}
"""The scopes a token can be asked for, and the audience of the token each gives."""
FORM = "application/x-www-form-urlencoded"
TOKEN_PATH = re.compile(r"/([^/]+)/oauth2/v2\.0/token", re.IGNORECASE)


_WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE", "POST"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received; `body` is a dict for forms and JSON objects."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class IdentityPlatformServer(FakeServer):
    """A fake that also serves a tenant's token endpoint for one application.

    Subclasses set `tenant`, `client_id`, `client_secret` and `expires_in`, and provide
    `_issue_access_token` (remember and return a new token) and `_json` (their JSON reply).
    """

    tenant: str
    client_id: str
    client_secret: str
    expires_in: int
    _detailed_token_errors: ClassVar[bool] = False
    """Tell a missing secret (AADSTS7000218) and an unknown resource (AADSTS500011) apart."""

    requests: list[RecordedRequest]
    """Every request received, token requests included."""

    def requests_to(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[RecordedRequest]:
        """The recorded requests with this method and a path containing this text."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path_contains is None or path_contains in r.path)
            ]

    def write_count(self, path_contains: str | None = None) -> int:
        """How many writes (PUT, PATCH, DELETE, POST) were received, failed ones included."""
        return sum(
            1
            for r in self.requests_to(path_contains=path_contains)
            if r.method in _WRITE_METHODS and not TOKEN_PATH.fullmatch(r.path)
        )

    @property
    def token_url(self) -> str:
        """The token endpoint of the configured tenant."""
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    def fail_next(
        self,
        status: int = 429,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        code: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` matching requests with an error (nothing is changed).

        Faults match the service's requests; the token endpoint is matched only by a
        `path_contains` it contains (such as "/oauth2/"), and then answers an
        identity-platform error. `retry_after` (seconds) adds a Retry-After header; `delay`
        waits before answering.
        """
        method = method.upper() if method is not None else None
        self._add_fault(
            Fault(status, method, path_contains, retry_after, times, message, code, delay)
        )

    def _issue_access_token(self, scope: str) -> str:
        """A new access token for `scope` (one of `AUDIENCES`), remembered (hold `lock`)."""
        raise NotImplementedError

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        """This fake's JSON response."""
        raise NotImplementedError

    def _token_fault(self, fault: Fault, headers: dict[str, str]) -> web.Response:
        """The identity-platform error answering a fault on the token endpoint."""
        error = "temporarily_unavailable" if fault.status in (429, 503) else "server_error"
        return self._aad_error(
            fault.status,
            fault.code or error,
            90033,
            fault.message or "A transient error has occurred. Please try again.",
            headers,
        )

    def _aad_error(
        self,
        status: int,
        error: str,
        number: int,
        text: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            "error_description": (
                f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation}"
                f" Timestamp: {stamp}"
            ),
            "error_codes": [number],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={number}",
        }
        return self._json(status, body, headers)

    def _token(self, method: str, tenant: str, form: dict[str, str]) -> web.Response:
        if method != "POST":
            return self._aad_error(
                400,
                "invalid_request",
                900561,
                f"The endpoint only accepts POST, OPTIONS requests. Received a {method} request.",
            )
        if tenant != self.tenant:
            return self._aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return self._aad_error(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        grant, client, scope = form["grant_type"], form["client_id"], form["scope"]
        if grant != "client_credentials":
            return self._aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        if client != self.client_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client}' was not found in the directory "
                f"'{tenant}'.",
            )
        if self._detailed_token_errors and not form.get("client_secret"):
            return self._aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if form.get("client_secret") != self.client_secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client}'.",
            )
        if scope not in AUDIENCES:
            if self._detailed_token_errors and scope.endswith("/.default"):
                return self._aad_error(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {scope.removesuffix('/.default')} was not "
                    f"found in the tenant named {tenant}.",
                )
            return self._aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        body = {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self._issue_access_token(scope),
        }
        return self._json(200, body)
