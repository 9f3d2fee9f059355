"""What every path of a Microsoft Defender alert has in common, whatever the key casing.

REST/Event Hub (camelCase), workflow automation (PascalCase), SecurityAlert rows (JSON in
strings) and the alerts inside a Sentinel incident name their fields alike; lookups are
case-insensitive, so one mapping serves them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from clampdown.model import Kind
from clampdown.sources._fields import (
    Fields,
    api_refs,
    clean_ips,
    flatten,
    parse_severity,
    parse_time,
    pick,
    status_text,
    text_list,
    unique,
)

SOURCE = "defender"

ENDPOINT_KEYS = ("API endpoint", "Endpoint")
USER_AGENT_KEYS = ("Client user agent", "User agent", "UserAgent")


@dataclass
class Entities:
    """Entities found in an alert, in the order given."""

    ips: list[object] = field(default_factory=list)
    resource_ids: list[object] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def _kind(entity: Fields) -> str:
    # Sentinel entities carry `kind` plus an ARM `type`; alert entities carry only `type`.
    name = entity.text("kind") or entity.text("type") or ""
    return name.lower().replace("-", "").replace("_", "")


def _user(account: Fields) -> str | None:
    upn = account.text("userPrincipalName", "upn")
    if upn is not None:
        return upn
    name = account.text("name", "accountName")
    suffix = account.text("upnSuffix")
    if name is not None and suffix is not None:
        return f"{name}@{suffix}"
    return name or account.text("aadUserId", "objectGuid", "sid")


def read_entities(entities: list[Fields]) -> Entities:
    """IPs, resource ids and users from alert entities or Sentinel related entities."""
    found = Entities()
    for entity in entities:
        body = entity.child("properties") if entity.get("kind") is not None else None
        body = body or entity
        kind = _kind(entity)
        if kind == "ip":
            found.ips.append(body.get("address"))
        elif kind == "azureresource":
            found.resource_ids.append(body.get("resourceId", "azureResourceId"))
        elif kind == "account":
            user = _user(body)
            if user is not None:
                found.users.append(user)
    return found


def identifier_ids(identifiers: list[Fields]) -> list[object]:
    """Azure resource ids from `resourceIdentifiers` (Log Analytics entries are skipped)."""
    return [
        item.get("azureResourceId", "resourceId")
        for item in identifiers
        if _kind(item) in ("azureresource", "")
    ]


def alert_fields(
    props: Fields,
    alert_type: str,
    related: Entities | None = None,
    related_tactics: Iterable[str] = (),
) -> dict[str, object]:
    """The Finding fields of one Defender alert, read from its property bag.

    `related` entities and tactics (a Sentinel incident's) come after the alert's own.
    """
    extended = flatten(props.get("extendedProperties", "additionalData"))
    entities = read_entities(props.children("entities"))
    related = related or Entities()
    resources = [
        *entities.resource_ids,
        *identifier_ids(props.children("resourceIdentifiers")),
        props.get("resourceId"),
        *related.resource_ids,
    ]
    return {
        "source": SOURCE,
        "kind": Kind.ALERT,
        "type": alert_type,
        "title": props.text("alertDisplayName", "displayName", "alertName") or alert_type,
        "description": props.text("description") or "",
        "severity": parse_severity(props.get("severity", "alertSeverity")),
        "status": status_text(props.get("status"), "active"),
        "first_seen": parse_time(props.get("startTimeUtc", "startTime")),
        "last_seen": parse_time(props.get("endTimeUtc", "endTime")),
        "reported_at": parse_time(props.get("timeGeneratedUtc", "timeGenerated")),
        "tactics": unique(
            [*text_list(props.get("intent", "tactics"), split=True), *related_tactics]
        ),
        "techniques": unique(
            [
                *text_list(props.get("techniques"), split=True),
                *text_list(props.get("subTechniques"), split=True),
            ]
        ),
        "ips": clean_ips([*entities.ips, *related.ips]),
        "apis": api_refs(resources),
        "endpoint": pick(extended, *ENDPOINT_KEYS),
        "user_agent": pick(extended, *USER_AGENT_KEYS),
        "users": unique([*entities.users, *related.users]),
        "url": props.text("alertUri", "alertLink"),
        "remediation_steps": text_list(props.get("remediationSteps")),
        "properties": extended,
    }
