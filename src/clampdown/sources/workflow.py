"""Defender for Cloud alert as a workflow automation (Logic App) trigger sends it.

One flat object with PascalCase keys: AlertType, SystemAlertId, AlertDisplayName, Entities, ...
"""

from __future__ import annotations

from clampdown.model import Finding
from clampdown.sources._build import build
from clampdown.sources._defender import alert_fields
from clampdown.sources._fields import Fields

SHAPE = "defender-workflow"


def matches(record: Fields) -> bool:
    """A flat object with an alert type or a system alert id at the top level.

    Detection tries this shape last, so a flat alert missing one of the two is reported as
    such instead of as an unknown shape.
    """
    return record.get("alertType") is not None or record.get("systemAlertId") is not None


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one workflow automation alert."""
    alert_type = record.require_text("AlertType")
    source_id = record.require_text("SystemAlertId")
    fields = alert_fields(record, alert_type)
    fields.update(shape=SHAPE, source_id=source_id, raw=record.data)
    return [build(fields, where=record.where)]
