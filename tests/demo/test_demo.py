"""`clampdown demo`: the files it writes, what the samples become, the history, the CLI."""

from __future__ import annotations

import json
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clampdown.api.app import create_app
from clampdown.cli.main import app as cli
from clampdown.config import Scope, load_config
from clampdown.demo import Result
from clampdown.demo.seed import SAMPLES, sample_payloads
from clampdown.services import Clampdown
from clampdown.store import remediations
from tests.cli.conftest import one_line

SPIKE_IP = "198.51.100.23"
MONITOR_IP = "198.51.100.250"


def open_app(result: Result) -> Clampdown:
    """The demo as `clampdown --config DIR/clampdown.yaml serve` opens it."""
    return Clampdown.open(load_config(result.workspace.config))


@pytest.fixture(autouse=True)
def _no_database_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAMPDOWN_DATABASE_URL", raising=False)


def test_every_sample_file_is_ingested() -> None:
    folder = resources.files("clampdown.demo") / "samples"
    assert sorted(SAMPLES) == sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))


def test_sample_times_move_to_just_before_now_in_their_own_format() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    payloads = dict(sample_payloads(now))
    rest = payloads["defender-rest-suspicious-ip.json"]
    assert isinstance(rest, dict)
    # Its latest time (processing end, 08:46:11.004) becomes ten minutes before now; the
    # start (32 min 9.004 s earlier) keeps its distance.
    assert rest["properties"]["processingEndTimeUtc"] == "2030-01-02T02:54:05.000Z"
    assert rest["properties"]["startTimeUtc"] == "2030-01-02T02:21:55.996Z"
    graph = payloads["graph-alert-param-enum.json"]
    assert isinstance(graph, dict)
    assert graph["lastUpdateDateTime"] == "2030-01-02T02:54:05.0000000Z"
    ocsf = payloads["ocsf-detection-finding.json"]
    assert isinstance(ocsf, dict)
    assert ocsf["time"] == int((now - timedelta(minutes=10)).timestamp() * 1000)


def test_demo_writes_config_database_and_private_tokens(samples_only: Result) -> None:
    ws = samples_only.workspace
    assert ws.config.is_file()
    assert ws.database.is_file()
    for token in (ws.admin_token, ws.read_token):
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text().strip()) >= 40
    assert ws.admin_token.read_text() != ws.read_token.read_text()
    assert stat.S_IMODE(ws.directory.stat().st_mode) == 0o700


def test_the_config_opens_as_serve_does_with_two_tokens(samples_only: Result) -> None:
    ws = samples_only.workspace
    config = load_config(ws.config)
    assert {name: target.type for name, target in config.targets.items()} == {"builtin": "builtin"}
    app = open_app(samples_only)
    try:
        admin = app.authenticate(ws.admin_token.read_text().strip())
        read = app.authenticate(ws.read_token.read_text().strip())
        assert admin is not None
        assert admin.allows(Scope.APPROVE)
        assert read is not None
        assert read.allows(Scope.READ)
        assert not read.allows(Scope.APPROVE)
        assert create_app(app) is not None
        assert len(app.list_findings(limit=1000)) == samples_only.findings
    finally:
        app.close()


def test_the_samples_end_as_the_default_pack_says(samples_only: Result) -> None:
    # 17 files, 18 findings (a batch of two); the OCSF one matches no playbook, and the
    # repeated spike joins the open remediation of the first, so 16 remediations.
    assert (samples_only.samples, samples_only.findings, samples_only.unmatched) == (17, 18, 1)
    # Blocks and throttles done (the protected monitor too, with its step skipped);
    # guided tasks left to people; the two unused endpoints wait for an approval.
    assert samples_only.remediations == {"awaiting_approval": 2, "running": 5, "succeeded": 9}
    assert samples_only.active == {"block": 4, "throttle": 4}
    assert samples_only.open_tasks == 5
    assert samples_only.awaiting_approval == 2
    assert samples_only.history == {}


def test_the_repeat_joins_and_the_protected_monitor_is_not_contained(
    samples_only: Result,
) -> None:
    app = open_app(samples_only)
    try:
        rems = app.list_remediations(limit=1000)
        subjects = {c["subject"] for c in app.list_containments(limit=1000)}
        details = [app.get_remediation(r["id"]) for r in rems]
    finally:
        app.close()
    assert Counter(r["finding_count"] for r in rems) == {1: 15, 2: 1}
    spike = next(d for d in details if d["finding_count"] == 2)
    assert spike["steps"][0]["params"]["ip"] == SPIKE_IP
    assert MONITOR_IP not in subjects
    [monitor] = [
        d
        for d in details
        if d["steps"][0]["state"] == "skipped" and d["playbook"] == "throttle-ip-on-api"
    ]
    reasons = [h["reason"] for h in monitor["history"] if h["step_key"] == "throttle"]
    assert any(f"ip {MONITOR_IP} is protected" in reason for reason in reasons)


def test_the_samples_were_seen_minutes_before_they_came(samples_only: Result) -> None:
    app = open_app(samples_only)
    try:
        seen = [app.get_finding(f["id"]) for f in app.list_findings(limit=1000)]
    finally:
        app.close()
    for finding in seen:
        if finding["first_seen"] is not None:
            received = datetime.fromisoformat(str(finding["received_at"]))
            first = datetime.fromisoformat(str(finding["first_seen"]))
            assert timedelta(0) < received - first < timedelta(days=1), finding["type"]


def test_hostile_text_is_stored_as_data(samples_only: Result) -> None:
    app = open_app(samples_only)
    try:
        [finding] = [
            app.get_finding(f["id"])
            for f in app.list_findings(limit=1000)
            if f["source"] == "example-api-firewall" and f["type"].endswith("UserAgent")
        ]
        reasons = {c["reason"] for c in app.list_containments(limit=1000)}
    finally:
        app.close()
    assert finding["user_agent"].startswith("<script>alert('ua')</script>")
    title = "Injection attempt in a user agent: <img src=x onerror=alert(1)>"
    assert f"Defender for APIs: {title}" in reasons


def test_history_is_a_labelled_week_that_ends_before_the_samples(with_history: Result) -> None:
    rows = with_history.history
    assert rows["findings"] == 280
    assert rows["remediations"] == sum(with_history.history_outcomes.values())
    # Contained then expired most of the time; some failed or were undone early.
    outcomes = with_history.history_outcomes
    assert max(outcomes, key=lambda state: outcomes[state]) == "expired"
    assert outcomes.get("failed", 0) + outcomes.get("rolled_back", 0) > 0
    app = open_app(with_history)
    now = datetime.now(UTC)
    try:
        demo = [f for f in app.list_findings(limit=1000) if f["source"] == "demo"]
        ids = {f["id"] for f in demo}
        rems = [r for r in app.list_remediations(limit=1000) if r["finding_id"] in ids]
        with app.db.read() as conn:
            histories = [remediations.history(conn, r["id"]) for r in rems]
    finally:
        app.close()
    assert len(demo) == 280
    assert len(rems) == rows["remediations"]
    received = [f["received_at"] for f in demo]
    assert now - timedelta(days=7, minutes=5) < min(received)
    assert max(received) < now - timedelta(hours=2)
    for history in histories:
        assert all(h["reason"].endswith("(demo data)") for h in history)
        people = {h["actor"] for h in history} - {"system", "engine"}
        assert all(actor.startswith("demo:") for actor in people)
        assert max(h["at"] for h in history) < now


def test_history_leaves_the_samples_as_they_are(samples_only: Result, with_history: Result) -> None:
    assert with_history.remediations == samples_only.remediations
    assert with_history.findings == samples_only.findings
    assert with_history.open_tasks >= samples_only.open_tasks
    assert with_history.awaiting_approval >= samples_only.awaiting_approval


def test_the_command_says_how_to_open_the_console(runner: CliRunner, tmp_path: Path) -> None:
    where = tmp_path / "demo"
    result = runner.invoke(cli, ["demo", "--dir", str(where), "--no-history", "--port", "8181"])
    assert result.exit_code == 0, result.output
    text = one_line(result.stdout)
    assert f"clampdown --config {where}/clampdown.yaml serve --port 8181" in text
    assert f"http://127.0.0.1:8181/console/ with the token in {where}/token" in text
    assert "nothing leaves this machine" in text


def test_the_command_prints_json(runner: CliRunner, tmp_path: Path) -> None:
    where = tmp_path / "demo"
    result = runner.invoke(cli, ["demo", "--dir", str(where), "--no-history", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["serve"] == f"clampdown --config {where}/clampdown.yaml serve"
    assert report["console"] == "http://127.0.0.1:8080/console/"
    assert report["samples"]["remediations"] == {
        "awaiting_approval": 2,
        "running": 5,
        "succeeded": 9,
    }
    assert report["tokens"]["admin"] == str(where / "token")


def test_a_second_run_needs_force(runner: CliRunner, tmp_path: Path) -> None:
    where = tmp_path / "demo"
    args = ["demo", "--dir", str(where), "--no-history"]
    assert runner.invoke(cli, args).exit_code == 0
    first = (where / "token").read_text()

    again = runner.invoke(cli, args)
    assert again.exit_code == 1
    assert "is not empty" in one_line(again.stderr)
    assert "--force" in one_line(again.stderr)
    assert (where / "token").read_text() == first

    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (where / "token").read_text() != first


def test_force_replaces_only_the_demo_files(runner: CliRunner, tmp_path: Path) -> None:
    where = tmp_path / "mine"
    where.mkdir()
    (where / "notes.txt").write_text("keep me")
    args = ["demo", "--dir", str(where), "--no-history"]
    assert runner.invoke(cli, args).exit_code == 1
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    assert (where / "notes.txt").read_text() == "keep me"
    assert (where / "clampdown.yaml").is_file()
