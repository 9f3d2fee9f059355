"""A fake of Microsoft Defender for Cloud alerts and assessments over Azure Resource Manager.

`FakeDefender` is a `FakeArm` (same token endpoint, bearer tokens, ARM error bodies, faults
and request log, and its API Management service) that also serves the alert and assessment
resources of `Microsoft.Security` (CONTRACTS.md, section 1)::

    defender = FakeDefender(tenant="t", client_id="c", client_secret="s", page_size=3)
    alert_id = defender.add_alert(json.load(open("defender-rest-suspicious-ip.json")))
    with defender.running():
        ...  # POST defender.url + alert_id + "/resolve?api-version=2022-01-01" -> 204

Served, for any subscription that holds an alert or an assessment (or the fake's own
`subscription_id`):

- `GET {alert id}` and `POST {alert id}/{activate|dismiss|resolve|inProgress}` (204, no body),
  where an alert id is `/subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Security
  /locations/{location}/alerts/{name}`; the verbs set `properties.status` to Active,
  Dismissed, Resolved or InProgress;
- `GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Security/alerts`
  (api-version 2019-01-01 to 2022-01-01): the alerts of the subscription (or of the resource
  group, by their id), `page_size` per page, `{"value": [...], "nextLink": ...}` with a
  `$skipToken`; the last page has no `nextLink`;
- `GET /subscriptions/{sub}/providers/Microsoft.Security/assessments` (api-version
  2020-01-01 or 2021-06-01): every assessment of the subscription, paged the same way;
  `properties.metadata` only with `$expand=metadata`, as the service does;
- `GET /subscriptions/{sub}/providers/Microsoft.Security/locations` (api-version
  2015-06-01-preview): the subscription's Defender for Cloud home location;
- `GET /subscriptions`: the subscriptions the caller can see.

Change the detector's state between requests with `update_alert` and
`set_assessment_status`. Faults (`fail_next(429, path_contains="/alerts", retry_after=2)`)
answer with ARM's error body; a request without a valid bearer token answers 401.

Choices where the vendor documents nothing: an unknown alert answers 404 `NotFound`; any
verb is allowed from any status; with `can_write` False a verb answers ARM's 403
`AuthorizationFailed`, as for a principal without the Security Admin role; lists keep the
order items were added in; a `$skipToken` the fake did not issue answers 400
`InvalidSkipToken`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from clampdown.testing.arm import FakeArm, _ArmError, _Ctx, _respond, _Result

__all__ = [
    "ALERT_API_VERSIONS",
    "ALERT_VERBS",
    "ASSESSMENT_API_VERSIONS",
    "ASSESSMENT_STATUSES",
    "FakeDefender",
]

ALERT_API_VERSIONS = frozenset({"2019-01-01", "2020-01-01", "2021-01-01", "2022-01-01"})
ASSESSMENT_API_VERSIONS = frozenset({"2020-01-01", "2021-06-01"})
ASSESSMENT_STATUSES = frozenset({"Healthy", "Unhealthy", "NotApplicable"})
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
_ALERT_LIST_PATH = re.compile(
    r"/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?/providers/Microsoft\.Security/alerts",
    re.IGNORECASE,
)
_ASSESSMENT_LIST_PATH = re.compile(
    r"/subscriptions/([^/]+)/providers/Microsoft\.Security/assessments", re.IGNORECASE
)
_ASSESSMENT_ID = re.compile(
    r"/subscriptions/([^/]+)/.*/providers/Microsoft\.Security/assessments/[^/]+", re.IGNORECASE
)
_GROUP_OF = re.compile(r"/subscriptions/[^/]+/resourceGroups/([^/]+)/", re.IGNORECASE)


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
        self._assessments: dict[str, dict[str, Any]] = {}
        self.next_link_base: str | None = None
        """Scheme and host of the next links lists give (default: the fake's own URL); point
        it elsewhere to see a client refuse to follow."""

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

    def update_alert(self, alert_id: str, **properties: Any) -> None:
        """Change an alert's properties as the detector would (KeyError if unknown)."""
        with self.lock:
            self._alerts[alert_id.casefold()]["properties"].update(
                orjson.loads(orjson.dumps(properties))
            )

    def add_assessment(self, assessment: dict[str, Any]) -> str:
        """Add (or replace) an assessment resource (with its ARM `id`); returns the id."""
        copy: dict[str, Any] = orjson.loads(orjson.dumps(assessment))
        assessment_id = str(copy["id"])
        if _ASSESSMENT_ID.fullmatch(assessment_id) is None:
            raise ValueError(f"not the ARM id of an assessment: {assessment_id!r}")
        props = copy.setdefault("properties", {})
        status = props.setdefault("status", {"code": "Unhealthy"})
        status.setdefault("firstEvaluationDate", _now())
        status.setdefault("statusChangeDate", status["firstEvaluationDate"])
        with self.lock:
            self._assessments[assessment_id.casefold()] = copy
        return assessment_id

    def assessment(self, assessment_id: str) -> dict[str, Any]:
        """A copy of an assessment resource (KeyError if unknown)."""
        with self.lock:
            found: dict[str, Any] = orjson.loads(
                orjson.dumps(self._assessments[assessment_id.casefold()])
            )
            return found

    def set_assessment_status(
        self,
        assessment_id: str,
        code: str,
        *,
        cause: str | None = None,
        description: str | None = None,
    ) -> None:
        """Set an assessment's `status.code` (Healthy, Unhealthy, NotApplicable) as Defender
        for Cloud would after evaluating the resource again; `statusChangeDate` becomes now."""
        if code not in ASSESSMENT_STATUSES:
            raise ValueError(f"unknown assessment status {code!r}")
        with self.lock:
            status = self._assessments[assessment_id.casefold()]["properties"]["status"]
            if status.get("code") != code:
                status["statusChangeDate"] = _now()
            status["code"] = code
            if cause is not None:
                status["cause"] = cause
            if description is not None:
                status["description"] = description

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
        if m := _ALERT_LIST_PATH.fullmatch(path):
            subscription, group = m.groups()
            self._known_subscription(subscription)
            if ctx.api_version not in ALERT_API_VERSIONS:
                raise _unsupported_version(ctx.api_version, "alerts", ALERT_API_VERSIONS)
            return self._only(ctx, "GET", lambda: self._list_alerts(ctx, subscription, group))
        if m := _ASSESSMENT_LIST_PATH.fullmatch(path):
            subscription = m.group(1)
            self._known_subscription(subscription)
            if ctx.api_version not in ASSESSMENT_API_VERSIONS:
                raise _unsupported_version(ctx.api_version, "assessments", ASSESSMENT_API_VERSIONS)
            return self._only(ctx, "GET", lambda: self._list_assessments(ctx, subscription))
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
        return any(
            p.fullmatch(path)
            for p in (
                _SUBSCRIPTIONS_PATH,
                _LOCATIONS_PATH,
                _ALERT_PATH,
                _ALERT_LIST_PATH,
                _ASSESSMENT_LIST_PATH,
            )
        )

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
        for assessment_id in self._assessments:
            m = _ASSESSMENT_ID.fullmatch(assessment_id)
            assert m is not None
            seen.setdefault(m.group(1).casefold(), m.group(1))
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

    def _list_alerts(self, ctx: _Ctx, subscription: str, group: str | None) -> web.Response:
        items = []
        for alert in self._alerts.values():
            m = _ALERT_PATH.fullmatch(str(alert["id"]))
            assert m is not None
            if m.group(2).casefold() != subscription.casefold():
                continue
            if group is not None:
                own = _GROUP_OF.match(str(alert["id"]))
                if own is None or own.group(1).casefold() != group.casefold():
                    continue
            items.append(alert)
        return _respond(_Result(200, self._list_page(ctx, items)))

    def _list_assessments(self, ctx: _Ctx, subscription: str) -> web.Response:
        expand = {part.strip().casefold() for part in ctx.query.get("$expand", "").split(",")}
        items = []
        for assessment in self._assessments.values():
            m = _ASSESSMENT_ID.fullmatch(str(assessment["id"]))
            assert m is not None
            if m.group(1).casefold() != subscription.casefold():
                continue
            shown: dict[str, Any] = orjson.loads(orjson.dumps(assessment))
            if "metadata" not in expand:
                shown["properties"].pop("metadata", None)
            items.append(shown)
        return _respond(_Result(200, self._list_page(ctx, items)))

    def _list_page(self, ctx: _Ctx, items: list[dict[str, Any]]) -> dict[str, Any]:
        """One page of a Microsoft.Security list, with a `nextLink` while more remain."""
        token = ctx.query.get("$skipToken", "0")
        if not token.isdigit() or int(token) > len(items):
            raise _ArmError(
                400, "InvalidSkipToken", f"The skip token '{token}' is not valid.", apim=False
            )
        start = int(token)
        page = items[start : start + self.page_size]
        body: dict[str, Any] = {"value": page}
        if start + len(page) < len(items):
            query = dict(ctx.query, **{"$skipToken": str(start + len(page))})
            base = self.next_link_base or self.url
            body["nextLink"] = f"{base}{ctx.path}?{urlencode(query, safe='$')}"
        return body

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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unsupported_version(version: str, kind: str, supported: frozenset[str]) -> _ArmError:
    return _ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for API version '{version}' and type "
        f"'{kind}'. The supported api-versions are '{', '.join(sorted(supported))}'.",
        apim=False,
    )
