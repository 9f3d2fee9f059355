"""Defender for Cloud alert as the REST API and Event Hub continuous export deliver it.

`{"id", "name", "type": "Microsoft.Security/Locations/alerts", "properties": {...camelCase}}`
"""

from __future__ import annotations

from clampdown.model import Finding
from clampdown.sources._build import build
from clampdown.sources._defender import alert_fields
from clampdown.sources._fields import Fields

SHAPE = "defender-rest"
_ARM_TYPE = "microsoft.security/locations/alerts"


def matches(record: Fields) -> bool:
    """An ARM alert resource, or any object whose `properties` names an alertType."""
    if (record.text("type") or "").strip().lower() == _ARM_TYPE:
        return True
    props = record.child("properties")
    return props is not None and props.get("alertType") is not None


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one alert resource."""
    props = record.require_child("properties")
    alert_type = props.require_text("alertType")
    # `name` is the same alert id as systemAlertId in the ARM resource.
    source_id = props.text("systemAlertId") or record.text("name")
    if source_id is None:
        source_id = props.require_text("systemAlertId")
    fields = alert_fields(props, alert_type)
    fields.update(shape=SHAPE, source_id=source_id.strip(), raw=record.data)
    return [build(fields, where=record.where)]
