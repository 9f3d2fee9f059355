"""`clampdown sources pull | list | check`: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from clampdown.cli.main import app
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from tests.cli.conftest import one_line, runner, write_config  # noqa: F401 (a fixture)
from tests.collectors.conftest import (
    APIM,
    arm_alert,
    assessment,
    assessments_source,
    defender_alerts_source,
    graph_source,
)


@pytest.fixture
def clampdown(
    runner: CliRunner,  # noqa: F811
    database_url: str,
    tmp_path: Path,
    defender: FakeDefender,
    graph: FakeGraph,
) -> Any:
    """Run `clampdown` on the test database, with three sources pointed at the fakes."""
    for n in range(5):
        defender.add_alert(arm_alert(f"alert-{n}"))
    defender.add_assessment(assessment(f"{APIM}/apis/orders"))
    sources = [
        defender_alerts_source(defender.url),
        graph_source(graph.url, enabled=False),
        assessments_source(defender.url, max_attempts=2),  # a failing pull gives up soon
    ]
    config = write_config(tmp_path / "clampdown.yaml", sources=sources)

    def run(*args: str) -> Result:
        options = ["--database-url", database_url, "--config", str(config)]
        return runner.invoke(app, [*options, *args])

    return run


def test_pull_prints_the_counts(clampdown: Any) -> None:
    result = clampdown("sources", "pull", "mdc-alerts")
    assert result.exit_code == 0, result.output
    assert one_line(result.stdout).startswith(
        "source mdc-alerts: 2 pages, 5 records read, 5 kept: 5 new findings, 0 already known, "
        "0 unreadable; checkpoint "
    )
    again = clampdown("sources", "pull", "mdc-alerts", "--json")
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)
    assert (counts["received"], counts["new"], counts["repeats"]) == (5, 0, 5)


def test_a_failed_pull_exits_1_with_the_reason(clampdown: Any, defender: FakeDefender) -> None:
    defender.fail_next(403, path_contains="/Microsoft.Security/alerts", code="AuthorizationFailed")
    result = clampdown("sources", "pull", "mdc-alerts")
    assert result.exit_code == 1
    message = one_line(result.stderr.split("error: ", 1)[1])
    assert message.startswith("source mdc-alerts: GET /subscriptions/")
    assert "403 AuthorizationFailed" in message


def test_pulling_an_unknown_source_is_bad_input(clampdown: Any) -> None:
    result = clampdown("sources", "pull", "nope")
    assert result.exit_code == 2
    assert "no source named 'nope' (mdc-alerts, graph-alerts, mdc-posture)" in one_line(
        result.stderr
    )


def test_list_shows_health_as_a_table_and_as_json(clampdown: Any, defender: FakeDefender) -> None:
    assert clampdown("sources", "pull", "mdc-alerts").exit_code == 0
    defender.fail_next(500, path_contains="/Microsoft.Security/assessments", times=5)
    assert clampdown("sources", "pull", "mdc-posture").exit_code == 1
    table = clampdown("sources", "list")
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert " ok " in rows["mdc-alerts"]
    assert " disabled " in rows["graph-alerts"]
    assert " failing " in rows["mdc-posture"]
    assert "answered 500" in rows["mdc-posture"]
    listed = json.loads(clampdown("sources", "list", "--json").stdout)["sources"]
    by_name = {row["name"]: row for row in listed}
    assert by_name["mdc-alerts"]["ingested_total"] == 5
    assert by_name["mdc-alerts"]["lag_seconds"] >= 0
    assert by_name["graph-alerts"]["last_success_at"] is None
    assert by_name["mdc-posture"]["errors_total"] == 1


def test_check_reads_one_page_of_each_enabled_source_and_ingests_nothing(
    clampdown: Any, defender: FakeDefender
) -> None:
    result = clampdown("sources", "check", "--json")
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["sources"]}
    assert set(checks) == {"mdc-alerts", "mdc-posture"}
    assert checks["mdc-alerts"]["detail"] == (
        "signed in; first page: 3 records, 3 kept, more pages follow"
    )
    assert checks["mdc-posture"]["detail"] == "signed in; first page: 1 records, 1 kept"
    assert len(defender.requests_to("GET", "/Microsoft.Security/alerts")) == 1
    listed = json.loads(clampdown("sources", "list", "--json").stdout)["sources"]
    assert all(row["status"] in ("pending", "disabled") for row in listed)
    assert json.loads(clampdown("findings", "list", "--json").stdout)["findings"] == []


def test_check_exits_1_naming_the_failing_source(
    clampdown: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A named source is checked even when disabled; the missing secret is named."""
    monkeypatch.delenv("CLAMPDOWN_TEST_SOURCE_SECRET")
    result = clampdown("sources", "check", "graph-alerts")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert one_line(result.stderr) == (
        "error: source graph-alerts: identity.client_secret: environment variable "
        "CLAMPDOWN_TEST_SOURCE_SECRET is not set"
    )


@pytest.mark.parametrize(("wait", "ran"), [("10", True), ("0", False)])
def test_pull_runs_the_planned_steps_unless_told_not_to(
    clampdown: Any, wait: str, ran: bool
) -> None:
    assert clampdown("sources", "pull", "mdc-alerts", "--wait", wait).exit_code == 0
    rows = json.loads(clampdown("remediations", "list", "--json").stdout)["remediations"]
    assert rows
    contained = json.loads(clampdown("containments", "list", "--json").stdout)["containments"]
    assert bool(contained) is ran
