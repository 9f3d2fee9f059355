"""Clampdown's own documented finding shape, for detectors without a shape of their own.

Marked by `"schema": "clampdown.finding/v1"`; see docs/sources.md. Being ours, it is read
strictly: an unknown kind or severity is an error rather than a default.
"""

from __future__ import annotations

from typing import TypeVar

from clampdown.errors import NormalizationError
from clampdown.model import Finding, Kind, Severity
from clampdown.sources._build import build
from clampdown.sources._fields import (
    Fields,
    api_refs,
    clean_ips,
    flatten,
    parse_time,
    status_text,
    text_list,
)

SHAPE = "generic"
SCHEMA = "clampdown.finding/v1"
_SCHEMA_FAMILY = "clampdown.finding/"


def matches(record: Fields) -> bool:
    """Any `schema` of the clampdown.finding family (other versions are then refused)."""
    return (record.text("schema") or "").strip().lower().startswith(_SCHEMA_FAMILY)


def _check_schema(record: Fields) -> None:
    schema = record.text("schema")
    if schema is not None and schema.strip().lower() != SCHEMA:
        raise NormalizationError(
            f"unsupported schema, expected {SCHEMA}", where=record.path("schema")
        )


_E = TypeVar("_E", Kind, Severity)


def _enum(record: Fields, name: str, enum: type[_E], default: _E) -> _E:
    value = record.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return enum(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(member.value for member in enum)
    raise NormalizationError(f"must be one of {choices}", where=record.path(name))


def _many(record: Fields, plural: str, singular: str) -> list[str]:
    return text_list([*text_list(record.get(plural)), *text_list(record.get(singular))])


def normalize(record: Fields) -> list[Finding]:
    """One Finding for one generic record."""
    _check_schema(record)
    finding_type = record.require_text("type")
    ips = [*text_list(record.get("ips")), *text_list(record.get("ip"))]
    fields: dict[str, object] = {
        "source": record.require_text("source"),
        "source_id": record.require_text("id"),
        "shape": SHAPE,
        "kind": _enum(record, "kind", Kind, Kind.ALERT),
        "type": finding_type,
        "title": record.text("title") or finding_type,
        "description": record.text("description") or "",
        "severity": _enum(record, "severity", Severity, Severity.MEDIUM),
        "status": status_text(record.get("status"), "active"),
        "first_seen": parse_time(record.get("first_seen", "time")),
        "last_seen": parse_time(record.get("last_seen")),
        "reported_at": parse_time(record.get("reported_at")),
        "tactics": _many(record, "tactics", "tactic"),
        "techniques": _many(record, "techniques", "technique"),
        "ips": clean_ips(ips),
        "apis": api_refs([*text_list(record.get("apis")), *text_list(record.get("api"))]),
        "endpoint": record.text("endpoint"),
        "user_agent": record.text("user_agent"),
        "users": _many(record, "users", "user"),
        "credentials": _many(record, "credentials", "credential"),
        "url": record.text("url"),
        "remediation_steps": text_list(record.get("remediation_steps")),
        "properties": flatten(record.get("properties")),
        "raw": record.data,
    }
    return [build(fields, where=record.where)]
