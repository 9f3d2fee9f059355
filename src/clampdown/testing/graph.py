"""A fake of Microsoft Graph: users, service principals, risky users and security alerts.

It follows the identity contract (CONTRACTS.md, section 4) and the Graph security alerts_v2
API, with its own Microsoft identity platform token endpoint (`POST /{tenant}/oauth2/v2.0/token`,
client credentials, the same error bodies as `FakeArm`'s) so that one fake serves a `graph`
target whose `login_url` and `graph_url` both point at it::

    graph = FakeGraph(tenant="t", client_id="c", client_secret="s")
    alice = graph.add_user("alice@contoso.com")
    with graph.running():
        ...  # token from graph.token_url, then graph.url + "/v1.0/users/" + alice

Served under `/v1.0`:

- `GET /users` (`$top`, `$select`), `GET|PATCH /users/{id|userPrincipalName}`,
  `POST /users/{id|userPrincipalName}/revokeSignInSessions` (200 `{"value": true}`);
- `GET /servicePrincipals/{id}`, `PATCH /servicePrincipals/{id}` (204);
- `POST /identityProtection/riskyUsers/confirmCompromised` `{"userIds": [...]}` (204),
  `GET /identityProtection/riskyUsers/{id}`;
- `GET /security/alerts_v2` (`$top`, `$filter`, paged: `page_size` alerts per page and an
  `@odata.nextLink` with a `$skiptoken` while more remain), `GET|PATCH
  /security/alerts_v2/{id}` (PATCH takes status, classification, determination and
  assignedTo, and answers 200 with the alert), `POST /security/alerts_v2/{id}/comments` (200
  with every comment of the alert).

`$filter` takes clauses joined by `and`: `name eq|ne 'text'` on the string properties
(detectionSource, serviceSource, status, severity, ...) and `name eq|ne|gt|ge|lt|le
2026-11-27T10:00:00Z` on the `...DateTime` ones; anything else answers 400 `BadRequest`.
`detectionSource` and `serviceSource` are evolvable enumerations: their newer members (such
as `microsoftDefenderForApiManagement`) are shown, and matched by `$filter`, only when the
request carries `Prefer: include-unknown-enum-members`; otherwise they read as
`unknownFutureValue` (in lists and in `GET /security/alerts_v2/{id}`). Every request is
recorded with its headers (`requests`), so a test can check the Prefer header.
`update_alert` changes an alert as the detector would (its `lastUpdateDateTime` becomes now).

Tokens are JWT-shaped and carry the application permissions granted (`roles`); a call the
roles do not allow answers 403 `Authorization_RequestDenied`. Errors have Graph's shape:
`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`.

Choices where the vendor documents nothing:

- a user's `accountEnabled` is returned only when `$select` names it, as Graph does;
- `confirmCompromised` refuses ids that are not object ids (400 `Request_BadRequest`) and
  accepts unknown object ids;
- an unknown alert answers 404 `NotFound`; a bad alert update 400 `BadRequest`;
- throttling answers 429 `TooManyRequests` with the message Graph's throttling guide shows;
- a filter on an evolvable member without the Prefer header matches nothing (no error);
- alerts are listed in the order they were added; a `$skiptoken` the fake did not issue
  answers 400 `BadRequest`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from clampdown.testing.identity import (
    AUDIENCES,
    FORM,
    GRAPH_SCOPE,
    TOKEN_PATH,
    IdentityPlatformServer,
    RecordedRequest,
)
from clampdown.testing.server import Fault

__all__ = [
    "ALERT_CLASSIFICATIONS",
    "ALERT_DETERMINATIONS",
    "ALERT_STATUSES",
    "DEFAULT_ROLES",
    "FakeGraph",
    "RecordedRequest",
]

DEFAULT_ROLES = frozenset(
    {
        "User.Read.All",
        "User.RevokeSessions.All",
        "User.EnableDisableAccount.All",
        "Application.ReadWrite.All",
        "IdentityRiskyUser.ReadWrite.All",
        "SecurityAlert.ReadWrite.All",
    }
)
"""The least privileged application permissions for everything the fake serves."""

ALERT_STATUSES = frozenset({"new", "inProgress", "resolved"})
ALERT_CLASSIFICATIONS = frozenset(
    {"unknown", "falsePositive", "truePositive", "informationalExpectedActivity"}
)
ALERT_DETERMINATIONS = frozenset(
    {
        "unknown",
        "apt",
        "malware",
        "securityPersonnel",
        "securityTesting",
        "unwantedSoftware",
        "other",
        "multiStagedAttack",
        "compromisedUser",
        "phishing",
        "maliciousUserActivity",
        "clean",
        "insufficientData",
        "confirmedUserActivity",
        "lineOfBusinessApplication",
    }
)

PREFER_UNKNOWN_MEMBERS = "include-unknown-enum-members"
EVOLVABLE_MEMBERS = {
    "detectionSource": frozenset(
        {
            "microsoftDefenderForCloud",
            "microsoftDefenderForIoT",
            "microsoftDefenderForServers",
            "microsoftDefenderForStorage",
            "microsoftDefenderForDNS",
            "microsoftDefenderForDatabases",
            "microsoftDefenderForContainers",
            "microsoftDefenderForNetwork",
            "microsoftDefenderForAppService",
            "microsoftDefenderForKeyVault",
            "microsoftDefenderForResourceManager",
            "microsoftDefenderForApiManagement",
            "nrtAlerts",
            "scheduledAlerts",
            "microsoftDefenderThreatIntelligenceAnalytics",
            "builtInMl",
            "microsoftInsiderRiskManagement",
            "microsoftThreatIntelligence",
            "microsoftDefenderForAIServices",
            "securityCopilot",
            "microsoftSentinel",
        }
    ),
    "serviceSource": frozenset(
        {
            "microsoftDefenderForCloud",
            "microsoftSentinel",
            "microsoftInsiderRiskManagement",
            "microsoftThreatIntelligence",
        }
    ),
}
"""Members of evolvable enumerations shown only with `Prefer: include-unknown-enum-members`."""

_GRAPH_AUDIENCE = AUDIENCES[GRAPH_SCOPE]
_CLAUSE_TEXT = re.compile(r"(\w+)\s+(eq|ne)\s+'((?:[^']|'')*)'", re.IGNORECASE)
_CLAUSE_TIME = re.compile(r"(\w+DateTime)\s+(eq|ne|gt|ge|lt|le)\s+(\S+)", re.IGNORECASE)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

# Which roles allow what (any one of them is enough).
_READ_USERS = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
_ENABLE_USERS = frozenset(
    {"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
_REVOKE = frozenset({"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
_READ_APPS = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
_WRITE_APPS = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All"})
_RISK_READ = frozenset({"IdentityRiskyUser.Read.All", "IdentityRiskyUser.ReadWrite.All"})
_RISK_WRITE = frozenset({"IdentityRiskyUser.ReadWrite.All"})
_ALERTS_READ = frozenset({"SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"})
_ALERTS_WRITE = frozenset({"SecurityAlert.ReadWrite.All"})

_USER_DEFAULT = (
    "id",
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
_ALERT_PATCHABLE = {
    "status": ALERT_STATUSES,
    "classification": ALERT_CLASSIFICATIONS,
    "determination": ALERT_DETERMINATIONS,
}
_FAULT_CODES = {
    400: "BadRequest",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class _GraphError(Exception):
    """A Graph error answer."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class _Call:
    method: str
    query: dict[str, str]
    raw: bytes
    roles: frozenset[str]
    path: str = ""
    prefer: frozenset[str] = frozenset()

    def json(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.raw) if self.raw else None
        except orjson.JSONDecodeError as exc:
            raise _GraphError(
                400, "BadRequest", f"Unable to read JSON request payload: {exc}."
            ) from exc
        if not isinstance(body, dict):
            raise _GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        return body

    def require(self, allowed: frozenset[str]) -> None:
        if not self.roles & allowed:
            raise _GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"request-id": str(uuid.uuid4()), **(headers or {})}
    if body is None:
        return web.Response(status=status, headers=all_headers)
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=all_headers
    )


def _error_response(fault: _GraphError) -> web.Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": fault.code,
            "message": fault.message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    ids = {"request-id": request_id, "client-request-id": request_id}
    return _json_response(fault.status, body, {**ids, **fault.headers})


def _not_found(key: str) -> _GraphError:
    return _GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


class FakeGraph(IdentityPlatformServer):
    """Microsoft Graph for one tenant and one application, plus its token endpoint.

    Seed and read state with the public methods (thread-safe); every request is recorded in
    `requests`; `fail_next` injects Graph errors (or identity-platform errors on the token
    endpoint). `roles` are the application permissions the tokens carry.
    """

    def __init__(
        self,
        *,
        tenant: str = "tenant",
        client_id: str = "client",
        client_secret: str = "secret",  # noqa: S107 - a fake's credential
        roles: Iterable[str] = DEFAULT_ROLES,
        expires_in: int = 3599,
        page_size: int = 100,
    ) -> None:
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.roles = frozenset(roles)
        self.expires_in = expires_in
        self.page_size = page_size
        self.next_link_base: str | None = None
        """Scheme and host of the `@odata.nextLink`s given (default: the fake's own URL)."""
        self.requests: list[RecordedRequest] = []
        self.token_requests = 0
        self.revocations: list[str] = []
        """Ids of the users whose sessions were revoked, one entry per revocation."""
        self._tokens: dict[str, tuple[str, frozenset[str], float]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._apps: dict[str, dict[str, Any]] = {}
        self._risky: dict[str, dict[str, Any]] = {}
        self._alerts: dict[str, dict[str, Any]] = {}
        self._routes = self._route_table()

    # ----- seeding and reading state

    def add_user(
        self,
        upn: str,
        *,
        id: str | None = None,
        enabled: bool = True,
        display_name: str | None = None,
    ) -> str:
        """Add a user; returns its object id."""
        oid = id or str(uuid.uuid4())
        user = {
            "id": oid,
            "userPrincipalName": upn,
            "displayName": display_name or upn.split("@")[0],
            "accountEnabled": enabled,
            "signInSessionsValidFromDateTime": "2026-01-01T00:00:00Z",
            "businessPhones": [],
            "givenName": None,
            "jobTitle": None,
            "mail": upn,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
        }
        with self.lock:
            self._users[oid] = user
        return oid

    def user(self, key: str) -> dict[str, Any]:
        """A copy of a user, by object id or user principal name (KeyError if unknown)."""
        with self.lock:
            found = self._find_user(key)
            if found is None:
                raise KeyError(key)
            return dict(found)

    def set_user_enabled(self, key: str, enabled: bool) -> None:
        """Enable or disable a user as an administrator would."""
        with self.lock:
            found = self._find_user(key)
            if found is None:
                raise KeyError(key)
            found["accountEnabled"] = enabled

    def add_service_principal(
        self,
        display_name: str,
        *,
        id: str | None = None,
        enabled: bool = True,
    ) -> str:
        """Add a service principal; returns its object id."""
        oid = id or str(uuid.uuid4())
        app = {
            "id": oid,
            "appId": str(uuid.uuid4()),
            "displayName": display_name,
            "accountEnabled": enabled,
            "servicePrincipalType": "Application",
        }
        with self.lock:
            self._apps[oid] = app
        return oid

    def service_principal(self, oid: str) -> dict[str, Any]:
        """A copy of a service principal (KeyError if unknown)."""
        with self.lock:
            return dict(self._apps[oid])

    def risky_user(self, oid: str) -> dict[str, Any] | None:
        """The risk state of a user confirmed compromised, or None."""
        with self.lock:
            found = self._risky.get(oid)
            return dict(found) if found else None

    def add_alert(self, alert: dict[str, Any]) -> str:
        """Add an alerts_v2 alert (such as a fixture); returns its id."""
        copy = orjson.loads(orjson.dumps(alert))
        copy.setdefault("comments", [])
        copy.setdefault("status", "new")
        copy.setdefault("createdDateTime", _now())
        copy.setdefault("lastUpdateDateTime", copy["createdDateTime"])
        with self.lock:
            self._alerts[str(copy["id"])] = copy
        return str(copy["id"])

    def alert(self, alert_id: str) -> dict[str, Any]:
        """A copy of an alert (KeyError if unknown)."""
        with self.lock:
            found: dict[str, Any] = orjson.loads(orjson.dumps(self._alerts[alert_id]))
            return found

    def update_alert(self, alert_id: str, **fields: Any) -> None:
        """Change an alert as the detector would (KeyError if unknown); unless `fields` sets
        it, `lastUpdateDateTime` becomes now."""
        with self.lock:
            alert = self._alerts[alert_id]
            alert.update(orjson.loads(orjson.dumps(fields)))
            if "lastUpdateDateTime" not in fields:
                alert["lastUpdateDateTime"] = _now()

    # ----- tokens

    def issue_token(self, roles: Iterable[str] | None = None) -> str:
        """A valid Graph token, as the token endpoint would issue, without a request."""
        with self.lock:
            return self._issue(GRAPH_SCOPE, self.roles if roles is None else frozenset(roles))

    def expire_tokens(self) -> None:
        """Make every token issued so far expired."""
        with self.lock:
            self._tokens = {t: (aud, roles, 0.0) for t, (aud, roles, _) in self._tokens.items()}

    # ----- faults and recorded requests

    # ----- server

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        token_match = TOKEN_PATH.fullmatch(request.path)
        body: Any = None
        if raw:
            text = raw.decode("utf-8", "replace")
            if request.content_type == FORM:
                body = dict(parse_qsl(text, keep_blank_values=True))
            else:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = text
        record = RecordedRequest(
            request.method, request.path, dict(request.query), dict(request.headers), body
        )
        with self.lock:
            self.requests.append(record)
            if token_match:
                self.token_requests += 1
            fault = self._take_fault(request.method, request.path, scoped_only=bool(token_match))
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            return self._fault_response(fault, token=token_match is not None)
        with self.lock:
            if token_match is not None:
                form = body if isinstance(body, dict) and request.content_type == FORM else {}
                return self._token(request.method, token_match.group(1), form)
            try:
                roles = self._authenticate(request.headers.get("Authorization"))
                prefer = frozenset(
                    part.strip().casefold()
                    for header in request.headers.getall("Prefer", [])
                    for part in header.split(",")
                )
                call = _Call(request.method, dict(request.query), raw, roles, request.path, prefer)
                return self._route(call, request.path)
            except _GraphError as refusal:
                return _error_response(refusal)

    def _fault_response(self, fault: Fault, *, token: bool) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if token:
            return self._token_fault(fault, headers)
        code = fault.code or _FAULT_CODES.get(fault.status)
        if code is None:
            code = HTTPStatus(fault.status).phrase.replace(" ", "").replace("-", "")
        message = fault.message or (
            "Please retry again later."
            if fault.status == 429
            else f"The service returned {fault.status}."
        )
        return _error_response(_GraphError(fault.status, code, message, headers))

    # ----- token endpoint

    def _issue(self, scope: str, roles: frozenset[str]) -> str:
        now = int(time.time())
        audience = AUDIENCES[scope]
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.expires_in,
            "appid": self.client_id,
            "tid": self.tenant,
            "roles": sorted(roles),
        }
        header = _b64(orjson.dumps({"typ": "JWT", "alg": "RS256"}))
        token = f"{header}.{_b64(orjson.dumps(claims))}.{_b64(secrets.token_bytes(32))}"
        self._tokens[token] = (audience, roles, time.monotonic() + self.expires_in)
        return token

    def _issue_access_token(self, scope: str) -> str:
        return self._issue(scope, self.roles)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return _json_response(status, body, headers)

    def _authenticate(self, header: str | None) -> frozenset[str]:
        def fail(message: str) -> _GraphError:
            challenge = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
            )
            return _GraphError(
                401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": challenge}
            )

        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise fail("Access token is empty.")
        issued = self._tokens.get(token.strip())
        if issued is None:
            raise fail("IDX14100: JWT is not well formed.")
        audience, roles, expiry = issued
        if audience != _GRAPH_AUDIENCE:
            raise fail("Access token validation failure. Invalid audience.")
        if time.monotonic() >= expiry:
            raise fail("Lifetime validation failed, the token is expired.")
        return roles

    # ----- routing

    def _route_table(self) -> list[tuple[re.Pattern[str], dict[str, Callable[..., web.Response]]]]:
        table: list[tuple[str, dict[str, Callable[..., web.Response]]]] = [
            ("/users", {"GET": self._list_users}),
            ("/users/([^/]+)", {"GET": self._get_user, "PATCH": self._patch_user}),
            ("/users/([^/]+)/revokeSignInSessions", {"POST": self._revoke}),
            (
                "/servicePrincipals/([^/]+)",
                {"GET": self._get_app, "PATCH": self._patch_app},
            ),
            ("/identityProtection/riskyUsers/confirmCompromised", {"POST": self._confirm}),
            ("/identityProtection/riskyUsers/([^/]+)", {"GET": self._get_risky}),
            ("/security/alerts_v2", {"GET": self._list_alerts}),
            ("/security/alerts_v2/([^/]+)", {"GET": self._get_alert, "PATCH": self._patch_alert}),
            ("/security/alerts_v2/([^/]+)/comments", {"POST": self._comment}),
        ]
        return [(re.compile("/v1\\.0" + p, re.IGNORECASE), h) for p, h in table]

    def _route(self, call: _Call, path: str) -> web.Response:
        for pattern, handlers in self._routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            handler = handlers.get(call.method)
            if handler is None:
                raise _GraphError(
                    405,
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                )
            return handler(call, *m.groups())
        raise _GraphError(
            400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'."
        )

    def _context(self, what: str) -> str:
        return f"https://graph.microsoft.com/v1.0/$metadata#{what}"

    # ----- users

    def _find_user(self, key: str) -> dict[str, Any] | None:
        if key in self._users:
            return self._users[key]
        folded = key.casefold()
        return next(
            (u for u in self._users.values() if str(u["userPrincipalName"]).casefold() == folded),
            None,
        )

    def _require_user(self, key: str) -> dict[str, Any]:
        found = self._find_user(key)
        if found is None:
            raise _not_found(key)
        return found

    @staticmethod
    def _select(
        item: dict[str, Any], query: dict[str, str], default: Iterable[str]
    ) -> dict[str, Any]:
        chosen = query.get("$select")
        names = [n.strip() for n in chosen.split(",")] if chosen else list(default)
        return {name: item.get(name) for name in names if name in item}

    def _list_users(self, call: _Call) -> web.Response:
        call.require(_READ_USERS)
        users = list(self._users.values())
        top = call.query.get("$top")
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= 999:
                raise _GraphError(400, "Request_UnsupportedQuery", "Invalid page size specified.")
            users = users[: int(top)]
        value = [self._select(u, call.query, _USER_DEFAULT) for u in users]
        return _json_response(200, {"@odata.context": self._context("users"), "value": value})

    def _get_user(self, call: _Call, key: str) -> web.Response:
        call.require(_READ_USERS)
        user = self._require_user(key)
        body = {"@odata.context": self._context("users/$entity")}
        body.update(self._select(user, call.query, _USER_DEFAULT))
        return _json_response(200, body)

    def _patch_user(self, call: _Call, key: str) -> web.Response:
        body = call.json()
        unknown = sorted(set(body) - {"accountEnabled", "displayName"})
        if unknown:
            raise _GraphError(
                400,
                "Request_BadRequest",
                f"Property '{unknown[0]}' is read-only or does not exist on type "
                "'microsoft.graph.user'.",
            )
        if "accountEnabled" in body:
            call.require(_ENABLE_USERS)
            _check_bool(body["accountEnabled"])
        else:
            call.require(frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"}))
        user = self._require_user(key)
        user.update(body)
        return _json_response(204, None)

    def _revoke(self, call: _Call, key: str) -> web.Response:
        call.require(_REVOKE)
        user = self._require_user(key)
        user["signInSessionsValidFromDateTime"] = _now()
        self.revocations.append(str(user["id"]))
        body = {"@odata.context": self._context("Edm.Boolean"), "value": True}
        return _json_response(200, body)

    # ----- service principals

    def _require_app(self, oid: str) -> dict[str, Any]:
        found = self._apps.get(oid)
        if found is None:
            raise _not_found(oid)
        return found

    def _get_app(self, call: _Call, oid: str) -> web.Response:
        call.require(_READ_APPS)
        app = self._require_app(oid)
        body = {"@odata.context": self._context("servicePrincipals/$entity")}
        body.update(self._select(app, call.query, app))
        return _json_response(200, body)

    def _patch_app(self, call: _Call, oid: str) -> web.Response:
        body = call.json()
        unknown = sorted(set(body) - {"accountEnabled", "displayName"})
        if unknown:
            raise _GraphError(
                400,
                "Request_BadRequest",
                f"Property '{unknown[0]}' is read-only or does not exist on type "
                "'microsoft.graph.servicePrincipal'.",
            )
        call.require(_WRITE_APPS)
        if "accountEnabled" in body:
            _check_bool(body["accountEnabled"])
        self._require_app(oid).update(body)
        return _json_response(204, None)

    # ----- identity protection

    def _confirm(self, call: _Call) -> web.Response:
        call.require(_RISK_WRITE)
        ids = call.json().get("userIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _GraphError(400, "Request_BadRequest", "userIds must be a non-empty list of ids.")
        bad = [i for i in ids if not _GUID.fullmatch(i)]
        if bad:
            raise _GraphError(400, "Request_BadRequest", f"Invalid user id '{bad[0]}'.")
        for oid in ids:
            user = self._users.get(oid.lower()) or self._users.get(oid) or {}
            self._risky[oid] = {
                "id": oid,
                "userPrincipalName": user.get("userPrincipalName"),
                "riskLevel": "high",
                "riskState": "confirmedCompromised",
                "riskDetail": "adminConfirmedUserCompromised",
                "riskLastUpdatedDateTime": _now(),
            }
        return _json_response(204, None)

    def _get_risky(self, call: _Call, oid: str) -> web.Response:
        call.require(_RISK_READ)
        found = self._risky.get(oid)
        if found is None:
            raise _not_found(oid)
        return _json_response(200, {"@odata.context": self._context("riskyUsers/$entity"), **found})

    # ----- security alerts

    def _require_alert(self, alert_id: str) -> dict[str, Any]:
        found = self._alerts.get(alert_id)
        if found is None:
            raise _GraphError(404, "NotFound", f"Alert '{alert_id}' was not found.")
        return found

    def _list_alerts(self, call: _Call) -> web.Response:
        call.require(_ALERTS_READ)
        unknown_members = PREFER_UNKNOWN_MEMBERS in call.prefer
        alerts = [_shown(alert, unknown_members) for alert in self._alerts.values()]
        alerts = _filter_alerts(call.query.get("$filter"), alerts)
        top = call.query.get("$top")
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= 2000:
                raise _GraphError(400, "BadRequest", "Invalid page size specified.")
            alerts = alerts[: int(top)]
        token = call.query.get("$skiptoken", "0")
        if not token.isdigit() or int(token) > len(alerts):
            raise _GraphError(400, "BadRequest", f"Invalid skip token '{token}'.")
        start = int(token)
        page = alerts[start : start + self.page_size]
        body: dict[str, Any] = {"@odata.context": self._context("security/alerts_v2")}
        if start + len(page) < len(alerts):
            query = dict(call.query, **{"$skiptoken": str(start + len(page))})
            base = self.next_link_base or self.url
            body["@odata.nextLink"] = f"{base}{call.path}?{urlencode(query, safe='$')}"
        body["value"] = page
        return _json_response(200, body)

    def _get_alert(self, call: _Call, alert_id: str) -> web.Response:
        call.require(_ALERTS_READ)
        alert = _shown(self._require_alert(alert_id), PREFER_UNKNOWN_MEMBERS in call.prefer)
        return _json_response(
            200, {"@odata.context": self._context("security/alerts_v2/$entity"), **alert}
        )

    def _patch_alert(self, call: _Call, alert_id: str) -> web.Response:
        call.require(_ALERTS_WRITE)
        body = call.json()
        for name, value in body.items():
            allowed = _ALERT_PATCHABLE.get(name)
            if name == "assignedTo":
                if value is not None and not isinstance(value, str):
                    raise _GraphError(400, "BadRequest", "assignedTo must be a string or null.")
            elif allowed is None:
                raise _GraphError(
                    400, "BadRequest", f"The property '{name}' does not exist or cannot be updated."
                )
            elif value not in allowed:
                raise _GraphError(
                    400, "BadRequest", f"The value '{value}' is not valid for '{name}'."
                )
        alert = self._require_alert(alert_id)
        alert.update(body)
        now = _now()
        alert["lastUpdateDateTime"] = now
        if "status" in body:
            alert["resolvedDateTime"] = now if body["status"] == "resolved" else None
        return _json_response(
            200, {"@odata.context": self._context("security/alerts_v2/$entity"), **alert}
        )

    def _comment(self, call: _Call, alert_id: str) -> web.Response:
        call.require(_ALERTS_WRITE)
        text = call.json().get("comment")
        if not isinstance(text, str) or not text.strip():
            raise _GraphError(400, "BadRequest", "The comment must be a non-empty string.")
        alert = self._require_alert(alert_id)
        comments = alert.setdefault("comments", [])
        comments.append(
            {"comment": text, "createdByDisplayName": self.client_id, "createdDateTime": _now()}
        )
        context = self._context(f"security/alerts_v2('{alert_id}')/comments")
        return _json_response(200, {"@odata.context": context, "value": list(comments)})


def _shown(alert: dict[str, Any], unknown_members: bool) -> dict[str, Any]:
    """An alert as a caller sees it: newer enum members hidden without the Prefer header."""
    shown: dict[str, Any] = orjson.loads(orjson.dumps(alert))
    if not unknown_members:
        for name, members in EVOLVABLE_MEMBERS.items():
            if shown.get(name) in members:
                shown[name] = "unknownFutureValue"
    return shown


def _filter_alerts(expression: str | None, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply the small OData subset of the module docstring."""
    if not expression or not expression.strip():
        return alerts
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        if m := _CLAUSE_TEXT.fullmatch(clause.strip()):
            tests.append(_text_test(m.group(1), m.group(2).lower(), m.group(3).replace("''", "'")))
        elif m := _CLAUSE_TIME.fullmatch(clause.strip()):
            moment = _parse_time(m.group(3))
            if moment is None:
                raise _GraphError(400, "BadRequest", f"Invalid filter clause: {clause!r}.")
            tests.append(_time_test(m.group(1), m.group(2).lower(), moment))
        else:
            raise _GraphError(400, "BadRequest", f"Invalid filter clause: {clause!r}.")
    return [alert for alert in alerts if all(test(alert) for test in tests)]


def _text_test(name: str, op: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def test(alert: dict[str, Any]) -> bool:
        matches = str(alert.get(name)).casefold() == value.casefold()
        return matches if op == "eq" else not matches

    return test


def _time_test(name: str, op: str, moment: datetime) -> Callable[[dict[str, Any]], bool]:
    compare: dict[str, Callable[[datetime, datetime], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
    }

    def test(alert: dict[str, Any]) -> bool:
        value = _parse_time(alert.get(name))
        return value is not None and compare[op](value, moment)

    return test


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _check_bool(value: object) -> None:
    if not isinstance(value, bool):
        raise _GraphError(
            400,
            "Request_BadRequest",
            f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.",
        )
