"""Variations real deliveries show: key casing, missing fields, bad IPs, malformed JSON, batches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clampdown.errors import NormalizationError
from clampdown.model import Kind, Severity
from clampdown.sources import SHAPES, detect_shape, normalize
from clampdown.sources._fields import MAX_TEXT

APIM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc"


def lower_keys(value: Any) -> Any:
    """The same JSON with every object key lowercased (JSON inside strings too)."""
    if isinstance(value, dict):
        return {key.lower(): lower_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [lower_keys(item) for item in value]
    if isinstance(value, str) and value.startswith(("[{", "{")):
        return json.dumps(lower_keys(json.loads(value)))
    return value


def summary(payload: Any) -> list[tuple[Any, ...]]:
    """The fields that must not depend on key casing."""
    return [
        (
            f.shape,
            f.source,
            f.source_id,
            f.type,
            f.severity,
            f.ips,
            f.apis,
            f.endpoint,
            f.user_agent,
        )
        for f in normalize(payload)
    ]


def test_all_lowercase_keys_give_the_same_findings(sample_name: str, load_sample: Any) -> None:
    """Every sample with all keys lowercased normalizes exactly like the original."""
    payload = load_sample(sample_name)
    assert summary(lower_keys(payload)) == summary(payload)


def test_same_alert_via_rest_and_workflow_is_one_finding(rest_alert: dict[str, Any]) -> None:
    """The REST alert re-sent as a PascalCase workflow payload keeps (source, source_id)."""
    props = rest_alert["properties"]
    workflow = {key[0].upper() + key[1:]: value for key, value in props.items()}
    (via_rest,) = normalize(rest_alert)
    (via_workflow,) = normalize(workflow)
    assert via_workflow.shape == "defender-workflow"
    assert (via_workflow.source, via_workflow.source_id) == (via_rest.source, via_rest.source_id)
    assert via_workflow.fingerprint == via_rest.fingerprint


def test_same_alert_via_row_and_graph_shares_the_defender_id(
    row_alert: dict[str, Any], graph_alert: dict[str, Any]
) -> None:
    """Rows use VendorOriginalId and Graph providerAlertId: both are the Defender alert id."""
    graph_alert["providerAlertId"] = row_alert["VendorOriginalId"]
    (row,) = normalize(row_alert)
    (graph,) = normalize(graph_alert)
    assert (row.source, row.source_id) == (graph.source, graph.source_id)


def test_row_without_vendor_id_uses_system_alert_id(row_alert: dict[str, Any]) -> None:
    """A SecurityAlert row without VendorOriginalId falls back to SystemAlertId."""
    del row_alert["VendorOriginalId"]
    assert normalize(row_alert)[0].source_id == row_alert["SystemAlertId"]


def test_graph_without_provider_id_uses_graph_id(graph_alert: dict[str, Any]) -> None:
    """A Graph alert without providerAlertId is keyed by its Graph id."""
    del graph_alert["providerAlertId"]
    assert normalize(graph_alert)[0].source_id == graph_alert["id"]


def test_minimal_alert_gets_defaults() -> None:
    """Only type and id: title falls back to the type, severity to medium, lists empty."""
    (finding,) = normalize({"properties": {"alertType": "API_X", "systemAlertId": "a1"}})
    assert finding.shape == "defender-rest"
    assert (finding.title, finding.severity, finding.status) == ("API_X", Severity.MEDIUM, "active")
    assert finding.ips == finding.apis == finding.tactics == []
    assert finding.endpoint is finding.user_agent is finding.first_seen is None


def test_invalid_ips_are_dropped_and_ipv6_canonical(rest_alert: dict[str, Any]) -> None:
    """Entity addresses that are not IPs vanish; IPv6 comes out compressed; repeats once."""
    rest_alert["properties"]["entities"] = [
        {"type": "ip", "address": "999.0.0.1"},
        {"type": "ip", "address": "<script>"},
        {"type": "IP", "address": "2001:0DB8:0000:0000:0000:0000:0000:0001"},
        {"type": "ip", "address": {"nested": "1.2.3.4"}},
        {"type": "ip", "address": "2001:db8::1"},
        {"type": "ip"},
        "not an entity",
    ]
    assert normalize(rest_alert)[0].ips == ["2001:db8::1"]


def test_row_with_malformed_json_strings_keeps_the_alert(row_alert: dict[str, Any]) -> None:
    """Broken Entities/ExtendedProperties JSON is treated as absent, not as an error."""
    row_alert["Entities"] = '[{"Address": "192.0.2.45", "Type": "ip"'
    row_alert["ExtendedProperties"] = "{not json"
    row_alert["RemediationSteps"] = "Block the source IP address."
    (finding,) = normalize(row_alert)
    assert finding.ips == []
    assert [api.api for api in finding.apis] == ["search-api"]  # ResourceId still counts
    assert (finding.endpoint, finding.user_agent, finding.properties) == (None, None, {})
    assert finding.remediation_steps == ["Block the source IP address."]


def test_row_techniques_as_json_string(row_alert: dict[str, Any]) -> None:
    """A row's Techniques column may hold a JSON array in a string."""
    row_alert["Techniques"] = '["T1190", "T1595"]'
    row_alert["Tactics"] = "Execution, InitialAccess"
    (finding,) = normalize(row_alert)
    assert finding.techniques == ["T1190", "T1595"]
    assert finding.tactics == ["Execution", "InitialAccess"]


def test_rest_intent_may_list_several_tactics(rest_alert: dict[str, Any]) -> None:
    """A comma-separated intent gives several tactics."""
    rest_alert["properties"]["intent"] = "PreAttack,Discovery"
    assert normalize(rest_alert)[0].tactics == ["PreAttack", "Discovery"]


def test_account_entities_become_users(rest_alert: dict[str, Any]) -> None:
    """Account entities give users as name@upnSuffix."""
    rest_alert["properties"]["entities"].append(
        {"type": "account", "name": "alice", "upnSuffix": "contoso.com"}
    )
    assert normalize(rest_alert)[0].users == ["alice@contoso.com"]


def test_oversized_strings_are_truncated(rest_alert: dict[str, Any]) -> None:
    """A megabyte user agent is capped; raw keeps what was received."""
    huge = "A" * 1_000_000
    rest_alert["properties"]["extendedProperties"]["Client user agent"] = huge
    (finding,) = normalize(rest_alert)
    assert finding.user_agent == "A" * MAX_TEXT
    assert finding.properties["Client user agent"] == "A" * MAX_TEXT
    assert finding.raw["properties"]["extendedProperties"]["Client user agent"] == huge


def test_graph_ip_roles_put_attacker_first(graph_alert: dict[str, Any]) -> None:
    """Attacker/source IP evidence comes before other IP evidence."""
    victim = {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "192.0.2.1"}
    graph_alert["evidence"].insert(0, {**victim, "roles": ["attacked"]})
    assert normalize(graph_alert)[0].ips == ["198.51.100.150", "192.0.2.1"]


def test_graph_unknown_severity_is_informational(graph_alert: dict[str, Any]) -> None:
    """Graph's `unknown` severity maps to informational."""
    graph_alert["severity"] = "unknown"
    assert normalize(graph_alert)[0].severity is Severity.INFORMATIONAL


def test_graph_list_page_yields_each_alert(graph_alert: dict[str, Any]) -> None:
    """A Graph page {"@odata.context", "value": [...]} gives one finding per alert."""
    second = {**graph_alert, "id": "g2", "providerAlertId": "p2"}
    page = {"@odata.context": "https://graph.microsoft.com/...", "value": [graph_alert, second]}
    assert detect_shape(page) == "graph"
    assert [f.source_id for f in normalize(page)] == [graph_alert["providerAlertId"], "p2"]


def test_batch_records_are_detected_one_by_one(
    rest_alert: dict[str, Any], assessment: dict[str, Any]
) -> None:
    """An Event Hub batch may mix alerts and recommendations."""
    findings = normalize({"records": [rest_alert, assessment]})
    assert [f.shape for f in findings] == ["defender-rest", "defender-assessment"]
    assert [f.kind for f in findings] == [Kind.ALERT, Kind.RECOMMENDATION]


def test_top_level_list_is_a_batch(rest_alert: dict[str, Any]) -> None:
    """A JSON array of records is a batch too; an empty one gives no findings."""
    assert len(normalize([rest_alert, rest_alert])) == 2
    assert normalize([]) == normalize({"records": []}) == []


def test_batch_error_names_the_record(rest_alert: dict[str, Any]) -> None:
    """An error inside a batch says which record and which field."""
    broken = {"type": "Microsoft.Security/Locations/alerts", "properties": {"systemAlertId": "x"}}
    with pytest.raises(NormalizationError) as caught:
        normalize({"records": [rest_alert, rest_alert, rest_alert, broken]})
    assert caught.value.where == "records[3].properties.alertType"


@pytest.mark.parametrize("payload", [None, 3, "text", True, 1.5, ["not a record"]])
def test_non_objects_are_refused(payload: object) -> None:
    """Anything but an object (or a batch of objects) is a NormalizationError."""
    with pytest.raises(NormalizationError, match="expected a JSON object"):
        normalize(payload)


def test_unknown_payload_says_what_was_expected() -> None:
    """A dict matching no shape names the shapes it could have been."""
    with pytest.raises(NormalizationError) as caught:
        detect_shape({"hello": "world"})
    assert "properties.alertType" in str(caught.value)
    assert "class_uid" in str(caught.value)


def test_unknown_shape_name_is_refused(rest_alert: dict[str, Any]) -> None:
    """normalize(shape=...) accepts only names from SHAPES."""
    with pytest.raises(NormalizationError, match="unknown shape 'splunk'"):
        normalize(rest_alert, "splunk")


def test_empty_batch_has_no_shape() -> None:
    """detect_shape needs at least one record."""
    with pytest.raises(NormalizationError, match="empty batch"):
        detect_shape({"records": []})


def test_shapes_lists_every_shape() -> None:
    """SHAPES names the eight delivery shapes."""
    assert set(SHAPES) == {
        "defender-rest",
        "defender-workflow",
        "securityalert",
        "graph",
        "sentinel-incident",
        "defender-assessment",
        "ocsf",
        "generic",
    }


@pytest.mark.parametrize(
    ("payload", "shape", "where"),
    [
        ({"properties": {"alertType": "T"}}, "defender-rest", "properties.systemAlertId"),
        ({"properties": "x"}, "defender-rest", "properties"),
        ({"AlertType": "T"}, "defender-workflow", "SystemAlertId"),
        ({"systemalertid": "1"}, "defender-workflow", "AlertType"),
        ({"Type": "SecurityAlert", "AlertType": "T"}, "securityalert", "SystemAlertId"),
        ({"id": "g", "providerAlertId": "p"}, "graph", "detectorId"),
        ({"detectorId": "T"}, "graph", "id"),
        ({"objectSchemaType": "Incident"}, "sentinel-incident", "object"),
        ({"object": {"properties": {}}}, "sentinel-incident", "object.name"),
        ({"type": "Microsoft.Security/assessments"}, "defender-assessment", "id"),
        ({"class_uid": 2004}, "ocsf", "finding_info.types"),
        ({"schema": "clampdown.finding/v1", "id": "1"}, "generic", "type"),
    ],
)
def test_missing_required_fields_are_named(payload: dict[str, Any], shape: str, where: str) -> None:
    """A missing type or id raises NormalizationError naming the field."""
    with pytest.raises(NormalizationError) as caught:
        normalize(payload, shape)
    assert caught.value.where == where


def test_sentinel_incident_without_alerts(incident: dict[str, Any]) -> None:
    """No alerts: one sentinel finding keyed by the incident name, with its entities."""
    incident["object"]["properties"]["alerts"] = []
    (finding,) = normalize(incident)
    assert (finding.source, finding.source_id) == ("sentinel", incident["object"]["name"])
    assert finding.type == "SentinelIncident"
    assert finding.title == incident["object"]["properties"]["title"]
    assert finding.ips == ["203.0.113.200"]
    assert finding.apis[0].operation == "exportCustomers"


def test_sentinel_alert_inherits_incident_values(incident: dict[str, Any]) -> None:
    """An alert without severity or title takes the incident's."""
    props = incident["object"]["properties"]
    props["severity"] = "High"
    alert = props["alerts"][0]["properties"]
    del alert["severity"], alert["alertDisplayName"]
    (finding,) = normalize(incident)
    assert (finding.severity, finding.title) == (Severity.HIGH, props["title"])


def test_bare_sentinel_incident_resource(incident: dict[str, Any]) -> None:
    """The incident resource itself (no automation envelope) is accepted."""
    bare = incident["object"]
    assert detect_shape(bare) == "sentinel-incident"
    assert normalize(bare)[0].source_id == "2517170843066666666_f6"


@pytest.mark.parametrize(
    ("key", "display_name", "expected"),
    [
        ("44aae697-8cc1-4ed1-a136-44a644bfd51f", "", "Recommendation_SubscriptionScopedToAllApis"),
        (
            "0000",
            "API endpoints in API Management should be authenticated",
            "UnauthenticatedEndpoint",
        ),
        (
            "0000",
            "API endpoints that are unused should be removed",
            "Recommendation_UnusedEndpoint",
        ),
        ("ABCD-1234", "Something else entirely", "Recommendation_abcd-1234"),
    ],
)
def test_recommendation_types(
    assessment: dict[str, Any], key: str, display_name: str, expected: str
) -> None:
    """Known assessment keys and display names get stable type names; others use the key."""
    assessment["name"] = key
    assessment["properties"]["displayName"] = display_name
    assert normalize(assessment)[0].type.endswith(expected)


def test_recommendation_resource_from_id_when_details_missing(assessment: dict[str, Any]) -> None:
    """Without resourceDetails, the resource is the assessment id minus its own segment."""
    del assessment["properties"]["resourceDetails"]
    (finding,) = normalize(assessment)
    assert finding.apis[0].operation == "listInvoices"
    assert "/assessments/" not in finding.apis[0].id


def test_recommendation_missing_status_and_severity(assessment: dict[str, Any]) -> None:
    """A recommendation without status or severity: status unknown, severity medium."""
    del assessment["properties"]["status"], assessment["properties"]["metadata"]
    (finding,) = normalize(assessment)
    assert (finding.status, finding.severity) == ("unknown", Severity.MEDIUM)


@pytest.mark.parametrize(
    ("severity_id", "text", "expected"),
    [
        (1, None, Severity.INFORMATIONAL),
        (2, None, Severity.LOW),
        (3, None, Severity.MEDIUM),
        (4, None, Severity.HIGH),
        (5, None, Severity.CRITICAL),
        (6, None, Severity.CRITICAL),
        (99, "Low", Severity.LOW),
        (0, None, Severity.MEDIUM),
        (None, "critical", Severity.CRITICAL),
    ],
)
def test_ocsf_severity(
    ocsf_finding: dict[str, Any], severity_id: int | None, text: str | None, expected: Severity
) -> None:
    """severity_id maps 1..6; 0, 99 or none fall back to the severity text, then medium."""
    ocsf_finding["severity_id"] = severity_id
    ocsf_finding["severity"] = text
    assert normalize(ocsf_finding)[0].severity is expected


def test_ocsf_fallbacks(ocsf_finding: dict[str, Any]) -> None:
    """Without finding_info uid/types, OCSF uses metadata.uid and the analytic name."""
    del ocsf_finding["finding_info"]["uid"], ocsf_finding["finding_info"]["types"]
    (finding,) = normalize(ocsf_finding)
    assert (finding.source_id, finding.type) == ("waf-7781", "login-failure-burst")


def test_ocsf_without_product_name_is_refused(ocsf_finding: dict[str, Any]) -> None:
    """The source needs a product (or vendor) name."""
    ocsf_finding["metadata"]["product"] = {}
    with pytest.raises(NormalizationError) as caught:
        normalize(ocsf_finding)
    assert caught.value.where == "metadata.product.name"


def test_flat_alert_missing_id_names_the_field() -> None:
    """A flat workflow alert without SystemAlertId is detected and the missing field named."""
    with pytest.raises(NormalizationError) as caught:
        normalize({"AlertType": "API_SpikeInAPITraffic", "Severity": "High"})
    assert caught.value.where == "SystemAlertId"


def test_non_text_alert_type_is_refused(rest_alert: dict[str, Any]) -> None:
    """An id that is not text is an error saying which type it was."""
    rest_alert["properties"]["alertType"] = {"x": 1}
    with pytest.raises(NormalizationError, match="must be a string, not object"):
        normalize(rest_alert)
