"""A Log Analytics `SecurityAlert` row (Sentinel forwarding or a query export).

Entities, ExtendedProperties and RemediationSteps are strings holding JSON. When such a
string is not valid JSON the field is treated as absent (RemediationSteps then counts as one
plain-text step) rather than failing the whole alert.
"""

from __future__ import annotations

from clampdown.model import Finding
from clampdown.sources._build import build
from clampdown.sources._defender import alert_fields
from clampdown.sources._fields import Fields

SHAPE = "securityalert"
_ROW_ONLY_KEYS = ("alertSeverity", "alertName", "vendorOriginalId", "providerName")


def matches(record: Fields) -> bool:
    """`Type: SecurityAlert`, or an alert row with row-only columns or JSON-in-string fields."""
    if (record.text("type") or "").strip().lower() == "securityalert":
        return True
    if record.get("alertType") is None:
        return False
    if any(record.get(key) is not None for key in _ROW_ONLY_KEYS):
        return True
    return isinstance(record.get("entities"), str) or isinstance(
        record.get("extendedProperties"), str
    )


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one row; the Defender alert id is VendorOriginalId when present."""
    alert_type = record.require_text("AlertType")
    source_id = record.text("VendorOriginalId") or record.require_text("SystemAlertId")
    fields = alert_fields(record, alert_type)
    fields.update(shape=SHAPE, source_id=source_id.strip(), raw=record.data)
    return [build(fields, where=record.where)]
