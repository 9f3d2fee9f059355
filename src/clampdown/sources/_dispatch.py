"""Shape detection and dispatch: payload (single record or batch) -> list of Findings."""

from __future__ import annotations

from collections.abc import Callable

from clampdown.errors import NormalizationError
from clampdown.model import Finding
from clampdown.sources import (
    assessment,
    defender_rest,
    generic,
    graph,
    ocsf,
    securityalert,
    sentinel,
    workflow,
)
from clampdown.sources._fields import Fields, json_type

_Normalizer = Callable[[Fields], list[Finding]]
_Matcher = Callable[[Fields], bool]

# Detection order: the most specific markers first; workflow (a flat alert) is the catch-all.
_DETECTION: tuple[tuple[str, _Matcher], ...] = (
    (generic.SHAPE, generic.matches),
    (ocsf.SHAPE, ocsf.matches),
    (sentinel.SHAPE, sentinel.matches),
    (assessment.SHAPE, assessment.matches),
    (defender_rest.SHAPE, defender_rest.matches),
    (graph.SHAPE, graph.matches),
    (securityalert.SHAPE, securityalert.matches),
    (workflow.SHAPE, workflow.matches),
)

_NORMALIZERS: dict[str, _Normalizer] = {
    defender_rest.SHAPE: defender_rest.normalize,
    workflow.SHAPE: workflow.normalize,
    securityalert.SHAPE: securityalert.normalize,
    graph.SHAPE: graph.normalize,
    sentinel.SHAPE: sentinel.normalize,
    assessment.SHAPE: assessment.normalize,
    ocsf.SHAPE: ocsf.normalize,
    generic.SHAPE: generic.normalize,
}

SHAPES: tuple[str, ...] = tuple(_NORMALIZERS)
"""Names of the delivery shapes `normalize` accepts."""

_EXPECTED = (
    "expected one of: a Defender alert resource (properties.alertType), a workflow automation "
    "alert (AlertType, SystemAlertId), a SecurityAlert row (Type: SecurityAlert), a Graph "
    "security alert (@odata.type, providerAlertId, detectorId), a Sentinel incident "
    "(objectSchemaType: Incident), a Defender assessment (Microsoft.Security/assessments), "
    f"an OCSF Detection Finding (class_uid: {ocsf.CLASS_UID}), a generic finding "
    f'(schema: {generic.SCHEMA}), or a batch ({{"records": [...]}}, {{"value": [...]}}, [...])'
)


def _batch(payload: object) -> list[tuple[object, str]] | None:
    """The records of a batch with their locations, or None when `payload` is one record."""
    if isinstance(payload, list):
        return [(item, f"[{index}]") for index, item in enumerate(payload)]
    if not isinstance(payload, dict):
        return None
    fields = Fields(payload)
    records = fields.get("records")
    if isinstance(records, list):
        return [(item, f"records[{index}]") for index, item in enumerate(records)]
    values = fields.get("value")
    # A Graph list page holds only `value` and `@odata.*` keys.
    if isinstance(values, list) and all(
        isinstance(key, str) and (key.lower() == "value" or key.startswith("@odata."))
        for key in payload
    ):
        return [(item, f"value[{index}]") for index, item in enumerate(values)]
    return None


def _record(payload: object, where: str) -> Fields:
    if not isinstance(payload, dict):
        raise NormalizationError(f"expected a JSON object, got {json_type(payload)}", where=where)
    return Fields(payload, where)


def _detect(record: Fields) -> str:
    for shape, matches in _DETECTION:
        if matches(record):
            return shape
    raise NormalizationError(f"no known delivery shape fits; {_EXPECTED}", where=record.where)


def detect_shape(payload: object) -> str:
    """The delivery shape of `payload`; for a batch, the shape of its first record."""
    batch = _batch(payload)
    if batch is None:
        return _detect(_record(payload, ""))
    if not batch:
        raise NormalizationError("empty batch: no record to detect a shape from")
    first, where = batch[0]
    return _detect(_record(first, where))


def normalize(payload: object, shape: str | None = None) -> list[Finding]:
    """Findings from one record or a batch; `shape` None detects each record's shape."""
    if shape is not None and shape not in _NORMALIZERS:
        raise NormalizationError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    batch = _batch(payload)
    records = [(payload, "")] if batch is None else batch
    findings: list[Finding] = []
    for item, where in records:
        record = _record(item, where)
        findings.extend(_NORMALIZERS[shape or _detect(record)](record))
    return findings
