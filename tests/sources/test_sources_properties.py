"""Property-based: no JSON input makes `normalize` fail with anything but NormalizationError."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clampdown.errors import NormalizationError
from clampdown.model import Finding
from clampdown.sources import SHAPES, detect_shape, normalize
from clampdown.sources._fields import MAX_ITEMS, MAX_TEXT

# Keys and values the normalizers look for, so that random payloads reach deep code paths.
KNOWN_KEYS = [
    "properties", "alertType", "AlertType", "systemAlertId", "SystemAlertId", "type", "Type",
    "id", "name", "records", "value", "entities", "Entities", "extendedProperties",
    "ExtendedProperties", "resourceIdentifiers", "azureResourceId", "resourceId", "address",
    "Address", "schema", "source", "class_uid", "severity_id", "severity", "status", "time",
    "objectSchemaType", "object", "alerts", "relatedEntities", "additionalData", "tactics",
    "evidence", "@odata.type", "ipAddress", "roles", "providerAlertId", "detectorId",
    "finding_info", "uid", "types", "metadata", "product", "src_endpoint", "ip", "http_request",
    "url", "path", "resources", "attacks", "tactic", "technique", "kind", "VendorOriginalId",
    "remediationSteps", "RemediationSteps", "resourceDetails", "displayName", "intent",
    "startTimeUtc", "TimeGenerated", "createdDateTime", "API endpoint", "Client user agent",
]  # fmt: skip
KNOWN_TEXT = [
    "SecurityAlert", "Incident", "ip", "IP", "azure-resource", "AzureResource", "Ip", "account",
    "Microsoft.Security/Locations/alerts", "Microsoft.Security/assessments",
    "Microsoft.SecurityInsights/Incidents", "clampdown.finding/v1", "clampdown.finding/v2",
    "#microsoft.graph.security.alert", "#microsoft.graph.security.ipEvidence",
    "#microsoft.graph.security.azureResourceEvidence", "attacker", "2004", "High", "unknown",
    "203.0.113.7", "2001:DB8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "999.1.1.1",
    "2026-11-24T09:12:44.0000000Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "/subscriptions/s/providers/Microsoft.ApiManagement/service/a/apis/b/operations/c",
    "/x/providers/Microsoft.Security/assessments/91af2040-7874-4659-abf0-578e1f8d07dc",
    '[{"Type": "ip", "Address": "192.0.2.1"}]', '{"API endpoint": "GET /"}', "[{", "{",
    "¹²", "1" * 5000,
]  # fmt: skip

keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2004, 1764153600000, 10**40, -(10**20)])
    | st.floats()
    | st.sampled_from(KNOWN_TEXT)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=30,
)
json_objects = st.dictionaries(keys, json_values, max_size=8)

SETTINGS = settings(max_examples=200, deadline=None)


def assert_sound(payload: object, shape: str | None = None) -> None:
    """normalize either raises NormalizationError or returns well-formed findings."""
    try:
        findings = normalize(payload, shape)
    except NormalizationError:
        return
    for finding in findings:
        assert_well_formed(finding)


def assert_well_formed(finding: Finding) -> None:
    """IPs are canonical valid addresses; strings and lists respect the caps."""
    for ip in finding.ips:
        assert str(ipaddress.ip_address(ip)) == ip
    assert len(finding.ips) == len(set(finding.ips))
    for name, value in finding.model_dump(exclude={"raw"}).items():
        if isinstance(value, str):
            assert len(value) <= MAX_TEXT, name
        elif isinstance(value, list | dict):
            assert len(value) <= MAX_ITEMS, name


@SETTINGS
@given(json_values)
def test_arbitrary_json_never_crashes(payload: Any) -> None:
    """Any JSON value: findings or a NormalizationError, never another exception."""
    assert_sound(payload)
    with contextlib.suppress(NormalizationError):
        assert detect_shape(payload) in SHAPES


@SETTINGS
@given(json_objects, st.sampled_from(SHAPES))
def test_arbitrary_objects_under_each_named_shape(payload: dict[str, Any], shape: str) -> None:
    """Any object forced through any named shape: findings or a NormalizationError."""
    assert_sound(payload, shape)


@SETTINGS
@given(json_objects)
def test_arbitrary_json_text_fields(payload: dict[str, Any]) -> None:
    """Objects re-encoded as JSON strings (as SecurityAlert rows carry them) are safe too."""
    row = {
        "Type": "SecurityAlert",
        "AlertType": "T",
        "SystemAlertId": "1",
        "Entities": json.dumps([payload]),
        "ExtendedProperties": json.dumps(payload),
        "RemediationSteps": json.dumps(payload),
    }
    assert_sound(row)


def all_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside a JSON value."""
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    found: list[tuple[Any, ...]] = []
    for key, item in items:
        found.append((*prefix, key))
        found.extend(all_paths(item, (*prefix, key)))
    return found


def mutate(payload: Any, path: tuple[Any, ...], action: str, replacement: Any) -> None:
    """Delete, replace, stringify or re-case the value at `path` (if it still exists)."""
    parent = payload
    try:
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict | list):
            return
        current = parent[path[-1]]
    except (KeyError, IndexError, TypeError):
        return
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = replacement
    elif action == "stringify":
        parent[last] = json.dumps(current)
    elif action == "recase" and isinstance(parent, dict) and isinstance(last, str):
        parent[last.swapcase()] = parent.pop(last)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_samples_never_crash(sample_name: str, load_sample: Any, data: Any) -> None:
    """Samples with random fields removed, replaced, stringified or re-cased stay safe."""
    payload = load_sample(sample_name)
    paths = all_paths(payload)
    for _ in range(data.draw(st.integers(1, 6))):
        mutate(
            payload,
            data.draw(st.sampled_from(paths)),
            data.draw(st.sampled_from(["delete", "replace", "stringify", "recase"])),
            data.draw(json_values),
        )
    assert_sound(payload)
    for shape in SHAPES:
        assert_sound(payload, shape)
