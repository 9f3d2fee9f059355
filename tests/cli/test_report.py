"""`clampdown report`: the effectiveness report from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clampdown.playbooks import load_default_pack
from tests.cli.conftest import Run, one_line, out_json, sample_path


def test_json_report_of_an_empty_database(cli: Run) -> None:
    """Nothing ingested: every figure empty, and each loaded playbook never fired."""
    data = out_json(cli("report", "--format", "json", "--since", "24h"))
    pack = sorted(p.name for p in load_default_pack())
    assert data["playbooks"] == pack
    assert data["overall"]["remediations"] == 0
    assert data["overall"]["failure_rate"] is None
    assert data["bucket_seconds"] == 3600
    since = datetime.fromisoformat(data["since"])
    until = datetime.fromisoformat(data["until"])
    assert until - since == timedelta(hours=24)
    assert [(s["kind"], s["playbook"]) for s in data["suggestions"]] == [
        ("never_fires", name) for name in pack
    ]


def test_markdown_is_the_default(cli: Run) -> None:
    result = cli("report")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Remediation effectiveness\n")
    assert "\n## Suggestions\n" in result.stdout
    assert ", by day;" in result.stdout


def test_html_report_to_a_file(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = cli("report", "--format", "html", "--output", str(target), "--since", "2d")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg ") == 4


def test_report_counts_what_was_ingested(cli: Run) -> None:
    out_json(cli("ingest", sample_path("defender-rest-suspicious-ip.json"), "--json"))
    data = out_json(cli("report", "--format", "json", "--since", "3650d"))
    assert data["overall"]["remediations"] == 1
    [group] = [g for g in data["by_playbook"] if g["figures"]["remediations"]]
    assert group["key"] == "block-suspicious-ip"
    never = {s["playbook"] for s in data["suggestions"] if s["kind"] == "never_fires"}
    assert "block-suspicious-ip" not in never


def test_an_explicit_period(cli: Run) -> None:
    data = out_json(
        cli(
            "report",
            "--format",
            "json",
            "--since",
            "2026-11-20T00:00",
            "--until",
            "2026-11-27T00:00:00+00:00",
        )
    )
    assert datetime.fromisoformat(data["since"]) == datetime(2026, 11, 20, tzinfo=UTC)
    assert datetime.fromisoformat(data["until"]) == datetime(2026, 11, 27, tzinfo=UTC)
    assert data["bucket_seconds"] == 86400
    assert len(data["timeline"]) == 7


def test_a_duration_counts_back_from_until(cli: Run) -> None:
    data = out_json(cli("report", "--format", "json", "--since", "7d", "--until", "2026-11-27"))
    assert datetime.fromisoformat(data["since"]) == datetime(2026, 11, 20, tzinfo=UTC)
    assert datetime.fromisoformat(data["until"]) == datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "7 days"], "--since: '7 days' is neither a duration (7d, 24h) nor a time"),
        (["--since", "1m1h"], "--since: '1m1h' is neither a duration"),
        (["--until", "tomorrow"], "--until: 'tomorrow' is neither a duration"),
        (["--since", "2026-11-20T00:00", "--until", "2026-11-19"], "must be before --until"),
    ],
)
def test_a_bad_period_exits_2_with_a_message(cli: Run, args: list[str], message: str) -> None:
    result = cli("report", *args)
    assert result.exit_code == 2
    assert message in one_line(result.stderr)
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_an_unknown_format_is_refused(cli: Run) -> None:
    result = cli("report", "--format", "pdf")
    assert result.exit_code == 2
    assert "pdf" in one_line(result.stderr)


def test_an_unwritable_output_exits_1(cli: Run, tmp_path: Path) -> None:
    result = cli("report", "--output", str(tmp_path / "missing" / "report.md"))
    assert result.exit_code == 1
    assert "cannot write" in one_line(result.stderr)


def test_json_output_is_valid_json_with_suggestions(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    assert cli("report", "--format", "JSON", "-o", str(target)).exit_code == 0
    assert "suggestions" in json.loads(target.read_text())
