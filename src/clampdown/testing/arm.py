"""A fake of the Azure Resource Manager plane of API Management, with the token endpoint.

It follows the API Management contract (CONTRACTS.md, section 2): the Microsoft identity
platform client-credentials token endpoint (`POST /{tenant}/oauth2/v2.0/token`) and, under
`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}`,
APIs, operations, API tags, policies at service, API and operation scope, and subscriptions,
with ETags, If-Match, ARM error bodies, paging, injected faults and long-running operations;
and, under the same service, Defender for APIs' API collections
(`/providers/Microsoft.Security/apiCollections`, api-version 2023-11-15)::

    arm = FakeArm(tenant="t", client_id="c", client_secret="s")
    arm.add_api("orders", path="orders")
    arm.set_policy("orders", "<policies><inbound><base /></inbound></policies>")
    with arm.running():
        ...  # token from arm.token_url, then arm.service_url + "/apis?api-version=2022-08-01"

Choices where the vendor documents nothing (marked (?) in the contract):

- a missing If-Match where one is required (PATCH, DELETE, PUT over an existing entity)
  answers 400 `ValidationError`, as APIM answers a PUT over an existing entity without one;
- a PUT with a specific ETag to an entity that does not exist answers 412 (RFC 9110);
  `*` or no If-Match creates it;
- If-Match compares ETags with or without their surrounding quotes;
- a failed long-running operation answers its Location poll with `Lro.error_status`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from clampdown.testing.identity import (
    AUDIENCES,
    FORM,
    GRAPH_SCOPE,
    MANAGEMENT_SCOPE,
    TOKEN_PATH,
    IdentityPlatformServer,
    RecordedRequest,
)
from clampdown.testing.server import Fault

__all__ = [
    "GRAPH_SCOPE",
    "MANAGEMENT_SCOPE",
    "SUBSCRIPTION_STATES",
    "FakeArm",
    "Lro",
    "PolicyScope",
    "RecordedRequest",
]

SUBSCRIPTION_STATES = frozenset(
    {"active", "suspended", "submitted", "rejected", "cancelled", "expired"}
)

# An ARM policy scope: None or () for the service, "api" or ("api",) for an API,
# ("api", "op") for an operation, or a path such as "/apis/api/operations/op/policies/policy"
# (optionally prefixed with the service's ARM id).
PolicyScope = str | tuple[str, ...] | None

_ARM_AUDIENCE = AUDIENCES[MANAGEMENT_SCOPE]
_SERVICE_PATH = re.compile(
    r"/subscriptions/([^/]+)/resourceGroups/([^/]+)"
    r"/providers/Microsoft\.ApiManagement/service/([^/]+)(/.*)?",
    re.IGNORECASE,
)
_SCOPE_PATH = re.compile(r"(?:/apis/([^/]+)(?:/operations/([^/]+))?)?(?:/policies/policy)?", re.I)
_FAULT_CODES = {
    400: "BadRequest",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_CLAUSE_CMP = re.compile(r"([\w/]+)\s+(eq|ne)\s+'((?:[^']|'')*)'", re.IGNORECASE)
_CLAUSE_FN = re.compile(
    r"(contains|startswith|endswith)\(\s*([\w/]+)\s*,\s*'((?:[^']|'')*)'\s*\)", re.IGNORECASE
)
_SUBSCRIPTION_PATCHABLE = frozenset(
    {
        "state",
        "stateComment",
        "displayName",
        "expirationDate",
        "scope",
        "ownerId",
        "primaryKey",
        "secondaryKey",
        "allowTracing",
    }
)
_KEYS = ("primaryKey", "secondaryKey")
COLLECTIONS_API_VERSIONS = frozenset({"2022-11-20-preview", "2023-11-15"})
"""The api-versions the Microsoft.Security apiCollections routes accept."""
_COUNTERS = {
    "endpoints": "numberOfApiEndpoints",
    "unauthenticated": "numberOfUnauthenticatedApiEndpoints",
    "inactive": "numberOfInactiveApiEndpoints",
    "external": "numberOfExternalApiEndpoints",
    "sensitive_data": "numberOfApiEndpointsWithSensitiveDataExposed",
}


@dataclass
class Lro:
    """How writes are answered as long-running operations.

    The write answers `status` (no body) with an Azure-AsyncOperation and/or Location
    header; each poll of either URL answers "in progress" until `polls` polls have been
    answered, and the next one completes the operation, applying the write on success.
    """

    polls: int = 1
    outcome: Literal["Succeeded", "Failed", "Canceled"] = "Succeeded"
    status: Literal[201, 202] = 202
    headers: Literal["both", "azure-asyncoperation", "location"] = "both"
    retry_after: int = 0
    error: dict[str, Any] = field(
        default_factory=lambda: {"code": "OperationFailed", "message": "The operation failed."}
    )
    error_status: int = 500


@dataclass
class _Entity:
    properties: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class _Result:
    status: int
    body: Any = None
    etag: str | None = None


@dataclass
class _Pending:
    lro: Lro
    apply: Callable[[], _Result]
    remaining: int
    started: str
    state: str = "InProgress"
    result: _Result | None = None
    ended: str | None = None


class _ArmError(Exception):
    """An ARM error answer; `apim` errors carry `details` (null unless given)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        apim: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.apim = apim

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.apim or self.details is not None:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> web.Response:
        return _respond(_Result(self.status, self.body()), self.headers)


@dataclass(frozen=True)
class _Ctx:
    method: str
    query: dict[str, str]
    if_match: str | None
    raw: bytes
    api_version: str
    path: str

    def json(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.raw) if self.raw else None
        except orjson.JSONDecodeError as exc:
            raise _ArmError(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: {exc}.",
                apim=False,
            ) from exc
        if not isinstance(body, dict):
            raise _ArmError(
                400,
                "InvalidRequestContent",
                "The request content must be a JSON object.",
                apim=False,
            )
        return body

    def properties(self) -> dict[str, Any]:
        props = self.json().get("properties")
        if not isinstance(props, dict):
            raise _validation("properties", "The 'properties' object is required.")
        return props


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _respond(result: _Result, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"x-ms-request-id": str(uuid.uuid4())}
    if result.etag:
        all_headers["ETag"] = result.etag
    all_headers.update(headers or {})
    if result.body is None:
        return web.Response(status=result.status, headers=all_headers)
    return web.Response(
        status=result.status,
        body=orjson.dumps(result.body),
        content_type="application/json",
        headers=all_headers,
    )


def _validation(target: str, message: str) -> _ArmError:
    return _ArmError(
        400,
        "ValidationError",
        "One or more fields contain incorrect values:",
        details=[{"code": "ValidationError", "target": target, "message": message}],
    )


def _not_found(what: str) -> _ArmError:
    return _ArmError(404, "ResourceNotFound", f"{what} not found.")


def _error_result(err: _ArmError) -> _Result:
    return _Result(err.status, err.body())


def _unquote(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if content_type == FORM:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return text


def _check_policy_xml(fmt: str, value: str) -> None:
    """Reject what APIM would: rawxml is only checked for its <policies> root element."""
    stripped = value.strip()
    if not re.match(r"<policies[\s/>]", stripped) or not stripped.endswith("</policies>"):
        raise _validation("representation", "The document root must be a <policies> element.")
    if fmt == "xml":
        try:
            ET.fromstring(stripped)  # noqa: S314 - the caller is a test's own client
        except ET.ParseError as exc:
            raise _validation(
                "representation", f"The policy is not well-formed XML: {exc}."
            ) from exc


def _filter(expression: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply a small OData subset: eq, ne, contains, startswith, endswith joined by `and`."""
    if not expression:
        return items
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        if m := _CLAUSE_CMP.fullmatch(clause.strip()):
            name, op, value = m.group(1), m.group(2).lower(), m.group(3)
        elif m := _CLAUSE_FN.fullmatch(clause.strip()):
            op, name, value = m.group(1).lower(), m.group(2), m.group(3)
        else:
            raise _validation("$filter", f"Invalid filter clause: {clause!r}.")
        tests.append(_predicate(name, op, value.replace("''", "'").casefold()))
    return [item for item in items if all(test(item) for test in tests)]


def _predicate(name: str, op: str, value: str) -> Callable[[dict[str, Any]], bool]:
    key = name.removeprefix("properties/")

    def field_of(item: dict[str, Any]) -> str:
        raw = item["name"] if key == "name" else item["properties"].get(key)
        if raw is None:
            return ""
        return str(raw).casefold()

    checks: dict[str, Callable[[str], bool]] = {
        "eq": lambda s: s == value,
        "ne": lambda s: s != value,
        "contains": lambda s: value in s,
        "startswith": lambda s: s.startswith(value),
        "endswith": lambda s: s.endswith(value),
    }
    check = checks[op]
    return lambda item: check(field_of(item))


class FakeArm(IdentityPlatformServer):
    """Azure Resource Manager for one API Management service, plus its token endpoint.

    State is seeded and read with the public methods (all thread-safe); every request is
    recorded in `requests`. Set `async_writes` (or call `lro_next`) to make writes
    long-running, and `fail_next` to inject ARM errors.
    """

    def __init__(
        self,
        *,
        tenant: str = "tenant",
        client_id: str = "client",
        client_secret: str = "secret",  # noqa: S107 - a fake's credential
        subscription_id: str = "00000000-0000-0000-0000-000000000000",
        resource_group: str = "rg",
        service: str = "apim",
        location: str = "westeurope",
        expires_in: int = 3599,
        page_size: int = 100,
        api_versions: frozenset[str] | None = None,
    ) -> None:
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.service = service
        self.location = location
        self.expires_in = expires_in
        self.page_size = page_size
        self.api_versions = api_versions
        self.async_writes: Lro | None = None
        self.requests: list[RecordedRequest] = []
        self.token_requests = 0
        self._version = 0
        self._tokens: dict[str, tuple[str, float]] = {}
        self._apis: dict[str, _Entity] = {}
        self._operations: dict[str, dict[str, _Entity]] = {}
        self._policies: dict[tuple[str, ...], _Entity] = {}
        self._subscriptions: dict[str, _Entity] = {}
        self._api_tags: dict[str, dict[str, str]] = {}
        self._collections: dict[str, dict[str, Any]] = {}
        self._lro_script: list[Lro] = []
        self._pending: dict[str, _Pending] = {}
        self._routes = self._route_table()

    # ----- addresses

    @property
    def base_path(self) -> str:
        """The service's ARM id, which is also its path."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.service}"
        )

    @property
    def service_url(self) -> str:
        """The service's full URL (no api-version)."""
        return f"{self.url}{self.base_path}"

    # ----- seeding and reading state

    def add_api(
        self,
        api_id: str,
        display_name: str | None = None,
        path: str | None = None,
        **properties: Any,
    ) -> None:
        """Add (or replace) an API; extra keyword arguments are ARM properties."""
        props: dict[str, Any] = {
            "displayName": display_name or api_id,
            "path": api_id if path is None else path,
            "apiRevision": "1",
            "isCurrent": True,
            "subscriptionRequired": True,
            "protocols": ["https"],
            "serviceUrl": None,
            "type": "http",
            "description": "",
        }
        props.update(properties)
        with self.lock:
            self._apis[api_id] = _Entity(props, self._next_etag())
            self._operations.setdefault(api_id, {})

    def tag_api(self, api_id: str, tag: str, display_name: str | None = None) -> None:
        """Assign a tag (its id, and its display name: the id by default) to an existing API."""
        with self.lock:
            if api_id not in self._apis:
                raise KeyError(api_id)
            self._api_tags.setdefault(api_id, {})[tag] = display_name or tag

    def untag_api(self, api_id: str, tag: str) -> None:
        """Remove a tag from an API, as someone else would."""
        with self.lock:
            self._api_tags.get(api_id, {}).pop(tag, None)

    def onboard_api(
        self,
        api_id: str,
        *,
        endpoints: int = 0,
        unauthenticated: int = 0,
        inactive: int = 0,
        external: int = 0,
        sensitive_data: int = 0,
        sensitivity_label: str = "",
    ) -> None:
        """Onboard an existing API to Defender for APIs with these counters (again: update)."""
        counts = {
            "endpoints": endpoints,
            "unauthenticated": unauthenticated,
            "inactive": inactive,
            "external": external,
            "sensitive_data": sensitive_data,
        }
        with self.lock:
            if api_id not in self._apis:
                raise KeyError(api_id)
            props: dict[str, Any] = {
                "provisioningState": "Succeeded",
                "displayName": self._apis[api_id].properties.get("displayName", api_id),
                "discoveredVia": f"{self.base_path}/apis/{api_id}",
                "baseUrl": f"https://{self.service}.azure-api.net/"
                + str(self._apis[api_id].properties.get("path") or ""),
            }
            props.update({_COUNTERS[k]: v for k, v in counts.items()})
            props["sensitivityLabel"] = sensitivity_label
            self._collections[api_id] = props

    def offboard_api(self, api_id: str) -> None:
        """Remove an API's collection from Defender for APIs."""
        with self.lock:
            self._collections.pop(api_id, None)

    def update_api(self, api_id: str, **properties: Any) -> None:
        """Change an API's properties as someone else would (its ETag changes)."""
        with self.lock:
            entity = self._apis[api_id]
            entity.properties.update(properties)
            entity.etag = self._next_etag()

    def api(self, api_id: str) -> dict[str, Any] | None:
        """A copy of an API's properties, or None."""
        with self.lock:
            entity = self._apis.get(api_id)
            return dict(entity.properties) if entity else None

    def add_operation(
        self,
        api_id: str,
        op_id: str,
        method: str = "GET",
        url_template: str = "/",
        display_name: str | None = None,
        **properties: Any,
    ) -> None:
        """Add (or replace) an operation of an existing API."""
        props: dict[str, Any] = {
            "displayName": display_name or op_id,
            "method": method,
            "urlTemplate": url_template,
            "templateParameters": [],
            "responses": [],
            "description": "",
        }
        props.update(properties)
        with self.lock:
            if api_id not in self._apis:
                raise KeyError(api_id)
            self._operations[api_id][op_id] = _Entity(props, self._next_etag())

    def operation(self, api_id: str, op_id: str) -> dict[str, Any] | None:
        """A copy of an operation's properties, or None."""
        with self.lock:
            entity = self._operations.get(api_id, {}).get(op_id)
            return dict(entity.properties) if entity else None

    def set_policy(self, scope: PolicyScope, xml: str) -> str:
        """Set a policy as someone else would (a new ETag, returned); parents must exist."""
        key = self._scope_key(scope)
        with self.lock:
            self._check_parents(key)
            entity = _Entity({"format": "rawxml", "value": xml}, self._next_etag())
            self._policies[key] = entity
            return entity.etag

    def delete_policy(self, scope: PolicyScope) -> None:
        """Remove a policy as someone else would."""
        key = self._scope_key(scope)
        with self.lock:
            self._policies.pop(key, None)

    def policy(self, scope: PolicyScope) -> str | None:
        """The policy XML at a scope, or None."""
        key = self._scope_key(scope)
        with self.lock:
            entity = self._policies.get(key)
            return str(entity.properties["value"]) if entity else None

    def policy_etag(self, scope: PolicyScope) -> str | None:
        """The quoted ETag of the policy at a scope, or None."""
        key = self._scope_key(scope)
        with self.lock:
            entity = self._policies.get(key)
            return entity.etag if entity else None

    def add_subscription(
        self,
        sid: str,
        *,
        display_name: str | None = None,
        scope: str = "/apis",
        state: str = "active",
        state_comment: str | None = None,
        owner_id: str | None = None,
        primary_key: str | None = None,
        secondary_key: str | None = None,
        allow_tracing: bool = False,
    ) -> None:
        """Add (or replace) a subscription; scope is "/apis", "/apis/{api}" or "/products/{p}"."""
        if state not in SUBSCRIPTION_STATES:
            raise ValueError(f"unknown subscription state {state!r}")
        now = _now()
        props: dict[str, Any] = {
            "ownerId": owner_id,
            "scope": scope,
            "displayName": display_name or sid,
            "state": state,
            "createdDate": now,
            "startDate": now if state == "active" else None,
            "expirationDate": None,
            "endDate": None,
            "notificationDate": None,
            "stateComment": state_comment,
            "allowTracing": allow_tracing,
            "primaryKey": primary_key or secrets.token_hex(16),
            "secondaryKey": secondary_key or secrets.token_hex(16),
        }
        with self.lock:
            self._subscriptions[sid] = _Entity(props, self._next_etag())

    def update_subscription(self, sid: str, **properties: Any) -> None:
        """Change a subscription's properties as someone else would (its ETag changes)."""
        with self.lock:
            entity = self._subscriptions[sid]
            entity.properties.update(properties)
            entity.etag = self._next_etag()

    def subscription(self, sid: str) -> dict[str, Any]:
        """A copy of a subscription's properties, keys included (KeyError if unknown)."""
        with self.lock:
            return dict(self._subscriptions[sid].properties)

    def subscription_etag(self, sid: str) -> str:
        """The quoted ETag of a subscription (KeyError if unknown)."""
        with self.lock:
            return self._subscriptions[sid].etag

    # ----- tokens

    def issue_token(self, scope: str = MANAGEMENT_SCOPE) -> str:
        """A valid token, as the token endpoint would issue, without a request."""
        with self.lock:
            return self._issue(scope)

    def expire_tokens(self) -> None:
        """Make every token issued so far expired."""
        with self.lock:
            self._tokens = {token: (aud, 0.0) for token, (aud, _) in self._tokens.items()}

    # ----- faults, long-running operations, recorded requests

    def lro_next(self, lro: Lro | None = None, times: int = 1) -> None:
        """Make the next `times` writes long-running (before `async_writes` applies)."""
        with self.lock:
            self._lro_script.extend([lro or Lro()] * times)

    @property
    def pending_operations(self) -> int:
        """How many long-running operations have not completed yet."""
        with self.lock:
            return sum(1 for p in self._pending.values() if p.state == "InProgress")

    # ----- server

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        token_match = TOKEN_PATH.fullmatch(request.path)
        body = _decode(raw, request.content_type)
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
        if token_match is not None:
            form = body if request.content_type == FORM and isinstance(body, dict) else {}
            with self.lock:
                return self._token(request.method, token_match.group(1), form)
        try:
            with self.lock:
                self._authenticate(request.headers.get("Authorization"))
                ctx = _Ctx(
                    request.method,
                    dict(request.query),
                    request.headers.get("If-Match"),
                    raw,
                    self._api_version(request.query.get("api-version")),
                    request.path,
                )
                return self._route(ctx, self._service_rest(request.path))
        except _ArmError as err:
            return err.response()

    def _fault_response(self, fault: Fault, *, token: bool) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if token:
            return self._token_fault(fault, headers)
        code = fault.code or _FAULT_CODES.get(fault.status)
        if code is None:
            code = HTTPStatus(fault.status).phrase.replace(" ", "").replace("-", "")
        if fault.message:
            message = fault.message
        elif fault.status == 429:
            wait = f" Retry after {fault.retry_after} seconds." if fault.retry_after else ""
            message = f"The request was throttled.{wait}"
        else:
            message = f"The service returned {fault.status}."
        return _ArmError(fault.status, code, message, headers=headers, apim=False).response()

    # ----- token endpoint

    _detailed_token_errors = True

    def _issue(self, scope: str) -> str:
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self._tokens[token] = (AUDIENCES[scope], time.monotonic() + self.expires_in)
        return token

    def _issue_access_token(self, scope: str) -> str:
        return self._issue(scope)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return _respond(_Result(status, body), headers)

    # ----- ARM plumbing

    def _next_etag(self) -> str:
        """A new quoted ETag in APIM's style (base64 of a version number)."""
        self._version += 1
        return '"' + base64.b64encode(self._version.to_bytes(8, "big")).decode() + '"'

    def _authenticate(self, header: str | None) -> None:
        def fail(code: str, message: str) -> _ArmError:
            challenge = (
                f'Bearer authorization_uri="{self.url}/{self.tenant}", '
                f'error="invalid_token", error_description="{message}"'
            )
            return _ArmError(
                401, code, message, headers={"WWW-Authenticate": challenge}, apim=False
            )

        if not header:
            raise fail(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise fail(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid "
                "format.",
            )
        issued = self._tokens.get(token.strip())
        if issued is None:
            raise fail("InvalidAuthenticationToken", "The access token is invalid.")
        audience, expiry = issued
        if time.monotonic() >= expiry:
            raise fail(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )
        if audience != _ARM_AUDIENCE:
            raise fail(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource "
                f"'{audience}'. It should exactly match with one of the allowed audiences "
                f"'https://management.core.windows.net/','{_ARM_AUDIENCE}'.",
            )

    def _api_version(self, version: str | None) -> str:
        if not version:
            raise _ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
                apim=False,
            )
        if self.api_versions is not None and version not in self.api_versions:
            supported = ", ".join(sorted(self.api_versions))
            raise _ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are "
                f"'{supported}'.",
                apim=False,
            )
        return version

    def _service_rest(self, path: str) -> str:
        m = _SERVICE_PATH.fullmatch(path)
        if m is None:
            raise _ArmError(404, "NotFound", f"No resource is served at '{path}'.", apim=False)
        sub, group, service, rest = m.groups()
        if sub.casefold() != self.subscription_id.casefold():
            raise _ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{sub}' could not be found.",
                apim=False,
            )
        if group.casefold() != self.resource_group.casefold():
            raise _ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{group}' could not be found.",
                apim=False,
            )
        if service.casefold() != self.service.casefold():
            raise _ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ApiManagement/service/{service}' under resource group "
                f"'{group}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
                apim=False,
            )
        return rest or ""

    def _route_table(self) -> list[tuple[re.Pattern[str], dict[str, Callable[..., web.Response]]]]:
        api, op, sub = r"/apis/([^/]+)", r"/operations/([^/]+)", r"/subscriptions/([^/]+)"
        policy = {"GET": self._get_policy, "PUT": self._put_policy, "DELETE": self._delete_policy}
        table: list[tuple[str, dict[str, Callable[..., web.Response]]]] = [
            ("", {"GET": self._get_service}),
            ("/apis", {"GET": self._list_apis}),
            (api, {"GET": self._get_api, "PATCH": self._patch_api}),
            (api + "/operations", {"GET": self._list_operations}),
            (api + "/tags", {"GET": self._list_api_tags}),
            (api + "/tags/([^/]+)", {"GET": self._get_api_tag}),
            ("/providers/Microsoft\\.Security/apiCollections", {"GET": self._list_collections}),
            (
                "/providers/Microsoft\\.Security/apiCollections/([^/]+)",
                {"GET": self._get_collection},
            ),
            (
                api + op,
                {
                    "GET": self._get_operation,
                    "PUT": self._put_operation,
                    "DELETE": self._delete_operation,
                },
            ),
            ("/policies", {"GET": self._list_policies}),
            ("/policies/policy", policy),
            (api + "/policies", {"GET": self._list_policies}),
            (api + "/policies/policy", policy),
            (api + op + "/policies", {"GET": self._list_policies}),
            (api + op + "/policies/policy", policy),
            ("/subscriptions", {"GET": self._list_subscriptions}),
            (sub, {"GET": self._get_subscription, "PATCH": self._patch_subscription}),
            (sub + "/(regeneratePrimaryKey|regenerateSecondaryKey)", {"POST": self._regenerate}),
            (sub + "/listSecrets", {"POST": self._list_secrets}),
            ("/operationStatuses/([^/]+)", {"GET": self._poll_status}),
            ("/operationResults/([^/]+)", {"GET": self._poll_result}),
        ]
        return [(re.compile(p, re.IGNORECASE), handlers) for p, handlers in table]

    def _route(self, ctx: _Ctx, rest: str) -> web.Response:
        method = "GET" if ctx.method == "HEAD" else ctx.method
        for pattern, handlers in self._routes:
            m = pattern.fullmatch(rest)
            if m is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                raise _ArmError(
                    405,
                    "MethodNotAllowed",
                    f"The requested resource does not support http method '{ctx.method}'.",
                    apim=False,
                )
            return handler(ctx, *m.groups())
        raise _ArmError(404, "NotFound", f"No resource is served at '{ctx.path}'.", apim=False)

    def _page(self, ctx: _Ctx, items: list[dict[str, Any]]) -> dict[str, Any]:
        items = _filter(ctx.query.get("$filter"), items)
        try:
            skip = int(ctx.query.get("$skip", "0"))
            top = int(ctx.query["$top"]) if "$top" in ctx.query else None
        except ValueError as exc:
            raise _validation("$skip", "$skip and $top must be integers.") from exc
        if skip < 0 or (top is not None and top < 1):
            raise _validation("$skip", "$skip must be >= 0 and $top >= 1.")
        size = min(self.page_size, top) if top else self.page_size
        page = items[skip : skip + size]
        next_link = None
        if skip + len(page) < len(items):
            query = dict(ctx.query, **{"$skip": str(skip + len(page))})
            next_link = f"{self.url}{ctx.path}?{urlencode(query, safe='$/')}"
        return {"value": page, "count": len(items), "nextLink": next_link}

    def _check_if_match(self, ctx: _Ctx, current: _Entity | None) -> None:
        """A write's precondition: required over an existing entity, `*` or its ETag."""
        value = ctx.if_match
        if current is None:
            if value is not None and value.strip() != "*":
                raise _ArmError(
                    412, "PreconditionFailed", "The entity does not exist; If-Match cannot match."
                )
            return
        if value is None:
            raise _validation(
                "If-Match",
                "Entity with the given ID already exists. Specify ETag, or '*' for "
                "unconditional update.",
            )
        if value.strip() == "*" or _unquote(value) == _unquote(current.etag):
            return
        raise _ArmError(
            412,
            "PreconditionFailed",
            "The entity state (ETag) in the If-Match header does not match the current state.",
        )

    def _require_if_match(self, ctx: _Ctx) -> None:
        if ctx.if_match is None:
            raise _validation("If-Match", "The If-Match header is required. Specify ETag, or '*'.")

    def _commit(self, ctx: _Ctx, apply: Callable[[], _Result]) -> web.Response:
        """Apply a write now, or start a long-running operation that applies it later."""
        lro = self._lro_script.pop(0) if self._lro_script else self.async_writes
        if lro is None:
            return _respond(apply())
        op_id = uuid.uuid4().hex
        self._pending[op_id] = _Pending(lro, apply, lro.polls, _now())
        query = urlencode({"api-version": ctx.api_version})
        headers = {"Retry-After": str(lro.retry_after)}
        if lro.headers in ("both", "azure-asyncoperation"):
            headers["Azure-AsyncOperation"] = (
                f"{self.service_url}/operationStatuses/{op_id}?{query}"
            )
        if lro.headers in ("both", "location"):
            headers["Location"] = f"{self.service_url}/operationResults/{op_id}?{query}"
        return _respond(_Result(lro.status), headers)

    # ----- resources as ARM shows them

    def _api_json(self, api_id: str, entity: _Entity) -> dict[str, Any]:
        return {
            "id": f"{self.base_path}/apis/{api_id}",
            "type": "Microsoft.ApiManagement/service/apis",
            "name": api_id,
            "properties": dict(entity.properties),
        }

    def _operation_json(self, api_id: str, op_id: str, entity: _Entity) -> dict[str, Any]:
        return {
            "id": f"{self.base_path}/apis/{api_id}/operations/{op_id}",
            "type": "Microsoft.ApiManagement/service/apis/operations",
            "name": op_id,
            "properties": dict(entity.properties),
        }

    def _policy_json(self, key: tuple[str, ...], entity: _Entity, fmt: str) -> dict[str, Any]:
        kinds = ["service/policies", "service/apis/policies", "service/apis/operations/policies"]
        return {
            "id": f"{self.base_path}{self._scope_path(key)}/policies/policy",
            "type": f"Microsoft.ApiManagement/{kinds[len(key)]}",
            "name": "policy",
            "properties": {"format": fmt, "value": entity.properties["value"]},
        }

    def _subscription_json(self, sid: str, entity: _Entity) -> dict[str, Any]:
        props = {k: v for k, v in entity.properties.items() if k not in _KEYS}
        scope = str(props["scope"])
        if not scope.lower().startswith("/subscriptions/"):
            props["scope"] = self.base_path + scope
        return {
            "id": f"{self.base_path}/subscriptions/{sid}",
            "type": "Microsoft.ApiManagement/service/subscriptions",
            "name": sid,
            "properties": props,
        }

    def _scope_key(self, scope: PolicyScope) -> tuple[str, ...]:
        if scope is None:
            return ()
        if isinstance(scope, tuple):
            if len(scope) > 2:
                raise ValueError(f"a policy scope has at most two parts: {scope!r}")
            return scope
        if not scope.startswith("/"):
            return (scope,)
        rest = scope
        if rest.lower().startswith(self.base_path.lower()):
            rest = rest[len(self.base_path) :]
        m = _SCOPE_PATH.fullmatch(rest)
        if m is None:
            raise ValueError(f"not a policy scope: {scope!r}")
        return tuple(part for part in m.groups() if part is not None)

    @staticmethod
    def _scope_path(key: tuple[str, ...]) -> str:
        return "".join(
            f"/{kind}/{name}" for kind, name in zip(("apis", "operations"), key, strict=False)
        )

    def _check_parents(self, key: tuple[str, ...]) -> None:
        if key and key[0] not in self._apis:
            raise _not_found("Api")
        if len(key) > 1 and key[1] not in self._operations[key[0]]:
            raise _not_found("Operation")

    # ----- handlers (called with the lock held)

    def _get_service(self, ctx: _Ctx) -> web.Response:
        body = {
            "id": self.base_path,
            "name": self.service,
            "type": "Microsoft.ApiManagement/service",
            "location": self.location,
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {
                "provisioningState": "Succeeded",
                "gatewayUrl": f"https://{self.service}.azure-api.net",
            },
        }
        return _respond(_Result(200, body))

    def _list_apis(self, ctx: _Ctx) -> web.Response:
        items = [self._api_json(name, entity) for name, entity in self._apis.items()]
        return _respond(_Result(200, self._page(ctx, items)))

    def _require_api(self, api_id: str) -> _Entity:
        entity = self._apis.get(api_id)
        if entity is None:
            raise _not_found("Api")
        return entity

    def _get_api(self, ctx: _Ctx, api_id: str) -> web.Response:
        entity = self._require_api(api_id)
        return _respond(_Result(200, self._api_json(api_id, entity), entity.etag))

    def _patch_api(self, ctx: _Ctx, api_id: str) -> web.Response:
        entity = self._require_api(api_id)
        props = ctx.properties()
        if "subscriptionRequired" in props and not isinstance(props["subscriptionRequired"], bool):
            raise _validation("subscriptionRequired", "subscriptionRequired must be a boolean.")
        self._require_if_match(ctx)
        self._check_if_match(ctx, entity)

        def apply() -> _Result:
            current = self._apis.get(api_id)
            if current is None:
                return _error_result(_not_found("Api"))
            current.properties.update(props)
            current.etag = self._next_etag()
            return _Result(200, self._api_json(api_id, current), current.etag)

        return self._commit(ctx, apply)

    def _tag_json(self, api_id: str, tag: str, display_name: str) -> dict[str, Any]:
        return {
            "id": f"{self.base_path}/apis/{api_id}/tags/{tag}",
            "type": "Microsoft.ApiManagement/service/apis/tags",
            "name": tag,
            "properties": {"displayName": display_name},
        }

    def _list_api_tags(self, ctx: _Ctx, api_id: str) -> web.Response:
        self._require_api(api_id)
        tags = self._api_tags.get(api_id, {})
        items = [self._tag_json(api_id, tag, shown) for tag, shown in tags.items()]
        return _respond(_Result(200, self._page(ctx, items)))

    def _get_api_tag(self, ctx: _Ctx, api_id: str, tag: str) -> web.Response:
        self._require_api(api_id)
        shown = self._api_tags.get(api_id, {}).get(tag)
        if shown is None:
            raise _not_found("Tag")
        return _respond(_Result(200, self._tag_json(api_id, tag, shown)))

    def _collection_json(self, api_id: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{self.base_path}/providers/Microsoft.Security/apiCollections/{api_id}",
            "name": api_id,
            "type": "Microsoft.Security/apiCollections",
            "properties": dict(props),
        }

    @staticmethod
    def _check_collections_version(ctx: _Ctx) -> None:
        if ctx.api_version not in COLLECTIONS_API_VERSIONS:
            supported = ", ".join(sorted(COLLECTIONS_API_VERSIONS))
            raise _ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{ctx.api_version}' is invalid. The supported versions are "
                f"'{supported}'.",
                apim=False,
            )

    def _list_collections(self, ctx: _Ctx) -> web.Response:
        self._check_collections_version(ctx)
        items = [self._collection_json(a, p) for a, p in self._collections.items()]
        return _respond(_Result(200, self._page(ctx, items)))

    def _get_collection(self, ctx: _Ctx, api_id: str) -> web.Response:
        self._check_collections_version(ctx)
        props = self._collections.get(api_id)
        if props is None:
            raise _ArmError(
                404,
                "ResourceNotFound",
                f"The API '{api_id}' is not onboarded to Microsoft Defender for APIs.",
                apim=False,
            )
        return _respond(_Result(200, self._collection_json(api_id, props)))

    def _list_operations(self, ctx: _Ctx, api_id: str) -> web.Response:
        self._require_api(api_id)
        items = [
            self._operation_json(api_id, name, entity)
            for name, entity in self._operations[api_id].items()
        ]
        return _respond(_Result(200, self._page(ctx, items)))

    def _get_operation(self, ctx: _Ctx, api_id: str, op_id: str) -> web.Response:
        self._check_parents((api_id, op_id))
        entity = self._operations[api_id][op_id]
        return _respond(_Result(200, self._operation_json(api_id, op_id, entity), entity.etag))

    def _put_operation(self, ctx: _Ctx, api_id: str, op_id: str) -> web.Response:
        self._require_api(api_id)
        props = ctx.properties()
        for name in ("displayName", "method", "urlTemplate"):
            if not isinstance(props.get(name), str) or not props[name]:
                raise _validation(name, f"'{name}' is required.")
        self._check_if_match(ctx, self._operations[api_id].get(op_id))
        new = {"templateParameters": [], "responses": [], "description": "", **props}

        def apply() -> _Result:
            if api_id not in self._apis:
                return _error_result(_not_found("Api"))
            created = op_id not in self._operations[api_id]
            entity = _Entity(dict(new), self._next_etag())
            self._operations[api_id][op_id] = entity
            body = self._operation_json(api_id, op_id, entity)
            return _Result(201 if created else 200, body, entity.etag)

        return self._commit(ctx, apply)

    def _delete_operation(self, ctx: _Ctx, api_id: str, op_id: str) -> web.Response:
        self._require_api(api_id)
        self._require_if_match(ctx)
        entity = self._operations[api_id].get(op_id)
        if entity is None:
            return _respond(_Result(204))
        self._check_if_match(ctx, entity)

        def apply() -> _Result:
            self._operations.get(api_id, {}).pop(op_id, None)
            self._policies.pop((api_id, op_id), None)
            return _Result(200)

        return self._commit(ctx, apply)

    def _list_policies(self, ctx: _Ctx, *ids: str) -> web.Response:
        key = tuple(ids)
        self._check_parents(key)
        entity = self._policies.get(key)
        items = [self._policy_json(key, entity, "xml")] if entity else []
        return _respond(_Result(200, {"value": items, "count": len(items), "nextLink": None}))

    def _get_policy(self, ctx: _Ctx, *ids: str) -> web.Response:
        key = tuple(ids)
        self._check_parents(key)
        fmt = ctx.query.get("format", "xml")
        if fmt not in ("xml", "rawxml"):
            raise _validation("format", f"Unsupported policy export format '{fmt}'.")
        entity = self._policies.get(key)
        if entity is None:
            raise _not_found("Policy")
        return _respond(_Result(200, self._policy_json(key, entity, fmt), entity.etag))

    def _put_policy(self, ctx: _Ctx, *ids: str) -> web.Response:
        key = tuple(ids)
        self._check_parents(key)
        props = ctx.properties()
        fmt, value = props.get("format", "xml"), props.get("value")
        if fmt not in ("xml", "rawxml"):
            raise _validation("format", f"Unsupported policy format '{fmt}'.")
        if not isinstance(value, str):
            raise _validation("value", "'value' is required.")
        _check_policy_xml(fmt, value)
        self._check_if_match(ctx, self._policies.get(key))

        def apply() -> _Result:
            try:
                self._check_parents(key)
            except _ArmError as err:
                return _error_result(err)
            created = key not in self._policies
            entity = _Entity({"format": fmt, "value": value}, self._next_etag())
            self._policies[key] = entity
            body = self._policy_json(key, entity, fmt)
            return _Result(201 if created else 200, body, entity.etag)

        return self._commit(ctx, apply)

    def _delete_policy(self, ctx: _Ctx, *ids: str) -> web.Response:
        key = tuple(ids)
        self._check_parents(key)
        self._require_if_match(ctx)
        entity = self._policies.get(key)
        if entity is None:
            return _respond(_Result(204))
        self._check_if_match(ctx, entity)

        def apply() -> _Result:
            self._policies.pop(key, None)
            return _Result(200)

        return self._commit(ctx, apply)

    def _require_subscription(self, sid: str) -> _Entity:
        entity = self._subscriptions.get(sid)
        if entity is None:
            raise _not_found("Subscription")
        return entity

    def _list_subscriptions(self, ctx: _Ctx) -> web.Response:
        items = [self._subscription_json(s, e) for s, e in self._subscriptions.items()]
        return _respond(_Result(200, self._page(ctx, items)))

    def _get_subscription(self, ctx: _Ctx, sid: str) -> web.Response:
        entity = self._require_subscription(sid)
        return _respond(_Result(200, self._subscription_json(sid, entity), entity.etag))

    def _patch_subscription(self, ctx: _Ctx, sid: str) -> web.Response:
        entity = self._require_subscription(sid)
        props = {k: v for k, v in ctx.properties().items() if k in _SUBSCRIPTION_PATCHABLE}
        if "state" in props and props["state"] not in SUBSCRIPTION_STATES:
            allowed = ", ".join(sorted(SUBSCRIPTION_STATES))
            raise _validation("state", f"Invalid state '{props['state']}'; one of {allowed}.")
        self._require_if_match(ctx)
        self._check_if_match(ctx, entity)

        def apply() -> _Result:
            current = self._subscriptions.get(sid)
            if current is None:
                return _error_result(_not_found("Subscription"))
            current.properties.update(props)
            current.etag = self._next_etag()
            return _Result(200, self._subscription_json(sid, current), current.etag)

        return self._commit(ctx, apply)

    def _regenerate(self, ctx: _Ctx, sid: str, action: str) -> web.Response:
        entity = self._require_subscription(sid)
        key = "primaryKey" if "primary" in action.lower() else "secondaryKey"
        entity.properties[key] = secrets.token_hex(16)
        entity.etag = self._next_etag()
        return _respond(_Result(204))

    def _list_secrets(self, ctx: _Ctx, sid: str) -> web.Response:
        entity = self._require_subscription(sid)
        body = {key: entity.properties[key] for key in _KEYS}
        return _respond(_Result(200, body, entity.etag))

    def _advance(self, op_id: str) -> _Pending:
        pending = self._pending.get(op_id)
        if pending is None:
            raise _ArmError(404, "NotFound", f"Operation '{op_id}' not found.", apim=False)
        if pending.state != "InProgress":
            return pending
        if pending.remaining > 0:
            pending.remaining -= 1
            return pending
        if pending.lro.outcome == "Succeeded":
            pending.result = pending.apply()
        pending.state = pending.lro.outcome
        pending.ended = _now()
        return pending

    def _poll_status(self, ctx: _Ctx, op_id: str) -> web.Response:
        pending = self._advance(op_id)
        body: dict[str, Any] = {
            "id": f"{self.base_path}/operationStatuses/{op_id}",
            "name": op_id,
            "status": pending.state,
            "startTime": pending.started,
        }
        headers = {}
        if pending.state == "InProgress":
            headers["Retry-After"] = str(pending.lro.retry_after)
        else:
            body["endTime"] = pending.ended
        if pending.state in ("Failed", "Canceled"):
            body["error"] = pending.lro.error
        return _respond(_Result(200, body), headers)

    def _poll_result(self, ctx: _Ctx, op_id: str) -> web.Response:
        pending = self._advance(op_id)
        if pending.state == "InProgress":
            location = f"{self.url}{ctx.path}?{urlencode({'api-version': ctx.api_version})}"
            headers = {"Location": location, "Retry-After": str(pending.lro.retry_after)}
            return _respond(_Result(202), headers)
        if pending.result is None:
            return _respond(_Result(pending.lro.error_status, {"error": pending.lro.error}))
        result = pending.result
        if result.status == 201:
            result = _Result(200, result.body, result.etag)
        elif result.status == 200 and result.body is None:
            result = _Result(204)
        return _respond(result)
