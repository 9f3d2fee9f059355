"""Microsoft Sentinel incident, as an automation rule hands it to a playbook.

Each alert of the incident becomes one Defender finding carrying the incident's entities and
tactics; an incident without alerts becomes one `sentinel` finding of type SentinelIncident.
The bare incident resource (without the automation envelope) is accepted too.
"""

from __future__ import annotations

from clampdown.model import Finding, Kind
from clampdown.sources._build import build
from clampdown.sources._defender import Entities, alert_fields, read_entities
from clampdown.sources._fields import (
    Fields,
    api_refs,
    clean_ips,
    flatten,
    parse_severity,
    parse_time,
    status_text,
    text_list,
    unique,
)

SHAPE = "sentinel-incident"
INCIDENT_SOURCE = "sentinel"
INCIDENT_TYPE = "SentinelIncident"
_INCIDENT_KEYS = ("incidentNumber", "relatedEntities", "alerts")
_ALERT_TITLE_KEYS = ("alertDisplayName", "displayName", "alertName")
# Incident values used when an alert lacks its own.
_INHERITED = ("description", "first_seen", "last_seen", "reported_at", "url")


def matches(record: Fields) -> bool:
    """An automation payload (objectSchemaType Incident) or an incident resource."""
    if (record.text("objectSchemaType") or "").strip().lower() == "incident":
        return True
    if (record.text("type") or "").strip().lower().endswith("securityinsights/incidents"):
        return True
    incident = record.child("object")
    props = incident.child("properties") if incident is not None else None
    return props is not None and any(props.get(key) is not None for key in _INCIDENT_KEYS)


def _incident(record: Fields) -> Fields:
    if record.get("object") is not None or record.get("objectSchemaType") is not None:
        return record.require_child("object")
    return record


def normalize(record: Fields) -> list[Finding]:
    """One Finding per alert of the incident, or one for the incident itself."""
    incident = _incident(record)
    props = incident.require_child("properties")
    entities = read_entities(props.children("relatedEntities"))
    additional = props.child("additionalData")
    tactics = text_list(additional.get("tactics"), split=True) if additional else []
    shared: dict[str, object] = {
        "shape": SHAPE,
        "description": props.text("description") or "",
        "severity": parse_severity(props.get("severity")),
        "status": status_text(props.get("status"), "active"),
        "first_seen": parse_time(props.get("firstActivityTimeUtc")),
        "last_seen": parse_time(props.get("lastActivityTimeUtc")),
        "reported_at": parse_time(props.get("createdTimeUtc")),
        "url": props.text("incidentUrl"),
        "raw": record.data,
    }
    title = props.text("title")
    alerts = props.children("alerts")
    if alerts:
        return [_alert(alert, shared, title, entities, tactics) for alert in alerts]
    fields = {
        **shared,
        "source": INCIDENT_SOURCE,
        "source_id": incident.require_text("name"),
        "kind": Kind.ALERT,
        "type": INCIDENT_TYPE,
        "title": title or INCIDENT_TYPE,
        "tactics": tactics,
        "ips": clean_ips(entities.ips),
        "apis": api_refs(entities.resource_ids),
        "users": unique(entities.users),
        "properties": flatten(props.get("additionalData")),
    }
    return [build(fields, where=incident.where)]


def _alert(
    alert: Fields,
    shared: dict[str, object],
    title: str | None,
    entities: Entities,
    tactics: list[str],
) -> Finding:
    props = alert.require_child("properties")
    source_id = props.require_text("systemAlertId")
    fields = alert_fields(props, props.require_text("alertType"), entities, tactics)
    fields.update(shape=SHAPE, source_id=source_id, raw=shared["raw"])
    for key in _INHERITED:
        fields[key] = fields[key] or shared[key]
    if props.get("severity", "alertSeverity") is None:
        fields["severity"] = shared["severity"]
    if props.get("status") is None:
        fields["status"] = shared["status"]
    if props.get(*_ALERT_TITLE_KEYS) is None and title is not None:
        fields["title"] = title
    return build(fields, where=alert.where)
