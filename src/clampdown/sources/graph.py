"""Microsoft Graph security alert (`/security/alerts_v2`).

The Defender alert id is `providerAlertId`; Graph's own `id` is the fallback. Evidence of
type ipEvidence gives IPs (attacker and source roles first), azureResourceEvidence the APIs.
"""

from __future__ import annotations

from clampdown.model import Finding, Kind, Severity
from clampdown.sources._build import build
from clampdown.sources._defender import ENDPOINT_KEYS, SOURCE, USER_AGENT_KEYS
from clampdown.sources._fields import (
    Fields,
    api_refs,
    as_text,
    clean_ips,
    flatten,
    parse_severity,
    parse_time,
    pick,
    status_text,
    text_list,
    unique,
)

SHAPE = "graph"
_MARKER_KEYS = ("providerAlertId", "detectionSource", "alertWebUrl", "detectorId", "evidence")
_FIRST_ROLES = frozenset({"attacker", "source"})
_CONTEXT_KEYS = ("incidentId", "serviceSource", "detectionSource", "incidentWebUrl", "tenantId")


def matches(record: Fields) -> bool:
    """`@odata.type` of a Graph security alert, or an id with Graph-only alert fields."""
    if "microsoft.graph.security.alert" in (record.text("@odata.type") or "").lower():
        return True
    return record.get("id") is not None and any(record.get(key) is not None for key in _MARKER_KEYS)


def _evidence_kind(evidence: Fields) -> str:
    return (evidence.text("@odata.type") or "").rsplit(".", 1)[-1].lower()


def _ips(evidence: list[Fields]) -> list[str]:
    ranked: list[tuple[int, object]] = []
    for item in evidence:
        if _evidence_kind(item) == "ipevidence":
            roles = {role.lower() for role in text_list(item.get("roles"))}
            ranked.append((0 if roles & _FIRST_ROLES else 1, item.get("ipAddress")))
    ranked.sort(key=lambda pair: pair[0])  # stable: evidence order within each rank
    return clean_ips(address for _, address in ranked)


def _users(evidence: list[Fields]) -> list[str]:
    users: list[str] = []
    for item in evidence:
        account = item.child("userAccount")
        if _evidence_kind(item) == "userevidence" and account is not None:
            name = account.text("userPrincipalName", "accountName", "azureAdUserId")
            if name is not None:
                users.append(name)
    return unique(users)


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one Graph alert."""
    graph_id = record.require_text("id")
    source_id = (record.text("providerAlertId") or graph_id).strip()
    alert_type = record.require_text("detectorId")
    evidence = record.children("evidence")
    resources = [
        item.get("resourceId")
        for item in evidence
        if _evidence_kind(item) == "azureresourceevidence"
    ]
    extended = flatten(record.get("additionalData", "extendedProperties"))
    properties = {key: value for key in _CONTEXT_KEYS if (value := as_text(record.get(key)))}
    properties.update(extended)
    fields: dict[str, object] = {
        "source": SOURCE,
        "source_id": source_id,
        "shape": SHAPE,
        "kind": Kind.ALERT,
        "type": alert_type,
        "title": record.text("title") or alert_type,
        "description": record.text("description") or "",
        "severity": parse_severity(record.get("severity"), Severity.MEDIUM),
        "status": status_text(record.get("status"), "active"),
        "first_seen": parse_time(record.get("firstActivityDateTime")),
        "last_seen": parse_time(record.get("lastActivityDateTime")),
        "reported_at": parse_time(record.get("createdDateTime")),
        "tactics": text_list(record.get("category"), split=True),
        "techniques": text_list(record.get("mitreTechniques")),
        "ips": _ips(evidence),
        "apis": api_refs(resources),
        "endpoint": pick(extended, *ENDPOINT_KEYS),
        "user_agent": pick(extended, *USER_AGENT_KEYS),
        "users": _users(evidence),
        "url": record.text("alertWebUrl"),
        "remediation_steps": text_list(record.get("recommendedActions")),
        "properties": properties,
        "raw": record.data,
    }
    return [build(fields, where=record.where)]
