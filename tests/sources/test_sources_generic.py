"""The documented generic shape (schema clampdown.finding/v1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clampdown.errors import NormalizationError
from clampdown.model import Kind, Severity
from clampdown.sources import detect_shape, normalize

# The example printed in docs/sources.md.
EXAMPLE: dict[str, Any] = {
    "schema": "clampdown.finding/v1",
    "source": "acme-waf",
    "id": "evt-20261126-0042",
    "type": "credential-stuffing",
    "title": "Credential stuffing against POST /login",
    "severity": "high",
    "kind": "alert",
    "ips": ["192.0.2.10", "2001:db8::7"],
    "api": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim1"
    "/apis/auth-api/operations/login",
    "endpoint": "POST /login",
    "user_agent": "Mozilla/5.0",
    "users": ["alice@example.com"],
    "credentials": ["key-3f2a"],
    "time": "2026-11-26T10:40:00Z",
    "tactics": ["Credential Access"],
    "properties": {"failures": 912},
}


def test_docs_example_normalizes() -> None:
    """The documented example is detected and mapped field by field."""
    assert detect_shape(EXAMPLE) == "generic"
    (finding,) = normalize(EXAMPLE)
    assert (finding.source, finding.source_id, finding.shape) == (
        "acme-waf",
        "evt-20261126-0042",
        "generic",
    )
    assert (finding.kind, finding.type, finding.severity) == (
        Kind.ALERT,
        "credential-stuffing",
        Severity.HIGH,
    )
    assert finding.ips == ["192.0.2.10", "2001:db8::7"]
    assert (finding.apis[0].api, finding.apis[0].operation) == ("auth-api", "login")
    assert (finding.endpoint, finding.user_agent) == ("POST /login", "Mozilla/5.0")
    assert (finding.users, finding.credentials) == (["alice@example.com"], ["key-3f2a"])
    assert finding.first_seen == datetime(2026, 11, 26, 10, 40, tzinfo=UTC)
    assert finding.properties == {"failures": "912"}


def test_minimal_generic_finding() -> None:
    """schema, source, id and type are enough; the rest defaults."""
    payload = {"schema": "clampdown.finding/v1", "source": "s", "id": "1", "type": "t"}
    (finding,) = normalize(payload)
    assert (finding.title, finding.severity, finding.kind) == ("t", Severity.MEDIUM, Kind.ALERT)


def test_generic_single_values_and_epoch_time() -> None:
    """`ip`, `user` and epoch-millisecond `time` are accepted as singular forms."""
    payload = {**EXAMPLE, "ips": None, "ip": "198.51.100.1", "time": 1764153600000}
    (finding,) = normalize(payload)
    assert finding.ips == ["198.51.100.1"]
    assert finding.first_seen == datetime(2025, 11, 26, 10, 40, tzinfo=UTC)


def test_generic_recommendation() -> None:
    """kind recommendation is kept."""
    (finding,) = normalize({**EXAMPLE, "kind": "Recommendation"})
    assert finding.kind is Kind.RECOMMENDATION


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("severity", "urgent"),
        ("severity", 5),
        ("kind", "incident"),
        ("schema", "clampdown.finding/v9"),
    ],
)
def test_generic_is_strict(field: str, value: object) -> None:
    """Our own shape refuses unknown severities, kinds and schema versions."""
    with pytest.raises(NormalizationError) as caught:
        normalize({**EXAMPLE, field: value})
    assert caught.value.where == field


def test_generic_named_without_marker() -> None:
    """With the shape named, the schema marker may be left out."""
    payload = {key: value for key, value in EXAMPLE.items() if key != "schema"}
    assert normalize(payload, "generic")[0].source_id == EXAMPLE["id"]
