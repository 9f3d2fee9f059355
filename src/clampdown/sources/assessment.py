"""Defender for Cloud recommendation: an assessment resource (REST, export or workflow trigger).

`{"id": ".../providers/Microsoft.Security/assessments/{key}", "name": "{key}", "properties":
{"displayName", "status": {"code"}, "resourceDetails": {"Id"}, "metadata": {...}, ...}}`
"""

from __future__ import annotations

from clampdown.model import Finding, Kind
from clampdown.sources._build import build
from clampdown.sources._defender import ENDPOINT_KEYS, SOURCE
from clampdown.sources._fields import (
    Fields,
    api_refs,
    flatten,
    parse_severity,
    parse_time,
    pick,
    status_text,
    text_list,
)

SHAPE = "defender-assessment"
_ARM_TYPE = "microsoft.security/assessments"
_SEGMENT = "/providers/microsoft.security/assessments/"
_TYPE_PREFIX = "Recommendation_"

# Assessment keys whose recommendation has a stable name playbooks can match on.
_KNOWN_KEYS = {
    "91af2040-7874-4659-abf0-578e1f8d07dc": "UnauthenticatedEndpoint",
    "44aae697-8cc1-4ed1-a136-44a644bfd51f": "SubscriptionScopedToAllApis",
}
# Display-name phrases for the same, for tenants where the key differs (the key above is (?)).
_KNOWN_NAMES = (
    (("endpoint", "should be authenticated"), "UnauthenticatedEndpoint"),
    (("endpoint", "unused"), "UnusedEndpoint"),
    (("subscriptions", "scoped to all apis"), "SubscriptionScopedToAllApis"),
)


def matches(record: Fields) -> bool:
    """An ARM assessment resource, by type or by id."""
    if (record.text("type") or "").strip().lower() == _ARM_TYPE:
        return True
    return _SEGMENT in (record.text("id") or "").lower()


def recommendation_type(key: str, display_name: str) -> str:
    """The stable finding type of an assessment key / display name."""
    known = _KNOWN_KEYS.get(key.lower())
    if known is None:
        name = display_name.lower()
        known = next(
            (label for words, label in _KNOWN_NAMES if all(word in name for word in words)),
            None,
        )
    return _TYPE_PREFIX + (known or key.lower())


def _resource_id(props: Fields, assessment_id: str) -> object:
    details = props.child("resourceDetails")
    found = details.get("id", "resourceId", "azureResourceId") if details else None
    if found is None:
        # The assessment id is the resource id followed by the assessment segment.
        cut = assessment_id.lower().find(_SEGMENT)
        found = assessment_id[:cut] if cut > 0 else None
    return found


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one assessment of one resource."""
    assessment_id = record.require_text("id")
    props = record.require_child("properties")
    key = (record.text("name") or assessment_id.rstrip("/").rsplit("/", 1)[-1]).strip()
    metadata = props.child("metadata")
    status = props.child("status")
    display_name = props.text("displayName") or (metadata.text("displayName") if metadata else None)
    additional = flatten(props.get("additionalData"))
    finding_type = recommendation_type(key, display_name or "")
    description = (status.text("description") if status else None) or (
        metadata.text("description") if metadata else None
    )
    links = props.child("links")
    fields: dict[str, object] = {
        "source": SOURCE,
        "source_id": assessment_id,
        "shape": SHAPE,
        "kind": Kind.RECOMMENDATION,
        "type": finding_type,
        "title": display_name or finding_type,
        "description": description or "",
        "severity": parse_severity(metadata.get("severity") if metadata else None),
        "status": status_text(status.get("code") if status else None, "unknown"),
        "first_seen": parse_time(status.get("firstEvaluationDate") if status else None),
        "reported_at": parse_time(status.get("statusChangeDate") if status else None),
        "apis": api_refs([_resource_id(props, assessment_id)]),
        "endpoint": pick(additional, *ENDPOINT_KEYS),
        "url": links.text("azurePortal", "azurePortalUri") if links else None,
        "remediation_steps": text_list(
            metadata.get("remediationDescription") if metadata else None
        ),
        "properties": additional,
        "raw": record.data,
    }
    return [build(fields, where=record.where)]
