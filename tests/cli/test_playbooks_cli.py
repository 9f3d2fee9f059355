"""`playbooks test` and `playbooks simulate`: the default pack's tests, replays, reports."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from clampdown.cli import output
from clampdown.cli import playbooks as playbooks_cli
from clampdown.cli.main import app
from clampdown.playbooks import load_default_pack
from clampdown.sources import normalize
from clampdown.store import findings
from clampdown.store.db import Database
from tests.cli.conftest import Run, out_json, sample_path, write_config
from tests.conftest import FIXTURES, sample

SAMPLES = sorted(p.name for p in FIXTURES.glob("*.json"))


# -- test ----------------------------------------------------------------------------------


def test_the_default_pack_passes_its_own_tests_and_covers_every_playbook(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Without a path and with no playbooks configured, `test` runs the pack's tests."""
    config = write_config(tmp_path / "c.yaml")
    result = runner.invoke(app, ["--config", str(config), "playbooks", "test", "--json"])
    report = out_json(result)
    failures = [d["diff"] for c in report["cases"] for d in c["differences"]]
    assert report["failed"] == 0, failures
    assert report["passed"] == len(report["cases"]) >= 15
    assert report["untested"] == []
    matched = {name for case in report["cases"] for name in case["matched"]}
    assert matched == {p.name for p in load_default_pack()}
    assert all(c["path"].startswith("clampdown/playbooks/pack/") for c in report["cases"])


FAILING = """\
apiVersion: clampdown/v1
kind: PlaybookTest
metadata: {name: wrong-ip}
spec:
  finding:
    file: alert.json
  expect:
    - playbook: block-it
      steps:
        - uses: gateway.block
          with: {ip: 203.0.113.1}
"""
PLAYBOOK = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-it}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def _folder(tmp_path: Path, tests: str = FAILING) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "block.yaml").write_text(PLAYBOOK)
    (folder / "block.test.yaml").write_text(tests)
    (folder / "alert.json").write_text(json.dumps(sample("defender-rest-suspicious-ip.json")))
    return folder


def test_a_failing_case_names_file_line_and_the_difference(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    result = runner.invoke(app, ["playbooks", "test", str(folder)])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"FAIL {folder / 'block.test.yaml'}:1 wrong-ip"
    assert lines[1] == (f"    {folder / 'block.test.yaml'}:11: expect[0].steps[0].with.ip: differs")
    assert lines[2:4] == ['        - "203.0.113.1"', '        + "203.0.113.77"']
    assert lines[-1] == "0 passed, 1 failed"


def test_test_json_and_a_passing_directory(runner: CliRunner, tmp_path: Path) -> None:
    folder = _folder(tmp_path, FAILING.replace("203.0.113.1", "203.0.113.77"))
    result = runner.invoke(app, ["playbooks", "test", str(folder), "--json"])
    report = out_json(result)
    assert (report["passed"], report["failed"], report["untested"]) == (1, 0, [])
    text = runner.invoke(app, ["playbooks", "test", str(folder / "block.test.yaml")])
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_configured_playbooks_are_tested_with_their_own_tests(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    config = write_config(tmp_path / "c.yaml", playbooks=str(folder), default_pack=False)
    result = runner.invoke(app, ["--config", str(config), "playbooks", "test", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [c["name"] for c in report["cases"]] == ["wrong-ip"]


def test_a_directory_without_tests_fails(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "block.yaml").write_text(PLAYBOOK)
    result = runner.invoke(app, ["playbooks", "test", str(tmp_path)])
    assert result.exit_code == 1
    assert "no test cases found" in result.stderr


# -- simulate ------------------------------------------------------------------------------


def test_simulate_files_reports_each_pack_playbook(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    files = [sample_path(name) for name in SAMPLES]
    result = runner.invoke(
        app, ["--config", str(config), "playbooks", "simulate", *files, "--json"]
    )
    report = out_json(result)
    assert report["files"] == files
    assert (report["findings"], report["unmatched"]) == (10, 1)
    rows = {p["playbook"]: p for p in report["playbooks"]}
    assert {name: row["remediations"] for name, row in rows.items()} == {
        "block-suspicious-ip": 1,
        "block-tor-and-exploit-user-agent": 2,
        "throttle-ip-on-api": 3,
        "throttle-ip-across-apis": 1,
        "secure-unauthenticated-endpoint": 1,
        "retire-unused-endpoint": 1,
    }
    assert rows["throttle-ip-on-api"]["containments"] == {"throttle": 3}
    assert rows["block-tor-and-exploit-user-agent"]["containments"] == {"block": 2}
    assert rows["retire-unused-endpoint"]["needs_approval"] == 1
    assert rows["retire-unused-endpoint"]["awaiting_approval"] == {"disable": 1}
    assert rows["secure-unauthenticated-endpoint"]["containments"] == {}
    assert [s["subject"] for s in rows["block-suspicious-ip"]["subjects"]] == ["203.0.113.77"]
    assert report["budget_trips"] == []


def test_simulate_table(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    files = [sample_path(name) for name in SAMPLES]
    result = runner.invoke(app, ["--config", str(config), "playbooks", "simulate", *files])
    assert result.exit_code == 0, result.output
    assert "Simulated 10 finding(s) from 9 file(s); nothing was done" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "throttle-ip-on-api" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "throttle-ip-on-api",
        "automatic",
        "3",
        "3",
        "0",
        "throttle 3",
        "3 ip",
        "-",
        "-",
    ]
    total = len(load_default_pack())
    summary = f"1 finding(s) matched no playbook; {total - 6} of {total} playbook(s) matched no"
    assert summary in result.stdout


def test_simulate_shows_where_the_budget_trips(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", safety={"budget": {"window": "7d", "per_target": 2}})
    files = [sample_path(name) for name in SAMPLES]
    result = runner.invoke(
        app, ["--config", str(config), "playbooks", "simulate", *files, "--json"]
    )
    report = out_json(result)
    contained = sum(sum(p["containments"].values()) for p in report["playbooks"])
    assert contained == 2
    trips = report["budget_trips"]
    # The samples span 2026-11-20 .. 25: the third containment of the week trips it.
    assert len(trips) == 5
    assert trips[0]["playbook"] == "throttle-ip-across-apis"
    assert trips[0]["origin"].endswith("defender-eventhub-batch.json[1]")
    assert trips[0]["reason"] == "blast-radius budget reached (safety.budget: per_target 2 in 7d)"
    assert sum(p["needs_approval"] for p in report["playbooks"]) == 6  # 5 trips + retire


def test_simulate_stored_findings_in_a_time_range(cli: Run, database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    now = datetime.now(UTC)
    with db.write() as conn:
        for age_days, name in ((1, "defender-rest-suspicious-ip.json"), (10, SAMPLES[0])):
            for finding in normalize(sample(name)):
                findings.insert_if_new(conn, finding, now=now - timedelta(days=age_days))
    db.dispose()
    recent = out_json(cli("playbooks", "simulate", "--json"))
    assert recent["findings"] == 1
    assert [p["playbook"] for p in recent["playbooks"]] == ["block-suspicious-ip"]
    assert datetime.fromisoformat(recent["since"]) < now - timedelta(days=6)
    everything = out_json(cli("playbooks", "simulate", "--since", "30d", "--json"))
    assert everything["findings"] == 3
    older = out_json(cli("playbooks", "simulate", "--since", "30d", "--until", "2d", "--json"))
    assert older["findings"] == 2
    assert {p["playbook"] for p in older["playbooks"]} == {
        "throttle-ip-on-api",
        "throttle-ip-across-apis",
    }


def test_simulate_refuses_a_bad_time(cli: Run) -> None:
    result = cli("playbooks", "simulate", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since: 'last tuesday' is neither a duration" in result.stderr


def test_progress_bar_only_on_a_terminal_and_never_in_json(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=terminal, force_terminal=True, width=100))
    monkeypatch.setattr(playbooks_cli, "PROGRESS_FROM", 2)
    config = write_config(tmp_path / "c.yaml")
    files = [sample_path(name) for name in SAMPLES]
    as_json = runner.invoke(
        app, ["--config", str(config), "playbooks", "simulate", *files, "--json"]
    )
    assert out_json(as_json)["findings"] == 10
    assert terminal.getvalue() == ""
    table = runner.invoke(app, ["--config", str(config), "playbooks", "simulate", *files])
    assert table.exit_code == 0, table.output
    assert "replaying" in terminal.getvalue()
    assert "10/10" in terminal.getvalue()
