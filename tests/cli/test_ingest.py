"""`clampdown ingest` and `findings list`: what was stored, what was planned, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Run, one_line, out_json, sample_path

SUSPICIOUS_IP = "defender-rest-suspicious-ip.json"
OPERATION = (
    "/subscriptions/6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10/resourceGroups/rg-payments/providers"
    "/Microsoft.ApiManagement/service/apim-contoso-prod/apis/orders-api/operations/getOrder"
)


def test_ingest_json_reports_the_finding_and_its_remediation(cli: Run) -> None:
    [finding] = out_json(cli("ingest", sample_path(SUSPICIOUS_IP), "--json"))["findings"]
    assert finding["new"] is True
    assert finding["type"] == "API_AccessFromSuspiciousIP"
    assert finding["kind"] == "alert"
    assert finding["severity"] == "high"
    assert finding["source"] == "defender"
    assert finding["ips"] == ["203.0.113.77"]
    assert finding["apis"][0] == OPERATION
    [remediation] = finding["remediations"]
    assert remediation["playbook"] == "block-suspicious-ip"
    assert remediation["joined"] is False
    # The command runs the planned steps before it exits: the state is the final one.
    assert remediation["state"] == "succeeded"


def test_ingesting_the_same_file_again_is_a_duplicate(cli: Run) -> None:
    [first] = out_json(cli("ingest", sample_path(SUSPICIOUS_IP), "--json"))["findings"]
    [again] = out_json(cli("ingest", sample_path(SUSPICIOUS_IP), "--json"))["findings"]
    assert again["new"] is False
    assert again["finding_id"] == first["finding_id"]
    assert again["remediations"] == []


def test_ingest_text_says_new_then_duplicate(cli: Run) -> None:
    first = cli("ingest", sample_path(SUSPICIOUS_IP))
    assert first.exit_code == 0, first.output
    assert "API_AccessFromSuspiciousIP [new]" in first.stdout
    assert "ips=203.0.113.77" in first.stdout
    assert "block-suspicious-ip: remediation" in first.stdout
    assert "succeeded" in first.stdout
    again = cli("ingest", sample_path(SUSPICIOUS_IP))
    assert again.exit_code == 0, again.output
    assert "API_AccessFromSuspiciousIP [duplicate]" in again.stdout


def test_ingest_reads_standard_input(cli: Run) -> None:
    body = Path(sample_path("defender-eventhub-batch.json")).read_text()
    found = out_json(cli("ingest", "-", "--json", input=body))["findings"]
    assert [f["type"] for f in found] == ["API_SpikeInAPITraffic", "API_SprayInRequests"]
    assert all(f["new"] for f in found)
    assert all(f["ips"] for f in found)


def test_ingest_guided_recommendation_leaves_it_running(cli: Run) -> None:
    """A guided remediation waits for its task: `running`, not finished, after ingest."""
    [finding] = out_json(
        cli("ingest", sample_path("recommendation-unauthenticated-endpoint.json"), "--json")
    )["findings"]
    assert finding["kind"] == "recommendation"
    assert finding["ips"] == []
    [remediation] = finding["remediations"]
    assert remediation["playbook"] == "secure-unauthenticated-endpoint"
    assert remediation["state"] == "running"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"id": "x", ', "malformed JSON"),
        (b"\xff\xfe not json", "malformed JSON"),
        (b"   ", "empty, expected a JSON document"),
        (b'{"hello": "world"}', "no known delivery shape fits"),
        (b"[1, 2]", "[0]: expected a JSON object, got"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(
    cli: Run, tmp_path: Path, content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = cli("ingest", str(bad), "--json")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    message = one_line(result.stderr)
    assert message.startswith("error: ")
    assert expected in message
    if "malformed" in expected or "empty" in expected:
        assert str(bad) in message
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_unreadable_stdin_names_stdin(cli: Run) -> None:
    result = cli("ingest", "-", input='{"a": ')
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith("error: stdin: malformed JSON")
    assert "Traceback" not in result.output


def test_a_missing_file_is_refused(cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = cli("ingest", str(missing))
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert one_line(result.stderr) == f"error: {missing}: cannot read: No such file or directory"
    assert "Traceback" not in result.output


def test_an_unknown_shape_option_is_refused(cli: Run) -> None:
    result = cli("ingest", sample_path(SUSPICIOUS_IP), "--shape", "carrier-pigeon")
    assert result.exit_code == 2
    assert "unknown shape 'carrier-pigeon'" in one_line(result.stderr)


def test_a_refused_ingest_stores_nothing(cli: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"hello": 1}]')
    assert cli("ingest", str(bad)).exit_code == 2
    assert out_json(cli("findings", "list", "--json")) == {"findings": []}


def test_a_broken_config_file_is_refused(cli: Run, tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("default_pack: [not, a, bool]\n")
    result = cli("findings", "list", config=config)
    assert result.exit_code == 2
    message = one_line(result.stderr)
    assert str(config) in message
    assert "default_pack" in message
    assert "Traceback" not in result.output


def test_findings_list_json(cli: Run) -> None:
    cli("ingest", sample_path(SUSPICIOUS_IP))
    cli("ingest", sample_path("recommendation-unused-endpoint.json"))
    rows = out_json(cli("findings", "list", "--json"))["findings"]
    assert [r["type"] for r in rows] == [
        "Recommendation_UnusedEndpoint",
        "API_AccessFromSuspiciousIP",
    ]
    assert rows[1]["source_id"] == "2517170843029999999_4c7d1a9e-55b2-4f0e-8a61-0d3f9e2c7b11"
    assert rows[1]["severity"] == "high"
    only = out_json(cli("findings", "list", "--json", "--type", "API_AccessFromSuspiciousIP"))
    assert [r["id"] for r in only["findings"]] == [rows[1]["id"]]
    assert len(out_json(cli("findings", "list", "--json", "--limit", "1"))["findings"]) == 1


def test_findings_list_table(cli: Run) -> None:
    cli("ingest", sample_path(SUSPICIOUS_IP))
    result = cli("findings", "list")
    assert result.exit_code == 0, result.output
    assert "Findings" in result.stdout
    assert "defender/" in result.stdout
    assert "high" in result.stdout
