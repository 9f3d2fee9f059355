"""A fake of Microsoft Defender for Cloud alerts over Azure Resource Manager.

`FakeDefender` is a `FakeArm` (same token endpoint, bearer tokens, ARM error bodies, faults
and request log, and its API Management service) that also serves the alert resources of
`Microsoft.Security` (CONTRACTS.md, section 1, "Alert state write-back")::

    defender = FakeDefender(tenant="t", client_id="c", client_secret="s")
    alert_id = defender.add_alert(json.load(open("defender-rest-suspicious-ip.json")))
    with defender.running():
        ...  # POST defender.url + alert_id + "/resolve?api-version=2022-01-01" -> 204

Served, for any subscription that holds an alert (or the fake's own `subscription_id`):

- `GET {alert id}` and `POST {alert id}/{activate|dismiss|resolve|inProgress}` (204, no body),
  where an alert id is `/subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Security
  /locations/{location}/alerts/{name}`; the verbs set `properties.status` to Active,
  Dismissed, Resolved or InProgress;
- `GET /subscriptions/{sub}/providers/Microsoft.Security/locations` (api-version
  2015-06-01-preview): the subscription's Defender for Cloud home location;
- `GET /subscriptions`: the subscriptions the caller can see.

Choices where the vendor documents nothing: an unknown alert answers 404 `NotFound`; any
verb is allowed from any status; with `can_write` False a verb answers ARM's 403
`AuthorizationFailed`, as for a principal without the Security Admin role.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from clampdown.testing.arm import FakeArm, _ArmError, _Ctx, _respond, _Result

__all__ = ["ALERT_API_VERSIONS", "ALERT_VERBS", "FakeDefender"]

ALERT_API_VERSIONS = frozenset({"2019-01-01", "2020-01-01", "2021-01-01", "2022-01-01"})
LOCATIONS_API_VERSION = "2015-06-01-preview"
ALERT_VERBS = {
    "activate": "Active",
    "dismiss": "Dismissed",
    "resolve": "Resolved",
    "inprogress": "InProgress",
}
"""Verb (as ARM matches it, case-insensitively) -> the alert's status afterwards."""

_ALERT_PATH = re.compile(
    r"(/subscriptions/([^/]+)(?:/resourceGroups/[^/]+)?/providers/Microsoft\.Security"
    r"/locations/[^/]+/alerts/[^/]+)(?:/([^/]+))?",
    re.IGNORECASE,
)
_LOCATIONS_PATH = re.compile(
    r"/subscriptions/([^/]+)/providers/Microsoft\.Security/locations", re.IGNORECASE
)
_SUBSCRIPTIONS_PATH = re.compile(r"/subscriptions/?", re.IGNORECASE)


class FakeDefender(FakeArm):
    """ARM with Defender for Cloud alerts; see the module docstring for what is served.

    `home_location` is every subscription's Defender for Cloud location; `transitions`
    records each verb applied, as (alert id, status after).
    """

    def __init__(self, *, home_location: str = "westeurope", **arm: Any) -> None:
        super().__init__(**arm)
        self.home_location = home_location
        self.can_write = True
        self.transitions: list[tuple[str, str]] = []
        self._alerts: dict[str, dict[str, Any]] = {}

    # ----- seeding and reading state

    def add_alert(self, alert: dict[str, Any]) -> str:
        """Add an alert resource (REST shape, with its ARM `id`); returns the id."""
        copy: dict[str, Any] = orjson.loads(orjson.dumps(alert))
        alert_id = str(copy["id"])
        if _ALERT_PATH.fullmatch(alert_id) is None:
            raise ValueError(f"not the ARM id of a Defender for Cloud alert: {alert_id!r}")
        copy.setdefault("properties", {}).setdefault("status", "Active")
        with self.lock:
            self._alerts[alert_id.casefold()] = copy
        return alert_id

    def alert(self, alert_id: str) -> dict[str, Any]:
        """A copy of an alert resource (KeyError if unknown)."""
        with self.lock:
            found: dict[str, Any] = orjson.loads(orjson.dumps(self._alerts[alert_id.casefold()]))
            return found

    def status_of(self, alert_id: str) -> str:
        """An alert's `properties.status` (KeyError if unknown)."""
        return str(self.alert(alert_id)["properties"]["status"])

    # ----- routing (hooks of FakeArm, called with the lock held)

    def _service_rest(self, path: str) -> str:
        if self._security_path(path):
            return path
        return super()._service_rest(path)

    def _route(self, ctx: _Ctx, rest: str) -> web.Response:
        path = ctx.path
        if _SUBSCRIPTIONS_PATH.fullmatch(path):
            return self._only(ctx, "GET", self._list_azure_subscriptions)
        if m := _LOCATIONS_PATH.fullmatch(path):
            subscription = m.group(1)
            return self._only(ctx, "GET", lambda: self._locations(ctx, subscription))
        if m := _ALERT_PATH.fullmatch(path):
            alert_id, subscription, verb = m.groups()
            self._known_subscription(subscription)
            if ctx.api_version not in ALERT_API_VERSIONS:
                raise _unsupported_version(ctx.api_version, "locations/alerts", ALERT_API_VERSIONS)
            if verb is None:
                return self._only(ctx, "GET", lambda: self._get_alert(alert_id))
            return self._only(ctx, "POST", lambda: self._set_state(alert_id, verb))
        return super()._route(ctx, rest)

    @staticmethod
    def _security_path(path: str) -> bool:
        return any(p.fullmatch(path) for p in (_SUBSCRIPTIONS_PATH, _LOCATIONS_PATH, _ALERT_PATH))

    @staticmethod
    def _only(ctx: _Ctx, method: str, handler: Callable[[], web.Response]) -> web.Response:
        if ctx.method != method:
            raise _ArmError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{ctx.method}'.",
                apim=False,
            )
        return handler()

    def _azure_subscriptions(self) -> list[str]:
        seen = {self.subscription_id.casefold(): self.subscription_id}
        for alert_id in self._alerts:
            m = _ALERT_PATH.fullmatch(alert_id)
            assert m is not None
            seen.setdefault(m.group(2).casefold(), m.group(2))
        return list(seen.values())

    def _known_subscription(self, subscription: str) -> None:
        if subscription.casefold() not in {s.casefold() for s in self._azure_subscriptions()}:
            raise _ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.",
                apim=False,
            )

    # ----- handlers

    def _list_azure_subscriptions(self) -> web.Response:
        value = [
            {
                "id": f"/subscriptions/{sub}",
                "authorizationSource": "RoleBased",
                "subscriptionId": sub,
                "tenantId": self.tenant,
                "displayName": f"Subscription {sub[:8]}",
                "state": "Enabled",
            }
            for sub in self._azure_subscriptions()
        ]
        body = {"value": value, "count": {"type": "Total", "value": len(value)}}
        return _respond(_Result(200, body))

    def _locations(self, ctx: _Ctx, subscription: str) -> web.Response:
        self._known_subscription(subscription)
        if ctx.api_version != LOCATIONS_API_VERSION:
            raise _unsupported_version(
                ctx.api_version, "locations", frozenset({LOCATIONS_API_VERSION})
            )
        location = {
            "id": f"/subscriptions/{subscription}/providers/Microsoft.Security/locations/"
            f"{self.home_location}",
            "name": self.home_location,
            "type": "Microsoft.Security/locations",
            "properties": {"homeRegionName": self.home_location},
        }
        return _respond(_Result(200, {"value": [location]}))

    def _require_alert(self, alert_id: str) -> dict[str, Any]:
        found = self._alerts.get(alert_id.casefold())
        if found is None:
            name = alert_id.rsplit("/", 1)[-1]
            raise _ArmError(404, "NotFound", f"The alert '{name}' was not found.", apim=False)
        return found

    def _get_alert(self, alert_id: str) -> web.Response:
        return _respond(_Result(200, self._require_alert(alert_id)))

    def _set_state(self, alert_id: str, verb: str) -> web.Response:
        status = ALERT_VERBS.get(verb.casefold())
        if status is None:
            raise _ArmError(
                404,
                "NotFound",
                f"No HTTP resource was found that matches the request URI (action '{verb}').",
                apim=False,
            )
        found = self._require_alert(alert_id)
        if not self.can_write:
            raise _ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{self.client_id}' with object id '{self.client_id}' does not have "
                f"authorization to perform action 'Microsoft.Security/locations/alerts/{verb}"
                f"/action' over scope '{alert_id}' or the scope is invalid. If access was "
                "recently granted, please refresh your credentials.",
                apim=False,
            )
        found["properties"]["status"] = status
        self.transitions.append((str(found["id"]), status))
        return _respond(_Result(204))


def _unsupported_version(version: str, kind: str, supported: frozenset[str]) -> _ArmError:
    return _ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for API version '{version}' and type "
        f"'{kind}'. The supported api-versions are '{', '.join(sorted(supported))}'.",
        apim=False,
    )
