"""The `kong` target: containment through Kong Gateway's Admin API.

Clampdown owns only plugins it created, each tagged `clampdown` and `clampdown-scope:<scope>`;
it changes no other plugin, and of its own plugins only the config fields it manages (Kong
merges a PATCH into the stored config, so fields a person set there survive).

Scopes: `*` (every service), `service:<name or id>`, `route:<name or id>`.
- block: an `ip-restriction` plugin at the scope whose deny list merges every blocked ip/cidr;
- throttle: a `rate-limiting` plugin per consumer (subject `client_id`, `user` or `api_key`
  naming a Kong consumer) at the scope; the strictest rate wins when several apply;
- disable_endpoint: `route:<r>` gets a `request-termination` plugin (403); `service:<s>` is
  switched off with `enabled: false`, and switched on again only if Clampdown switched it off.
- credential.revoke: deletes a consumer's key-auth key.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import quote

from clampdown.actions.contract import ContainmentSpec
from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.model import ContainmentKind, SubjectType
from clampdown.targets.driver import Check, Credential, Driver, Wanted
from clampdown.targets.settings import KongTarget, require_secret

OWNER_TAG = "clampdown"
DISABLED_TAG = "clampdown-disabled"
_NAME = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_CONSUMERS = (SubjectType.CLIENT_ID, SubjectType.USER, SubjectType.API_KEY)
# Kong's rate-limiting windows, in seconds.
_WINDOWS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86_400))


def scope_tag(scope: str) -> str:
    """The tag naming the scope an owned plugin serves."""
    return f"clampdown-scope:{scope}"


def parse_scope(scope: str) -> tuple[str, str] | None:
    """('service', name) or ('route', name) for a scope; None for the whole gateway."""
    if scope == "*":
        return None
    kind, _, name = scope.partition(":")
    if kind not in ("service", "route") or not _NAME.match(name):
        raise PermanentError(
            f"Kong scope {scope!r} is not '*', 'service:<name>' or 'route:<name>' "
            "(names are letters, digits and . _ ~ -)"
        )
    return kind, name


def rate_config(rate: int, period: int) -> dict[str, int]:
    """Kong's window closest to `period` (not shorter), with the rate scaled to it."""
    name, window = next(((n, w) for n, w in _WINDOWS if w >= period), _WINDOWS[-1])
    return {name: max(1, round(rate * window / period))}


class KongDriver(Driver):
    """Containment and key revocation through the Kong Admin API."""

    type: ClassVar[str] = "kong"
    settings: KongTarget

    # -- gateway -------------------------------------------------------------------------

    def accept(self, spec: ContainmentSpec) -> ContainmentSpec:
        kind, subject_type = spec.kind, spec.subject_type
        if kind is ContainmentKind.DISABLE:
            endpoint = parse_scope(spec.subject)
            if endpoint is None:
                raise PermanentError(
                    "Kong disables 'service:<name>' or 'route:<name>', not the whole gateway"
                )
            return spec.model_copy(update={"scope": spec.subject})
        parse_scope(spec.scope)
        if kind is ContainmentKind.BLOCK and subject_type in (SubjectType.IP, SubjectType.CIDR):
            return spec
        if kind is ContainmentKind.THROTTLE and subject_type in _CONSUMERS:
            if not _NAME.match(spec.subject):
                raise PermanentError(f"{spec.subject!r} is not a Kong consumer name or id")
            return spec
        if kind is ContainmentKind.THROTTLE and subject_type is SubjectType.IP:
            raise PermanentError(
                "Kong's rate-limiting cannot single out one address: throttle the consumer "
                "(client_id), or block the address"
            )
        raise self.unsupported(f"{kind.value} a {subject_type.value}")

    async def reconcile(self, scope: str | None, wanted: Wanted) -> None:
        assert scope is not None
        for _ in range(3):
            try:
                return await self._reconcile(scope, wanted)
            except _Raced:
                continue  # another process created our plugin first: read again
        raise TransientError(f"target {self.name}: {scope} keeps changing under us")

    async def _reconcile(self, scope: str, wanted: Wanted) -> None:
        where = parse_scope(scope)
        # Read what we own first, then what is wanted: a containment committed in between
        # is then in `wanted`, never lost.
        owned = await self._owned(scope)
        specs = await wanted(scope)
        desired = await self._desired(specs, where)
        for (name, consumer), config in desired.items():
            plugin = next(
                (p for p in owned if p["name"] == name and _consumer_id(p) == consumer), None
            )
            if plugin is None:
                await self._create(scope, where, name, consumer, config)
            elif any(plugin["config"].get(k) != v for k, v in config.items()):
                await self._call("PATCH", f"/plugins/{plugin['id']}", {"config": config})
        for plugin in owned:
            if (plugin["name"], _consumer_id(plugin)) not in desired:
                await self._call("DELETE", f"/plugins/{plugin['id']}", ok_missing=True)
        if where is not None and where[0] == "service":
            disabled = any(s.kind is ContainmentKind.DISABLE for s in specs)
            await self._switch_service(where[1], off=disabled)

    async def enforces(self, spec: ContainmentSpec) -> bool:
        where = parse_scope(spec.scope)
        if spec.kind is ContainmentKind.DISABLE and where and where[0] == "service":
            service = await self._get(f"/services/{_segment(where[1])}")
            return service is not None and service.get("enabled") is False
        owned = await self._owned(spec.scope)
        if spec.kind is ContainmentKind.BLOCK:
            return any(
                p["name"] == "ip-restriction" and spec.subject in (p["config"].get("deny") or [])
                for p in owned
            )
        if spec.kind is ContainmentKind.THROTTLE:
            consumer = await self._consumer_id(spec.subject)
            return any(p["name"] == "rate-limiting" and _consumer_id(p) == consumer for p in owned)
        return any(p["name"] == "request-termination" and p.get("enabled", True) for p in owned)

    async def _desired(
        self, specs: list[ContainmentSpec], where: tuple[str, str] | None
    ) -> dict[tuple[str, str | None], dict[str, Any]]:
        desired: dict[tuple[str, str | None], dict[str, Any]] = {}
        blocked = sorted(
            {s.subject for s in specs if s.kind is ContainmentKind.BLOCK},
            key=lambda address: (":" in address, address),  # IPv4 first
        )
        if blocked:
            desired[("ip-restriction", None)] = {"deny": blocked}
        strictest: dict[str, tuple[float, dict[str, int]]] = {}
        for spec in specs:
            if spec.kind is ContainmentKind.THROTTLE and spec.rate and spec.period_seconds:
                consumer = await self._consumer_id(spec.subject)
                per_second = spec.rate / spec.period_seconds
                if consumer not in strictest or per_second < strictest[consumer][0]:
                    strictest[consumer] = (per_second, rate_config(spec.rate, spec.period_seconds))
        for consumer, (_, limits) in strictest.items():
            # Only the window in use is set; the others are cleared so a PATCH replaces it.
            config: dict[str, Any] = {name: None for name, _ in _WINDOWS}
            desired[("rate-limiting", consumer)] = {
                **config,
                **limits,
                "limit_by": "consumer",
                "policy": "local",
            }
        disabled = any(s.kind is ContainmentKind.DISABLE for s in specs)
        if disabled and where is not None and where[0] == "route":
            desired[("request-termination", None)] = {
                "status_code": 403,
                "message": "Disabled by Clampdown",
            }
        return desired

    async def _create(
        self,
        scope: str,
        where: tuple[str, str] | None,
        name: str,
        consumer: str | None,
        config: dict[str, Any],
    ) -> None:
        path = "/plugins" if where is None else f"/{where[0]}s/{_segment(where[1])}/plugins"
        body: dict[str, Any] = {
            "name": name,
            "config": {k: v for k, v in config.items() if v is not None},
            "tags": [OWNER_TAG, scope_tag(scope)],
        }
        if consumer is not None:
            body["consumer"] = {"id": consumer}
        reply = await self._send("POST", path, body)
        if reply.status == 409:
            if any(
                p["name"] == name and _consumer_id(p) == consumer for p in await self._owned(scope)
            ):
                raise _Raced
            raise PermanentError(
                f"target {self.name}: {scope} already has a plugin named {name} that Clampdown "
                f"does not own; Kong allows one per scope ({_kong_message(reply)})"
            )
        self._raise_for(reply)

    async def _switch_service(self, service: str, *, off: bool) -> None:
        current = await self._get(f"/services/{_segment(service)}")
        if current is None:
            raise PermanentError(f"target {self.name}: no service {service!r}")
        tags = list(current.get("tags") or [])
        ours = DISABLED_TAG in tags
        if off and current.get("enabled", True):
            body = {"enabled": False, "tags": [*tags, DISABLED_TAG]}
            await self._call("PATCH", f"/services/{_segment(service)}", body)
        elif not off and ours:
            # Switched off by Clampdown: switch it on again. Switched off by a person: leave it.
            body = {"enabled": True, "tags": [t for t in tags if t != DISABLED_TAG] or None}
            await self._call("PATCH", f"/services/{_segment(service)}", body)

    async def _owned(self, scope: str) -> list[dict[str, Any]]:
        plugins: list[dict[str, Any]] = []
        path: str | None = f"/plugins?tags={quote(scope_tag(scope), safe=':')}"
        while path:
            reply = await self._send("GET", path)
            self._raise_for(reply)
            page = reply.json() or {}
            plugins += [p for p in page.get("data", []) if OWNER_TAG in (p.get("tags") or [])]
            path = page.get("next")
        return plugins

    async def _consumer_id(self, consumer: str) -> str:
        found = await self._get(f"/consumers/{_segment(consumer)}")
        if found is None:
            raise PermanentError(f"target {self.name}: no consumer {consumer!r}")
        return str(found["id"])

    # -- credentials ---------------------------------------------------------------------

    async def revoke(self, credential: Credential) -> None:
        consumer, key = credential.consumer, credential.key
        if not consumer or not key:
            raise PermanentError(f"target {self.name}: credential.revoke needs consumer and key")
        await self._consumer_id(consumer)
        await self._call(
            "DELETE", f"/consumers/{_segment(consumer)}/key-auth/{_segment(key)}", ok_missing=True
        )

    async def credential_state(self, credential: Credential) -> str:
        consumer, key = _segment(credential.consumer or ""), _segment(credential.key or "")
        path = f"/consumers/{consumer}/key-auth/{key}"
        return "active" if await self._get(path) is not None else "revoked"

    # -- operations ----------------------------------------------------------------------

    async def check(self) -> list[Check]:
        reply = await self._send("GET", f"/plugins?tags={OWNER_TAG}&size=1")
        if reply.status == 200:
            owned = len((reply.json() or {}).get("data", []))
            detail = "Admin API readable" + (", Clampdown plugins present" if owned else "")
            return [Check("admin api", True, detail)]
        return [Check("admin api", False, f"{reply.status}: {_kong_message(reply)}")]

    # -- HTTP ----------------------------------------------------------------------------

    async def _get(self, path: str) -> dict[str, Any] | None:
        reply = await self._send("GET", path)
        if reply.status == 404:
            return None
        self._raise_for(reply)
        body = reply.json()
        return body if isinstance(body, dict) else None

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        ok_missing: bool = False,
    ) -> None:
        reply = await self._send(method, path, body)
        if ok_missing and reply.status == 404:
            return
        self._raise_for(reply)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        headers = {"Accept": "application/json"}
        if self.settings.admin_token is not None:
            token = require_secret(self.settings.admin_token, f"target {self.name} admin_token")
            headers["Kong-Admin-Token"] = token
        url = self.settings.admin_url.rstrip("/") + path
        return await self.http.request(
            method, url, json=body, headers=headers, timeout=self.timeout
        )

    def _raise_for(self, reply: Reply) -> None:
        if 200 <= reply.status < 300:
            return
        message = f"target {self.name}: Kong answered {reply.status}: {_kong_message(reply)}"
        if reply.status == 429 or reply.status >= 500:
            raise TransientError(message, retry_after=retry_after(reply.headers))
        if reply.status in (401, 403):
            raise PreconditionError(message + " (check admin_token and its permissions)")
        raise PermanentError(message)


class _Raced(Exception):
    """Another writer created the plugin we were about to create."""


def _segment(value: str) -> str:
    """One path segment; names from findings must not walk the Admin API's paths."""
    if value in ("", ".", ".."):
        raise PermanentError(f"{value!r} cannot name a Kong entity")
    return quote(value, safe="")


def _consumer_id(plugin: dict[str, Any]) -> str | None:
    consumer = plugin.get("consumer")
    return str(consumer["id"]) if isinstance(consumer, dict) and consumer.get("id") else None


def _kong_message(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        fields = body.get("fields")
        return str(body["message"]) + (f" {fields}" if fields else "")
    return reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
