"""The `defender` target: alert state write-back to Microsoft Defender for Cloud, over ARM.

update_finding sends `POST {alert id}/{inProgress|resolve|dismiss|activate}?api-version=...`
(204) for the states in_progress, resolved, dismissed and active. The alert API takes no
comment: a comment is not written anywhere.

Which alert (its ARM id, `/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.Security/locations/{location}/alerts/{name}`), in this order:

1. the finding's source_id, when it is such an ARM id;
2. the alert's portal link (`alertUri`, `AlertLink`), when it is the deep link Defender for
   Cloud writes: `.../alertId/{name}/subscriptionId/{sub}/resourceGroup/{rg}/.../location/{loc}`;
3. for shapes whose source_id is the Defender alert name (defender-rest and
   defender-workflow: systemAlertId; securityalert: VendorOriginalId; graph:
   providerAlertId): the subscription and resource group of the first Azure resource of the
   finding (the alerted API), and the subscription's Defender for Cloud home location, read
   from `GET /subscriptions/{sub}/providers/Microsoft.Security/locations`.

Anything else (a Sentinel incident without a deep link, a recommendation, another detector)
is refused, saying what is missing. Every part is checked against a strict character set
(`..` refused) before it becomes one quoted URL path segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import Reply
from clampdown.errors import ActionError, ConfigError, PermanentError, PreconditionError
from clampdown.targets.azure.arm import ArmClient, ArmError, arm_error
from clampdown.targets.azure.token import Identity, TokenCache
from clampdown.targets.driver import Check, Driver
from clampdown.targets.settings import DefenderTarget

VERBS = {
    "in_progress": "inProgress",
    "resolved": "resolve",
    "dismissed": "dismiss",
    "active": "activate",
}
"""Clampdown's finding states -> the alert API's verbs."""

LOCATIONS_API_VERSION = "2015-06-01-preview"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
NAMED_BY_SOURCE_ID = frozenset({"defender-rest", "defender-workflow", "securityalert", "graph"})
"""Delivery shapes whose source_id is the Defender for Cloud alert name."""

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GROUP = re.compile(r"[A-Za-z0-9_.()-]{0,89}[A-Za-z0-9_()-]")
_LOCATION = re.compile(r"[A-Za-z0-9]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")
_ARM_ID = re.compile(
    r"/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?/providers/Microsoft\.Security"
    r"/locations/([^/]+)/alerts/([^/]+)",
    re.IGNORECASE,
)
_DEEP_LINK = re.compile(
    r"/alertId/([^/]+)/subscriptionId/([^/]+)/resourceGroup/([^/]+)/(?:[^?#]*/)?location/([^/?#]+)",
    re.IGNORECASE,
)
_RESOURCE = re.compile(r"/subscriptions/([^/]+)/resourceGroups/([^/]+)(?:/|$)", re.IGNORECASE)


@dataclass(frozen=True)
class AlertRef:
    """A Defender for Cloud alert as ARM names it; every part checked."""

    subscription: str
    resource_group: str | None
    location: str
    name: str
    derived: bool = False
    """True when the location was looked up rather than read from the finding."""

    def __post_init__(self) -> None:
        _check(self.subscription, _GUID, "subscription id")
        if self.resource_group is not None:
            _check(self.resource_group, _GROUP, "resource group")
        _check(self.location, _LOCATION, "Defender for Cloud location")
        _check(self.name, _NAME, "alert name")

    @property
    def id(self) -> str:
        """The alert's ARM id."""
        group = f"/resourceGroups/{self.resource_group}" if self.resource_group else ""
        return (
            f"/subscriptions/{self.subscription}{group}/providers/Microsoft.Security"
            f"/locations/{self.location}/alerts/{self.name}"
        )

    @property
    def path(self) -> str:
        """The ARM id with every part quoted, for a URL."""
        group = f"/resourceGroups/{_q(self.resource_group)}" if self.resource_group else ""
        return (
            f"/subscriptions/{_q(self.subscription)}{group}/providers/Microsoft.Security"
            f"/locations/{_q(self.location)}/alerts/{_q(self.name)}"
        )


def _q(part: str) -> str:
    return quote(part, safe="")


def _check(value: str, pattern: re.Pattern[str], what: str) -> None:
    if ".." in value or not pattern.fullmatch(value):
        raise PermanentError(f"{value[:100]!r} is not a valid {what}")


def alert_from_id(text: str) -> AlertRef | None:
    """The alert an ARM alert id names, or None when `text` is no such id."""
    m = _ARM_ID.fullmatch(text.strip()) if len(text) <= 1000 else None
    if m is None:
        return None
    subscription, group, location, name = m.groups()
    return AlertRef(subscription, group, location, name)


def alert_from_link(link: str) -> AlertRef | None:
    """The alert a Defender for Cloud portal deep link names, or None."""
    m = _DEEP_LINK.search(link) if len(link) <= 2000 else None
    if m is None:
        return None
    name, subscription, group, location = m.groups()
    return AlertRef(subscription, group, location, name)


def resource_scope(finding: dict[str, Any]) -> tuple[str, str] | None:
    """Subscription and resource group of the finding's first Azure resource, or None."""
    apis = finding.get("apis")
    for api in apis if isinstance(apis, list) else []:
        rid = api.get("id") if isinstance(api, dict) else None
        if isinstance(rid, str) and (m := _RESOURCE.match(rid)):
            return m.group(1), m.group(2)
    return None


class _SecurityArm(ArmClient):
    """ARM calls whose refusals name what a Defender for Cloud alert update needs."""

    def raise_for(self, reply: Reply, what: str) -> None:
        if reply.status in (401, 403):
            code, message = arm_error(reply)
            text = f"target {self.target}: {what} answered {reply.status} {code}: {message}"
            if reply.status == 401:
                raise PreconditionError(text + " (check tenant_id, client_id and management_url)")
            raise PreconditionError(
                text + " (the service principal needs the Security Admin role on the alert's "
                "subscription or resource group)"
            )
        super().raise_for(reply, what)


class DefenderDriver(Driver):
    """Writes the state of Defender for Cloud alerts back over Azure Resource Manager."""

    type: ClassVar[str] = "defender"
    settings: DefenderTarget

    def __init__(self, name: str, settings: DefenderTarget, http: HttpPort) -> None:
        super().__init__(name, settings, http)
        identity = Identity.of(name, settings)
        self.tokens = TokenCache(identity, http, timeout=self.timeout)
        self.arm = _SecurityArm(
            name,
            settings.management_url,
            settings.api_version,
            self.tokens,
            http,
            timeout=self.timeout,
        )
        self._homes: dict[str, str] = {}

    async def update_finding(self, finding: dict[str, Any], state: str, comment: str) -> None:
        verb = VERBS.get(state)
        if verb is None:
            raise PermanentError(f"target {self.name}: unknown finding state {state!r}")
        ref = await self.alert(finding)
        try:
            await self.arm.write("POST", f"{ref.path}/{verb}")
        except ArmError as exc:
            if exc.status != 404:
                raise
            hint = (
                " (its id was derived from the alerted resource and the subscription's home "
                "location; a SecurityAlert row without VendorOriginalId names Log Analytics' "
                "id, not the alert's)"
                if ref.derived
                else ""
            )
            raise PermanentError(
                f"target {self.name}: no Defender for Cloud alert {ref.id}: {exc}{hint}"
            ) from exc

    async def alert(self, finding: dict[str, Any]) -> AlertRef:
        """The ARM id of the finding's alert, by the rules in the module docstring."""
        where = f"target {self.name}"
        try:
            source_id = str(finding.get("source_id") or "")
            ref = alert_from_id(source_id)
            link = finding.get("url")
            if ref is None and isinstance(link, str):
                ref = alert_from_link(link)
            if ref is not None:
                return ref
            shape = finding.get("shape")
            if finding.get("source") != "defender" or shape not in NAMED_BY_SOURCE_ID:
                raise PermanentError(
                    f"cannot tell which Defender for Cloud alert this {shape!r} finding from "
                    f"{finding.get('source')!r} is: it carries neither the alert's ARM id nor "
                    "its portal deep link"
                )
            scope = resource_scope(finding)
            if scope is None:
                raise PermanentError(
                    f"cannot tell the ARM id of alert {source_id[:100]!r}: the finding has no "
                    "Azure resource id to read its subscription and resource group from, and "
                    "no portal deep link"
                )
            subscription, group = scope
            # Every part is checked before the first call that uses one of them.
            _check(subscription, _GUID, "subscription id")
            _check(group, _GROUP, "resource group")
            _check(source_id, _NAME, "alert name")
            location = await self._home(subscription)
            return AlertRef(subscription, group, location, source_id, derived=True)
        except PermanentError as exc:
            if str(exc).startswith(where):
                raise
            raise PermanentError(f"{where}: {exc}") from None

    async def _home(self, subscription: str) -> str:
        """The subscription's Defender for Cloud home location (cached)."""
        key = subscription.casefold()
        if key not in self._homes:
            path = f"/subscriptions/{_q(subscription)}/providers/Microsoft.Security/locations"
            found = await self.arm.get(path, {"api-version": LOCATIONS_API_VERSION})
            items = found.body.get("value") if found is not None else None
            names = [
                item["name"]
                for item in (items if isinstance(items, list) else [])
                if isinstance(item, dict) and isinstance(item.get("name"), str)
            ]
            if not names:
                raise PermanentError(
                    f"Defender for Cloud has no location in subscription {subscription} "
                    "(is it registered for Microsoft.Security?)"
                )
            _check(names[0], _LOCATION, "Defender for Cloud location")
            self._homes[key] = names[0]
        return self._homes[key]

    async def check(self) -> list[Check]:
        ours = self.settings
        try:
            await self.tokens.get()
        except (ActionError, ConfigError) as exc:
            return [Check("sign-in", False, str(exc))]
        checks = [Check("sign-in", True, f"{ours.client_id} in tenant {ours.tenant_id}")]
        try:
            found = await self.arm.get("/subscriptions", {"api-version": SUBSCRIPTIONS_API_VERSION})
        except (ActionError, ConfigError) as exc:
            return [*checks, Check("subscriptions", False, str(exc))]
        items = found.body.get("value") if found is not None else None
        subscriptions = [
            str(item["subscriptionId"])
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and item.get("subscriptionId")
        ]
        if not subscriptions:
            detail = "the service principal sees no subscription (grant it Security Admin)"
            return [*checks, Check("subscriptions", False, detail)]
        checks.append(Check("subscriptions", True, f"{len(subscriptions)} visible"))
        for subscription in subscriptions[:3]:
            name = f"subscription {subscription}"
            try:
                location = await self._home(subscription)
                detail = f"Defender for Cloud location {location} (alert updates are not tried)"
                checks.append(Check(name, True, detail))
            except (ActionError, ConfigError) as exc:
                checks.append(Check(name, False, str(exc)))
        return checks
