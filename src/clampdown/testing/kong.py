"""A fake Kong Gateway 3.x Admin API: services, routes, consumers, key-auth and plugins.

It follows the real Admin API where a client can tell the difference: entity shapes and
defaults, lookups by id or name, `{"data", "next", "offset"}` paging with `size`, `offset`
and `tags` (`a,b` means both, `a/b` either), schema violations (400, code 2), unique
violations (409, code 5), foreign key errors, cascading deletes, and DELETE answering 204
when the entity is already gone (nested key-auth and plugin paths answer 404, as Kong does).
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import orjson
from aiohttp import web

from clampdown.testing.server import RestFakeServer

Entity = dict[str, Any]

KONG_VERSION = "3.7.1"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_TAG_BYTES = r"[\x20-\x2B\x2D\x2E\x30-\x7E\x80-\U0010FFFF]+"
_TAGS_AND = re.compile(rf"^(?:{_TAG_BYTES}(?:,|$))+$")
_TAGS_OR = re.compile(rf"^(?:{_TAG_BYTES}(?:/|$))+$")
_STATUS_MESSAGES = {
    429: "API rate limit exceeded",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}


class KongError(Exception):
    """An Admin API error: the HTTP status and Kong's JSON body (raised by seeding helpers)."""

    def __init__(self, status: int, body: Entity) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.body = body


@dataclass
class KongRequest:
    """One request the fake received, with the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# --- schema validation, after Kong's kong/db/schema -------------------------------------------


@dataclass(frozen=True)
class _Field:
    kind: str  # string integer number boolean array set record map foreign any
    default: Any = None
    required: bool = False
    one_of: tuple[Any, ...] = ()
    between: tuple[int, int] | None = None
    gt: float | None = None
    elements: _Field | None = None
    fields: Mapping[str, _Field] | None = None
    check: Callable[[Any], str | None] | None = None
    reference: str = ""


_ARTICLES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "set": "a set",
    "record": "a record",
    "map": "a map",
    "foreign": "a record",
}


def _coerce(kind: str, value: str) -> Any:
    """Form bodies carry strings; Kong infers the type from the schema."""
    if kind in ("integer", "number"):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind in ("array", "set"):
        return [value]
    return value


def _validate(spec: _Field, value: Any, coerce: bool) -> tuple[Any, Any]:
    """Check one value against its field: (normalised value, None) or (None, error)."""
    kind = spec.kind
    if coerce and isinstance(value, str):
        value = _coerce(kind, value)
    expected = f"expected {_ARTICLES.get(kind, kind)}"
    if kind == "string":
        if not isinstance(value, str):
            return None, expected
        if not value:
            return None, "length must be at least 1"
    elif kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, expected
        if kind == "integer":
            if value != int(value):
                return None, expected
            value = int(value)
    elif kind == "boolean":
        if not isinstance(value, bool):
            return None, expected
    elif kind in ("array", "set"):
        if not isinstance(value, list):
            return None, expected
        assert spec.elements is not None
        items: list[Any] = []
        errors: list[Any] = []
        for item in value:
            checked, error = _validate(spec.elements, item, coerce)
            items.append(checked)
            errors.append(error)
        if any(e is not None for e in errors):
            while errors[-1] is None:
                errors.pop()
            return None, errors
        value = items if kind == "array" else [v for i, v in enumerate(items) if v not in items[:i]]
    elif kind in ("record", "foreign"):
        if not isinstance(value, dict):
            return None, expected
        assert spec.fields is not None
        record, record_errors = _record(spec.fields, value, coerce)
        if record_errors:
            return None, record_errors
        value = {k: v for k, v in record.items() if v is not None} if kind == "foreign" else record
        if kind == "foreign" and not value:
            return None, {"id": "missing primary key"}
    elif kind == "map" and not isinstance(value, dict):
        return None, expected
    if spec.one_of and value not in spec.one_of:
        return None, "expected one of: " + ", ".join(str(v) for v in spec.one_of)
    if spec.between and not spec.between[0] <= value <= spec.between[1]:
        return None, f"value should be between {spec.between[0]} and {spec.between[1]}"
    if spec.gt is not None and not value > spec.gt:
        return None, f"value must be greater than {spec.gt:g}"
    if spec.check is not None:
        error = spec.check(value)
        if error is not None:
            return None, error
    return value, None


def _record(
    fields: Mapping[str, _Field], value: Mapping[str, Any], coerce: bool
) -> tuple[Entity, Entity]:
    """Check a record: unknown fields, required fields, defaults filled in."""
    out: Entity = {}
    errors: Entity = {key: "unknown field" for key in value if key not in fields}
    for key, spec in fields.items():
        given = value.get(key)
        if given is None and key not in value and spec.kind == "record":
            given = {}
        if given is not None:
            checked, error = _validate(spec, given, coerce)
            if error is not None:
                errors[key] = error
            out[key] = checked
        elif key not in value and spec.default is not None:
            out[key] = copy.deepcopy(spec.default)
        else:
            if spec.required:
                errors[key] = "required field missing"
            out[key] = None
    return out, errors


def _nonempty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _at_least_one_of(entity: Entity, paths: Iterable[str]) -> str | None:
    paths = list(paths)
    for path in paths:
        node: Any = entity
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if _nonempty(node):
            return None
    names = ", ".join(f"'{p}'" for p in paths)
    return f"at least one of these fields must be non-empty: {names}"


def _lua(value: Any) -> str:
    """Render like Penlight's pretty.write(value, ""), which Kong uses in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_lua(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "{" + ",".join(_lua(v) for v in value) + "}"
    return str(value)


def _schema_violation(errors: Entity) -> KongError:
    parts = [str(e) for e in errors.get("@entity", [])]
    for key in sorted(errors):
        if key == "@entity":
            continue
        error = errors[key]
        if isinstance(error, dict):
            for sub in sorted(error):
                sub_error = error[sub]
                text = sub_error if isinstance(sub_error, str) else _lua(sub_error)
                parts.append(f"{key}.{sub}: {text}")
        else:
            parts.append(f"{key}: {error if isinstance(error, str) else _lua(error)}")
    if len(parts) == 1:
        message = f"schema violation ({parts[0]})"
    else:
        message = f"{len(parts)} schema violations ({'; '.join(parts)})"
    body = {"code": 2, "name": "schema violation", "message": message, "fields": errors}
    return KongError(400, body)


def _unique_violation(key: Entity) -> KongError:
    message = f"UNIQUE violation detected on '{_lua(key)}'"
    body = {"code": 5, "name": "unique constraint violation", "message": message, "fields": key}
    return KongError(409, body)


def _merge_errors(into: Entity, extra: Entity) -> None:
    for key, value in extra.items():
        if key == "@entity":
            into.setdefault("@entity", []).extend(value)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into.setdefault(key, value)


def _is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def _check_uuid(value: Any) -> str | None:
    return None if _is_uuid(value) else "expected a valid UUID"


def _check_ip_or_cidr(value: Any) -> str | None:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"invalid ip or cidr range: '{value}'"
    return None


def _check_tag(value: Any) -> str | None:
    if "," in value or "/" in value or not value.isprintable():
        return (
            f"invalid tag '{value}': expected printable ascii (except `,` and `/`) "
            "or valid utf-8 sequences"
        )
    return None


def _check_route_path(value: Any) -> str | None:
    if value.startswith("/") or value.startswith("~/"):
        return None
    return "should start with: / (fixed path) or ~/ (regex path)"


def _check_service_path(value: Any) -> str | None:
    return None if value.startswith("/") else "should start with: /"


_STR = _Field("string")
_UUID_FIELD = _Field("string", check=_check_uuid)
_TAGS = _Field("set", elements=_Field("string", check=_check_tag))
_TIMEOUT = _Field("integer", default=60000, between=(1, 2147483646))
_PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")


def _foreign(reference: str, endpoint_key: str) -> _Field:
    fields = (
        {"id": _UUID_FIELD} if endpoint_key == "id" else {"id": _UUID_FIELD, endpoint_key: _STR}
    )
    return _Field("foreign", fields=fields, reference=reference)


_SERVICE = {
    "name": _STR,
    "retries": _Field("integer", default=5, between=(0, 32767)),
    "protocol": _Field("string", default="http", one_of=_PROTOCOLS),
    "host": _Field("string", required=True),
    "port": _Field("integer", default=80, between=(0, 65535)),
    "path": _Field("string", check=_check_service_path),
    "connect_timeout": _TIMEOUT,
    "write_timeout": _TIMEOUT,
    "read_timeout": _TIMEOUT,
    "tags": _TAGS,
    "client_certificate": _foreign("certificates", "id"),
    "tls_verify": _Field("boolean"),
    "tls_verify_depth": _Field("integer", between=(0, 64)),
    "ca_certificates": _Field("array", elements=_UUID_FIELD),
    "enabled": _Field("boolean", default=True),
}
_ROUTE = {
    "name": _STR,
    "protocols": _Field(
        "set", default=["http", "https"], elements=_Field("string", one_of=_PROTOCOLS)
    ),
    "methods": _Field("set", elements=_STR),
    "hosts": _Field("array", elements=_STR),
    "paths": _Field("array", elements=_Field("string", check=_check_route_path)),
    "headers": _Field("map"),
    "https_redirect_status_code": _Field("integer", default=426, one_of=(426, 301, 302, 307, 308)),
    "regex_priority": _Field("integer", default=0),
    "strip_path": _Field("boolean", default=True),
    "path_handling": _Field("string", default="v0", one_of=("v0", "v1")),
    "preserve_host": _Field("boolean", default=False),
    "request_buffering": _Field("boolean", default=True),
    "response_buffering": _Field("boolean", default=True),
    "snis": _Field("set", elements=_STR),
    "sources": _Field("set", elements=_Field("any")),
    "destinations": _Field("set", elements=_Field("any")),
    "tags": _TAGS,
    "service": _foreign("services", "name"),
}
_CONSUMER = {"username": _STR, "custom_id": _STR, "tags": _TAGS}
_CREDENTIAL = {
    "consumer": _foreign("consumers", "username"),
    "key": _STR,
    "tags": _TAGS,
    "ttl": _Field("integer", between=(0, 100000000)),
}
_PLUGIN = {
    "name": _Field("string", required=True),
    "instance_name": _STR,
    "route": _foreign("routes", "name"),
    "service": _foreign("services", "name"),
    "consumer": _foreign("consumers", "username"),
    "protocols": _Field(
        "set",
        default=["grpc", "grpcs", "http", "https"],
        elements=_Field("string", one_of=_PROTOCOLS),
    ),
    "enabled": _Field("boolean", default=True),
    "tags": _TAGS,
    "ordering": _Field("map"),
}


@dataclass(frozen=True)
class _PluginSchema:
    config: Mapping[str, _Field]
    check: Callable[[Entity], Entity] = lambda plugin: {}
    no_consumer: bool = False


def _ip_restriction_check(plugin: Entity) -> Entity:
    error = _at_least_one_of(plugin, ("config.allow", "config.deny"))
    return {"@entity": [error]} if error else {}


_PERIODS = ("second", "minute", "hour", "day", "month", "year")


def _rate_limiting_check(plugin: Entity) -> Entity:
    config = plugin["config"]
    errors: Entity = {}
    error = _at_least_one_of(plugin, (f"config.{p}" for p in _PERIODS))
    if error:
        errors["@entity"] = [error]
    previous: tuple[str, float] | None = None
    for period in _PERIODS:
        limit = config.get(period)
        if limit is None:
            continue
        if previous and limit < previous[1]:
            errors.setdefault("@entity", []).append(
                f"The limit for {period}({limit:.1f}) cannot be lower than the limit for "
                f"{previous[0]}({previous[1]:.1f})"
            )
        previous = (period, limit)
    for limit_by, needed in (("header", "header_name"), ("path", "path")):
        if config.get("limit_by") == limit_by and not config.get(needed):
            errors.setdefault("config", {})[needed] = "required field missing"
    return errors


def _request_termination_check(plugin: Entity) -> Entity:
    config = plugin["config"]
    message = None
    if config.get("message") and (config.get("content_type") or config.get("body")):
        message = "message cannot be used with content_type or body"
    elif config.get("content_type") and not config.get("body"):
        message = "content_type requires a body"
    elif config.get("echo") and (config.get("content_type") or config.get("body")):
        message = "echo cannot be used with content_type and body"
    elif config.get("trigger") is not None and not config.get("echo"):
        message = "trigger can only be used with echo"
    return {"config": {"@entity": [message]}} if message else {}


_IPS = _Field("array", elements=_Field("string", check=_check_ip_or_cidr))
_REDIS = {
    "host": _STR,
    "port": _Field("integer", default=6379, between=(0, 65535)),
    "timeout": _Field("integer", default=2000, between=(0, 2147483646)),
    "username": _STR,
    "password": _STR,
    "database": _Field("integer", default=0),
    "ssl": _Field("boolean", default=False),
    "ssl_verify": _Field("boolean", default=False),
    "server_name": _STR,
}
_LIMIT_BY = ("consumer", "credential", "ip", "service", "header", "path", "consumer-group")
PLUGINS: dict[str, _PluginSchema] = {
    "ip-restriction": _PluginSchema(
        {
            "allow": _IPS,
            "deny": _IPS,
            "status": _Field("number"),
            "message": _STR,
        },
        _ip_restriction_check,
    ),
    "rate-limiting": _PluginSchema(
        {
            **{p: _Field("number", gt=0) for p in _PERIODS},
            "limit_by": _Field("string", default="consumer", one_of=_LIMIT_BY),
            "header_name": _STR,
            "path": _Field("string", check=_check_service_path),
            "policy": _Field("string", default="local", one_of=("local", "cluster", "redis")),
            "fault_tolerant": _Field("boolean", default=True),
            "redis": _Field("record", fields=_REDIS),
            "hide_client_headers": _Field("boolean", default=False),
            "error_code": _Field("number", default=429, gt=0),
            "error_message": _Field("string", default="API rate limit exceeded"),
            "sync_rate": _Field("number", default=-1),
        },
        _rate_limiting_check,
    ),
    "request-termination": _PluginSchema(
        {
            "status_code": _Field("integer", default=503, between=(100, 599)),
            "message": _STR,
            "content_type": _STR,
            "body": _STR,
            "echo": _Field("boolean", default=False, required=True),
            "trigger": _STR,
        },
        _request_termination_check,
    ),
    "key-auth": _PluginSchema(
        {
            "key_names": _Field("array", default=["apikey"], required=True, elements=_STR),
            "hide_credentials": _Field("boolean", default=False),
            "anonymous": _STR,
            "key_in_header": _Field("boolean", default=True),
            "key_in_query": _Field("boolean", default=True),
            "key_in_body": _Field("boolean", default=False),
            "run_on_preflight": _Field("boolean", default=True),
            "realm": _STR,
        },
        no_consumer=True,
    ),
}
"""The plugins this fake knows, by name; any other name is 'not enabled' (400)."""

# collection -> (fields, endpoint key, unique fields)
_COLLECTIONS: dict[str, tuple[Mapping[str, _Field], str, tuple[str, ...]]] = {
    "services": (_SERVICE, "name", ("name",)),
    "routes": (_ROUTE, "name", ("name",)),
    "consumers": (_CONSUMER, "username", ("username", "custom_id")),
    "keyauth_credentials": (_CREDENTIAL, "key", ("key",)),
    "plugins": (_PLUGIN, "instance_name", ("instance_name",)),
}
_TOP = {
    "services": "services",
    "routes": "routes",
    "consumers": "consumers",
    "plugins": "plugins",
    "key-auths": "keyauth_credentials",
}
# (parent path, child path) -> (child collection, foreign key field)
_NESTED = {
    ("services", "routes"): ("routes", "service"),
    ("services", "plugins"): ("plugins", "service"),
    ("routes", "plugins"): ("plugins", "route"),
    ("consumers", "plugins"): ("plugins", "consumer"),
    ("consumers", "key-auth"): ("keyauth_credentials", "consumer"),
}
_COLLECTION_OF = {"service": "services", "route": "routes", "consumer": "consumers"}
_TIMESTAMPED = {"services", "routes", "consumers", "plugins"}


def _deep_merge(base: Entity, patch: Mapping[str, Any]) -> Entity:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "headers":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _form(raw: bytes) -> Entity:
    """A form body as Kong reads it: dotted keys nest, repeated or `[]` keys make arrays."""
    out: Entity = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        many = key.endswith("]")
        key = re.sub(r"\[\d*\]$", "", key)
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            if last in node:
                current = node[last]
                node[last] = [*current, value] if isinstance(current, list) else [current, value]
            else:
                node[last] = [value] if many else value
    return out


def _message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"The upstream server responded with {status}")


class FakeKong(RestFakeServer):
    """A Kong Admin API on localhost; with `admin_token`, requests need `Kong-Admin-Token`."""

    def __init__(self, admin_token: str | None = None) -> None:
        super().__init__()
        self.admin_token = admin_token
        self.requests: list[KongRequest] = []
        self._data: dict[str, dict[str, Entity]] = {name: {} for name in _COLLECTIONS}
        self._seq: dict[str, int] = {}
        self._counter = 0

    # --- seeding and reading, for tests ------------------------------------------------------

    def add_service(
        self, name: str | None = None, host: str = "upstream.test", **fields: Any
    ) -> Entity:
        """Create a service as POST /services would; raises KongError when Kong would refuse."""
        return self._seed("services", {"name": name, "host": host, **fields})

    def add_route(
        self,
        name: str | None = None,
        service: str | None = None,
        paths: list[str] | None = None,
        **fields: Any,
    ) -> Entity:
        """Create a route (on `service`, an id or name); paths default to `["/"]`."""
        body: Entity = {"name": name, **fields}
        if service is not None:
            body["service"] = {"id" if _is_uuid(service) else "name": service}
        if paths is not None or not any(fields.get(k) for k in ("methods", "hosts", "headers")):
            body["paths"] = paths if paths is not None else ["/"]
        return self._seed("routes", body)

    def add_consumer(
        self, username: str | None = None, custom_id: str | None = None, **fields: Any
    ) -> Entity:
        """Create a consumer."""
        return self._seed("consumers", {"username": username, "custom_id": custom_id, **fields})

    def add_key(
        self, consumer: str, key: str | None = None, tags: list[str] | None = None
    ) -> Entity:
        """Create a key-auth credential for `consumer` (id or username); a key is made if None."""
        with self.lock:
            owner = self._get_or_raise("consumers", consumer)
            body: Entity = {"consumer": {"id": owner["id"]}, "key": key, "tags": tags}
            return copy.deepcopy(self._insert("keyauth_credentials", body))

    def add_plugin(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        service: str | None = None,
        route: str | None = None,
        consumer: str | None = None,
        **fields: Any,
    ) -> Entity:
        """Create a plugin, global or scoped to a service, route and/or consumer (id or name)."""
        with self.lock:
            body: Entity = {"name": name, "config": dict(config or {}), **fields}
            for scope, collection, key in (
                ("service", "services", service),
                ("route", "routes", route),
                ("consumer", "consumers", consumer),
            ):
                if key is not None:
                    body[scope] = {"id": self._get_or_raise(collection, key)["id"]}
            return copy.deepcopy(self._insert("plugins", body))

    def services(self) -> list[Entity]:
        """Every service."""
        return self._read("services")

    def service(self, key: str) -> Entity | None:
        """A service by id or name, or None."""
        return self._read_one("services", key)

    def route_list(self, service: str | None = None) -> list[Entity]:
        """Every route, or those of `service` (id or name); `routes` is the server's hook."""
        return self._read("routes", service=service)

    def route(self, key: str) -> Entity | None:
        """A route by id or name, or None."""
        return self._read_one("routes", key)

    def consumers(self) -> list[Entity]:
        """Every consumer."""
        return self._read("consumers")

    def consumer(self, key: str) -> Entity | None:
        """A consumer by id or username, or None."""
        return self._read_one("consumers", key)

    def credentials(self, consumer: str | None = None) -> list[Entity]:
        """Key-auth credentials, all or those of `consumer` (id or username)."""
        return self._read("keyauth_credentials", consumer=consumer)

    def has_key(self, key: str) -> bool:
        """Whether a key-auth credential with this key (or id) exists."""
        return self._read_one("keyauth_credentials", key) is not None

    def plugins(
        self,
        name: str | None = None,
        *,
        service: str | None = None,
        route: str | None = None,
        consumer: str | None = None,
    ) -> list[Entity]:
        """Plugins, optionally only those with this name and on this service/route/consumer."""
        found = self._read("plugins", service=service, route=route, consumer=consumer)
        return [p for p in found if name is None or p["name"] == name]

    def plugin(self, key: str) -> Entity | None:
        """A plugin by id or instance_name, or None."""
        return self._read_one("plugins", key)

    def _seed(self, collection: str, body: Entity) -> Entity:
        body = {k: v for k, v in body.items() if v is not None}
        with self.lock:
            return copy.deepcopy(self._insert(collection, body))

    def _get_or_raise(self, collection: str, key: str) -> Entity:
        entity = self._find(collection, key)
        if entity is None:
            raise KongError(404, {"message": "Not found"})
        return entity

    def _read(self, collection: str, **scopes: str | None) -> list[Entity]:
        with self.lock:
            items = list(self._data[collection].values())
            for fk, key in scopes.items():
                if key is None:
                    continue
                owner = self._find(_COLLECTION_OF[fk], key)
                if owner is None:
                    return []
                items = [e for e in items if (e.get(fk) or {}).get("id") == owner["id"]]
            return copy.deepcopy(items)

    def _read_one(self, collection: str, key: str) -> Entity | None:
        with self.lock:
            return copy.deepcopy(self._find(collection, key))

    # --- storage -------------------------------------------------------------------------------

    def _find(self, collection: str, key: str) -> Entity | None:
        entities = self._data[collection]
        if _is_uuid(key):
            return entities.get(key.lower())
        endpoint_key = _COLLECTIONS[collection][1]
        return next((e for e in entities.values() if e.get(endpoint_key) == key), None)

    def _build(self, collection: str, raw: Mapping[str, Any], coerce: bool, own_id: str) -> Entity:
        """Validate `raw` into a full entity (without id and timestamps), or raise KongError."""
        fields, _, unique = _COLLECTIONS[collection]
        raw = {k: v for k, v in raw.items() if k not in ("id", "created_at", "updated_at")}
        errors: Entity = {}
        plugin_schema: _PluginSchema | None = None
        if collection == "services" and raw.get("url") is not None:
            raw = self._service_url(raw, errors)
        if collection == "plugins":
            name = raw.get("name")
            if name is None:
                raise _schema_violation({"name": "required field missing"})
            if not isinstance(name, str):
                raise _schema_violation({"name": "expected a string"})
            plugin_schema = PLUGINS.get(name)
            if plugin_schema is None:
                msg = f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
                raise _schema_violation({"name": msg})
            fields = {**fields, "config": _Field("record", fields=plugin_schema.config)}
            if raw.get("config") is None:
                raw = {**raw, "config": {}}
        entity, field_errors = _record(fields, raw, coerce)
        _merge_errors(errors, field_errors)
        if not errors:
            _merge_errors(errors, self._entity_checks(collection, entity, plugin_schema))
        if errors:
            raise _schema_violation(errors)
        self._resolve_foreign_keys(entity, fields)
        if collection == "keyauth_credentials" and entity["key"] is None:
            entity["key"] = uuid.uuid4().hex
        for name in unique:
            value = entity.get(name)
            if value is not None and any(
                e.get(name) == value and e["id"] != own_id for e in self._data[collection].values()
            ):
                raise _unique_violation({name: value})
        if collection == "plugins":
            cache_key = {k: entity[k] for k in ("consumer", "name", "route", "service")}
            for other in self._data["plugins"].values():
                if other["id"] != own_id and all(other[k] == v for k, v in cache_key.items()):
                    raise _unique_violation(cache_key)
        return entity

    def _service_url(self, raw: Mapping[str, Any], errors: Entity) -> Entity:
        out = {k: v for k, v in raw.items() if k != "url"}
        url = raw["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not parts.scheme or not parts.hostname:
            errors["url"] = "missing host in url" if parts and parts.scheme else "missing scheme"
            return out
        out["protocol"] = parts.scheme
        out["host"] = parts.hostname
        default_port = 443 if parts.scheme in ("https", "grpcs", "tls", "wss") else 80
        out["port"] = parts.port or default_port
        out["path"] = parts.path or None
        return out

    @staticmethod
    def _entity_checks(collection: str, entity: Entity, plugin: _PluginSchema | None) -> Entity:
        if collection == "consumers":
            error = _at_least_one_of(entity, ("custom_id", "username"))
            return {"@entity": [error]} if error else {}
        if collection == "routes":
            protocols = entity["protocols"] or []
            matchers = ["methods", "hosts", "headers", "paths"]
            if "http" in protocols or "https" in protocols:
                label = "http" if "http" in protocols else "https"
                if label == "https":
                    matchers.append("snis")
                if not any(_nonempty(entity.get(m)) for m in matchers):
                    names = ", ".join(f"'{m}'" for m in matchers)
                    return {"@entity": [f"must set one of {names} when 'protocols' is '{label}'"]}
            return {}
        if plugin is not None:
            errors: Entity = {}
            if plugin.no_consumer and entity.get("consumer") is not None:
                errors["consumer"] = "value must be null"
            _merge_errors(errors, plugin.check(entity))
            return errors
        return {}

    def _resolve_foreign_keys(self, entity: Entity, fields: Mapping[str, _Field]) -> None:
        for name, spec in fields.items():
            ref = entity.get(name)
            if spec.kind != "foreign" or ref is None or spec.reference not in self._data:
                continue
            if "id" in ref:
                if ref["id"].lower() not in self._data[spec.reference]:
                    message = (
                        f"the foreign key '{_lua({'id': ref['id']})}' does not reference "
                        f"an existing '{spec.reference}' entity."
                    )
                    body = {
                        "code": 4,
                        "name": "foreign key violation",
                        "message": message,
                        "fields": {name: {"id": ref["id"]}},
                    }
                    raise KongError(400, body)
                entity[name] = {"id": ref["id"].lower()}
                continue
            key, value = next(iter(ref.items()))
            found = self._find(spec.reference, value) if not _is_uuid(value) else None
            if found is None:
                error = (
                    f"the foreign key cannot be resolved with '{_lua({key: value})}' "
                    f"for an existing '{spec.reference}' entity"
                )
                body = {
                    "code": 13,
                    "name": "foreign keys unresolved",
                    "message": f"foreign key unresolved ({name}.{key}: {error})",
                    "fields": {name: {key: error}},
                }
                raise KongError(400, body)
            entity[name] = {"id": found["id"]}

    def _store(self, collection: str, entity_id: str, entity: Entity, created_at: int) -> Entity:
        now = int(time.time())
        stored: Entity = {"id": entity_id, "created_at": created_at}
        if collection in _TIMESTAMPED:
            stored["updated_at"] = now
        stored.update(entity)
        if entity_id not in self._seq:
            self._counter += 1
            self._seq[entity_id] = self._counter
        self._data[collection][entity_id] = stored
        return stored

    def _insert(self, collection: str, raw: Mapping[str, Any], coerce: bool = False) -> Entity:
        entity_id = raw.get("id")
        if entity_id is None:
            entity_id = str(uuid.uuid4())
        elif not isinstance(entity_id, str) or not _is_uuid(entity_id):
            raise _schema_violation({"id": "expected a valid UUID"})
        entity_id = entity_id.lower()
        if entity_id in self._data[collection]:
            body = {
                "code": 3,
                "name": "primary key violation",
                "message": f"primary key violation on key '{_lua({'id': entity_id})}'",
                "fields": {"id": entity_id},
            }
            raise KongError(400, body)
        entity = self._build(collection, raw, coerce, entity_id)
        return self._store(collection, entity_id, entity, int(time.time()))

    def _update(
        self, collection: str, current: Entity, patch: Mapping[str, Any], coerce: bool
    ) -> Entity:
        merged = _deep_merge(current, patch)
        if collection == "services" and patch.get("url") is not None:
            for implied in ("protocol", "host", "port", "path"):
                if implied not in patch:
                    merged.pop(implied, None)
        entity = self._build(collection, merged, coerce, current["id"])
        return self._store(collection, current["id"], entity, current["created_at"])

    def _upsert(self, collection: str, key: str, raw: Mapping[str, Any], coerce: bool) -> Entity:
        current = self._find(collection, key)
        raw = dict(raw)
        if not _is_uuid(key):
            raw[_COLLECTIONS[collection][1]] = key
        if current is None:
            raw["id"] = key if _is_uuid(key) else raw.get("id")
            return self._insert(collection, raw, coerce)
        entity = self._build(collection, raw, coerce, current["id"])
        return self._store(collection, current["id"], entity, current["created_at"])

    def _delete(self, collection: str, entity: Entity) -> None:
        entity_id = entity["id"]
        if collection == "services" and any(
            (r["service"] or {}).get("id") == entity_id for r in self._data["routes"].values()
        ):
            body = {
                "code": 4,
                "name": "foreign key violation",
                "message": "an existing 'routes' entity references this 'services' entity",
                "fields": {"@referenced_by": "routes"},
            }
            raise KongError(400, body)
        cascades = {
            "services": (("plugins", "service"),),
            "routes": (("plugins", "route"),),
            "consumers": (("plugins", "consumer"), ("keyauth_credentials", "consumer")),
        }
        for child, fk in cascades.get(collection, ()):
            table = self._data[child]
            for child_id in [i for i, e in table.items() if (e[fk] or {}).get("id") == entity_id]:
                del table[child_id]
        self._data[collection].pop(entity_id, None)

    # --- HTTP ----------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """Serve every Admin API path from one dispatcher."""
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        parse_error = False
        form = request.content_type == "application/x-www-form-urlencoded"
        if form:
            body = _form(raw)
        elif raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parse_error = True
        entry = KongRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body if not parse_error else raw.decode("utf-8", "replace"),
        )
        with self.lock:
            self.requests.append(entry)
            reply = self._fault(request.method, request.path)
            token = request.headers.get("Kong-Admin-Token")
            if reply is None and self.admin_token is not None and token != self.admin_token:
                message = "Invalid credentials. Token or User credentials required"
                reply = _Reply(401, {"message": message})
            if reply is None:
                if parse_error or (body is not None and not isinstance(body, dict)):
                    reply = _Reply(400, {"message": "Cannot parse JSON body"})
                else:
                    try:
                        reply = self._dispatch(request, body or {}, form)
                    except KongError as exc:
                        reply = _Reply(exc.status, exc.body)
            entry.status = reply.status
        headers = {"Server": f"kong/{KONG_VERSION}", **reply.headers}
        if reply.status == 204 or reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return web.Response(status=reply.status, headers=headers, body=orjson.dumps(reply.body))

    def _fault(self, method: str, path: str) -> _Reply | None:
        fault = self._take_fault(method, path)
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return _Reply(
                fault.status, {"message": fault.message or _message(fault.status)}, headers
            )
        return None

    def _dispatch(self, request: web.Request, body: Entity, coerce: bool) -> _Reply:
        method = request.method
        segments = [unquote(s) for s in request.rel_url.raw_path.split("/") if s]
        path = "/" + "/".join(quote(s, safe="") for s in segments)
        query = request.query
        if not segments or segments in (["status"], ["plugins", "enabled"]):
            if method != "GET":
                return _Reply(405, {"message": "Method not allowed"})
            return _Reply(200, self._info(segments))
        top = _TOP.get(segments[0])
        if top is not None and len(segments) == 1:
            if method == "GET":
                items = list(self._data[top].values())
                if top == "consumers" and "custom_id" in query:
                    items = [c for c in items if c.get("custom_id") == query["custom_id"]]
                return _Reply(200, self._page(items, query, path))
            if method == "POST" and top != "keyauth_credentials":
                return _Reply(201, self._insert(top, body, coerce))
            return _Reply(405, {"message": "Method not allowed"})
        if top is not None and len(segments) == 2 and top != "keyauth_credentials":
            entity = self._find(top, segments[1])
            if method == "DELETE":
                if entity is not None:
                    self._delete(top, entity)
                return _Reply(204)
            if method == "PUT":
                return _Reply(200, self._upsert(top, segments[1], body, coerce))
            if method not in ("GET", "PATCH"):
                return _Reply(405, {"message": "Method not allowed"})
            if entity is None:
                return _Reply(404, {"message": "Not found"})
            if method == "PATCH":
                entity = self._update(top, entity, body, coerce)
            return _Reply(200, entity)
        nested = _NESTED.get((segments[0], segments[2])) if len(segments) in (3, 4) else None
        if top is None or nested is None:
            return _Reply(404, {"message": "Not found"})
        collection, fk = nested
        parent = self._find(top, segments[1])
        if parent is None:
            return _Reply(404, {"message": "Not found"})
        if len(segments) == 3:
            if method == "GET":
                items = [
                    e
                    for e in self._data[collection].values()
                    if (e[fk] or {}).get("id") == parent["id"]
                ]
                return _Reply(200, self._page(items, query, path))
            if method == "POST":
                return _Reply(
                    201, self._insert(collection, {**body, fk: {"id": parent["id"]}}, coerce)
                )
            return _Reply(405, {"message": "Method not allowed"})
        child = self._find(collection, segments[3])
        if method not in ("GET", "PATCH", "DELETE"):
            return _Reply(405, {"message": "Method not allowed"})
        if child is None or (child[fk] or {}).get("id") != parent["id"]:
            return _Reply(404, {"message": "Not found"})
        if method == "DELETE":
            self._delete(collection, child)
            return _Reply(204)
        if method == "PATCH":
            patch = body if fk in body else {**body, fk: {"id": parent["id"]}}
            child = self._update(collection, child, patch, coerce)
        return _Reply(200, child)

    def _info(self, segments: list[str]) -> Entity:
        if segments == ["status"]:
            return {"database": {"reachable": True}, "server": {"connections_active": 1}}
        if segments == ["plugins", "enabled"]:
            return {"enabled_plugins": sorted(PLUGINS)}
        return {
            "version": KONG_VERSION,
            "edition": "community",
            "tagline": "Welcome to kong",
            "hostname": "fake-kong",
            "node_id": "00000000-0000-4000-8000-000000000000",
            "plugins": {
                "available_on_server": {name: {"version": KONG_VERSION} for name in PLUGINS},
                "enabled_in_cluster": sorted({p["name"] for p in self._data["plugins"].values()}),
            },
            "configuration": {"database": "postgres"},
        }

    def _page(self, items: list[Entity], query: Mapping[str, str], path: str) -> Entity:
        tags = query.get("tags")
        if tags is not None:
            if _TAGS_AND.match(tags):
                wanted, match_all = tags.split(","), True
            elif _TAGS_OR.match(tags):
                wanted, match_all = tags.split("/"), False
            else:
                body = {
                    "code": 11,
                    "name": "invalid options",
                    "message": "invalid option (tags: invalid filter syntax)",
                    "options": {"tags": "invalid filter syntax"},
                }
                raise KongError(400, body)
            check = all if match_all else any
            items = [e for e in items if check(t in (e.get("tags") or []) for t in wanted)]
        size = DEFAULT_PAGE_SIZE
        if "size" in query:
            try:
                number = float(query["size"])
            except ValueError:
                raise KongError(
                    400, {"code": 9, "name": "invalid size", "message": "size must be a number"}
                ) from None
            if not number.is_integer() or not 1 <= number <= MAX_PAGE_SIZE:
                message = f"size must be an integer between 1 and {MAX_PAGE_SIZE}"
                raise KongError(400, {"code": 9, "name": "invalid size", "message": message})
            size = int(number)
        if "offset" in query:
            after = self._decode_offset(query["offset"])
            items = [e for e in items if self._seq[e["id"]] > after]
        page = items[:size]
        result: Entity = {"data": page, "next": None}
        if len(items) > size:
            offset = base64.b64encode(orjson.dumps([self._seq[page[-1]["id"]]])).decode()
            result["offset"] = offset
            extra = "".join(
                f"&{name}={quote(query[name], safe='')}"
                for name in ("tags", "size")
                if name in query
            )
            result["next"] = f"{path}?offset={quote(offset, safe='')}{extra}"
        return result

    @staticmethod
    def _decode_offset(offset: str) -> int:
        def invalid(reason: str) -> KongError:
            message = f"'{offset}' is not a valid offset: {reason}"
            return KongError(400, {"code": 7, "name": "invalid offset", "message": message})

        try:
            decoded = base64.b64decode(offset, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("bad base64 encoding") from None
        try:
            value = orjson.loads(decoded)
        except orjson.JSONDecodeError:
            raise invalid("bad json encoding") from None
        if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], int)):
            raise invalid("bad json encoding")
        return value[0]
