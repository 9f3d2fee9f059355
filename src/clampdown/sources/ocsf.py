"""OCSF 1.x Detection Finding (class_uid 2004) from any detector that speaks OCSF.

The source is `ocsf:` plus the product name (`Example API Firewall` -> `ocsf:example-api-firewall`).
"""

from __future__ import annotations

from clampdown.errors import NormalizationError
from clampdown.model import Finding, Kind, Severity
from clampdown.sources._build import build
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

SHAPE = "ocsf"
CLASS_UID = 2004
_SEVERITY_IDS = {
    1: Severity.INFORMATIONAL,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
    6: Severity.CRITICAL,  # Fatal
}
_STATUS_IDS = {1: "new", 2: "in_progress", 3: "suppressed", 4: "resolved"}


def _number(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        try:
            return int(value.strip())
        except ValueError:  # longer than Python's integer-string limit
            return None
    return None


def matches(record: Fields) -> bool:
    """`class_uid` 2004 (as a number or a numeric string)."""
    return _number(record.get("class_uid")) == CLASS_UID


def _missing(record: Fields, path: str) -> NormalizationError:
    return NormalizationError("required field is missing", where=record.path(path))


def _source(record: Fields) -> str:
    metadata = record.child("metadata")
    product = metadata.child("product") if metadata else None
    name = product.text("name", "vendor_name") if product else None
    if name is None:
        raise _missing(record, "metadata.product.name")
    return "ocsf:" + "-".join(name.lower().split())


def _source_id(record: Fields, info: Fields | None) -> str:
    metadata = record.child("metadata")
    found = (info.text("uid") if info else None) or (metadata.text("uid") if metadata else None)
    if found is None:
        raise _missing(record, "finding_info.uid")
    return found.strip()


def _type(record: Fields, info: Fields | None) -> str:
    analytic = info.child("analytic") if info else None
    types = text_list(info.get("types")) if info else []
    found = (
        (types[0] if types else None)
        or (analytic.text("name") if analytic else None)
        or (info.text("title") if info else None)
    )
    if found is None:
        raise _missing(record, "finding_info.types")
    return found.strip()


def _severity(record: Fields) -> Severity:
    by_id = _SEVERITY_IDS.get(_number(record.get("severity_id")) or 0)
    return by_id or parse_severity(record.get("severity"))


def _endpoint(request: Fields | None) -> str | None:
    if request is None:
        return None
    url = request.child("url")
    path = url.text("path", "url_string") if url else request.text("url")
    method = request.text("http_method")
    if path is None:
        return None
    return f"{method.strip().upper()} {path}" if method else path


def _get(fields: Fields | None, name: str) -> object:
    return fields.get(name) if fields is not None else None


def _dig(fields: Fields | None, *names: str) -> Fields | None:
    for name in names:
        if fields is None:
            return None
        fields = fields.child(name)
    return fields


def _each(places: list[Fields], *names: str) -> list[Fields]:
    return [found for place in places if (found := _dig(place, *names)) is not None]


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one OCSF detection finding."""
    info = record.child("finding_info")
    # Requests, endpoints and actors may sit on the finding or in its evidences (OCSF 1.1+).
    places = [record, *record.children("evidences")]
    requests = _each(places, "http_request")
    users = _each(places, "actor", "user")
    attacks = record.children("attacks") or (info.children("attacks") if info else [])
    remediation = record.child("remediation")
    status_id = _number(record.get("status_id"))
    finding_type = _type(record, info)
    fields: dict[str, object] = {
        "source": _source(record),
        "source_id": _source_id(record, info),
        "shape": SHAPE,
        "kind": Kind.ALERT,
        "type": finding_type,
        "title": (info.text("title") if info else None) or record.text("message") or finding_type,
        "description": (info.text("desc") if info else None) or record.text("message") or "",
        "severity": _severity(record),
        "status": status_text(record.get("status"), _STATUS_IDS.get(status_id or 0, "active")),
        "first_seen": parse_time(_get(info, "first_seen_time") or record.get("time")),
        "last_seen": parse_time(_get(info, "last_seen_time")),
        "reported_at": parse_time(record.get("time")),
        "tactics": unique(t.text("name") or "" for t in _each(attacks, "tactic")),
        "techniques": unique(t.text("uid") or "" for t in _each(attacks, "technique")),
        "ips": clean_ips(s.get("ip") for s in _each(places, "src_endpoint")),
        "apis": api_refs(r.get("uid", "name") for r in record.children("resources")),
        "endpoint": next((e for r in requests if (e := _endpoint(r))), None),
        "user_agent": next((ua for r in requests if (ua := r.text("user_agent"))), None),
        "users": unique(n for u in users if (n := u.text("name", "email_addr", "uid"))),
        "credentials": unique(c for u in users if (c := u.text("credential_uid"))),
        "url": info.text("src_url") if info else None,
        "remediation_steps": text_list(remediation.get("desc")) if remediation else [],
        "properties": flatten(record.get("unmapped")),
        "raw": record.data,
    }
    return [build(fields, where=record.where)]
