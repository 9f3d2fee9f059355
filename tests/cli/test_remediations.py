"""Remediations, approvals, containments and guided tasks from the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from clampdown.config import load_config
from clampdown.services import Clampdown
from tests.cli.conftest import Run, one_line, out_json, sample_path
from tests.engine.conftest import drain

SUSPICIOUS_IP = "defender-rest-suspicious-ip.json"
UNUSED = "recommendation-unused-endpoint.json"
UNAUTHENTICATED = "recommendation-unauthenticated-endpoint.json"


def ingest(cli: Run, name: str, *, body: str | None = None) -> dict[str, object]:
    """Ingest a sample (or `body`) and return the one remediation planned for it."""
    if body is None:
        result = cli("ingest", sample_path(name), "--json")
    else:
        result = cli("ingest", "-", "--json", input=body)
    [finding] = out_json(result)["findings"]
    [remediation] = finding["remediations"]
    return remediation  # type: ignore[no-any-return]


def another_unused_endpoint() -> str:
    """The unused-endpoint recommendation for another operation."""
    body = json.loads(Path(sample_path(UNUSED)).read_text())
    body["id"] = body["id"].replace("deleteInvoice", "archiveInvoice")
    details = body["properties"]["resourceDetails"]
    details["id"] = details["id"].replace("deleteInvoice", "archiveInvoice")
    return json.dumps(body)


def test_remediations_list_json(cli: Run) -> None:
    blocked = ingest(cli, SUSPICIOUS_IP)
    waiting = ingest(cli, UNUSED)
    rows = out_json(cli("remediations", "list", "--json"))["remediations"]
    assert [(r["id"], r["playbook"], r["state"]) for r in rows] == [
        (waiting["id"], "retire-unused-endpoint", "awaiting_approval"),
        (blocked["id"], "block-suspicious-ip", "succeeded"),
    ]
    assert rows[0]["mode"] == "approval"
    assert rows[1]["finding_count"] == 1
    only = out_json(cli("remediations", "list", "--json", "--state", "awaiting_approval"))
    assert [r["id"] for r in only["remediations"]] == [waiting["id"]]
    by_playbook = out_json(
        cli("remediations", "list", "--json", "--playbook", "block-suspicious-ip")
    )
    assert [r["id"] for r in by_playbook["remediations"]] == [blocked["id"]]


def test_remediations_list_refuses_an_unknown_state(cli: Run) -> None:
    result = cli("remediations", "list", "--state", "sleeping")
    assert result.exit_code == 2
    message = one_line(result.stderr)
    assert "'sleeping' is not one of" in message
    assert "awaiting_approval" in message


def test_remediations_show_json_has_steps_and_history(cli: Run) -> None:
    rid = ingest(cli, SUSPICIOUS_IP)["id"]
    shown = out_json(cli("remediations", "show", str(rid), "--json"))
    assert shown["id"] == rid
    assert shown["state"] == "succeeded"
    # Not a sensitive API, and no owner's channel: the day-long block and the message skip.
    step, longer, tell = shown["steps"]
    assert (longer["key"], longer["state"]) == ("block-sensitive", "skipped")
    assert (tell["key"], tell["state"]) == ("tell-owner", "skipped")
    assert step["key"] == "block"
    assert step["action"] == "gateway.block"
    assert step["state"] == "succeeded"
    assert step["params"]["ip"] == "203.0.113.77"
    assert step["expires_at"] is not None
    transitions = [(h["step_key"], h["to_state"]) for h in shown["history"]]
    assert transitions == [
        (None, "planned"),
        (None, "running"),
        ("block", "running"),
        ("block", "succeeded"),
        ("block-sensitive", "skipped"),
        ("tell-owner", "skipped"),
        (None, "verifying"),
        (None, "succeeded"),
    ]
    assert len(shown["findings"]) == 1


def test_remediations_show_table(cli: Run) -> None:
    rid = ingest(cli, SUSPICIOUS_IP)["id"]
    result = cli("remediations", "show", str(rid))
    assert result.exit_code == 0, result.output
    assert f"remediation {rid}" in result.stdout
    assert "block-suspicious-ip" in result.stdout
    assert "gateway.block" in result.stdout


def test_showing_an_unknown_remediation_fails(cli: Run) -> None:
    result = cli("remediations", "show", "nope")
    assert result.exit_code == 1
    assert one_line(result.stderr) == "error: no remediation nope"
    assert "Traceback" not in result.output


def test_approve_starts_a_remediation_awaiting_approval(cli: Run) -> None:
    rid = str(ingest(cli, UNUSED)["id"])
    approved = out_json(cli("remediations", "approve", rid, "--note", "owner agreed", "--json"))
    assert approved["state"] == "running"
    approval = next(h for h in approved["history"] if h["from_state"] == "awaiting_approval")
    assert approval["to_state"] == "running"
    assert approval["reason"] == "approved: owner agreed"
    assert approval["actor"].startswith("cli")


def test_approve_text_output(cli: Run) -> None:
    rid = str(ingest(cli, UNUSED)["id"])
    result = cli("remediations", "approve", rid)
    assert result.exit_code == 0, result.output
    assert one_line(result.stdout) == f"remediation {rid} approved; now running"


def test_approving_twice_fails_with_a_message(cli: Run) -> None:
    rid = str(ingest(cli, UNUSED)["id"])
    assert cli("remediations", "approve", rid).exit_code == 0
    again = cli("remediations", "approve", rid)
    assert again.exit_code == 1
    assert one_line(again.stderr) == f"error: remediation {rid} is running, not awaiting_approval"
    assert "Traceback" not in again.output


def test_approving_a_finished_remediation_fails(cli: Run) -> None:
    rid = str(ingest(cli, SUSPICIOUS_IP)["id"])
    result = cli("remediations", "approve", rid)
    assert result.exit_code == 1
    assert "is succeeded, not awaiting_approval" in one_line(result.stderr)


def test_approving_an_unknown_remediation_fails(cli: Run) -> None:
    result = cli("remediations", "approve", "0" * 32)
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: no remediation {'0' * 32}"


def test_reject_skips_every_step(cli: Run) -> None:
    rid = str(ingest(cli, UNUSED)["id"])
    rejected = out_json(cli("remediations", "reject", rid, "--reason", "quarterly job", "--json"))
    assert rejected["state"] == "rejected"
    assert {s["state"] for s in rejected["steps"]} == {"skipped"}
    assert rejected["history"][-1]["reason"] == "rejected: quarterly job"
    again = cli("remediations", "reject", rid)
    assert again.exit_code == 1
    assert "is rejected, not awaiting_approval" in one_line(again.stderr)
    approve = cli("remediations", "approve", rid)
    assert approve.exit_code == 1


def test_approve_one_reject_another(cli: Run) -> None:
    first = str(ingest(cli, UNUSED)["id"])
    second = str(ingest(cli, UNUSED, body=another_unused_endpoint())["id"])
    assert first != second
    assert cli("remediations", "approve", first).exit_code == 0
    assert cli("remediations", "reject", second).exit_code == 0
    states = {
        r["id"]: r["state"] for r in out_json(cli("remediations", "list", "--json"))["remediations"]
    }
    assert states == {first: "running", second: "rejected"}


def test_containments_list_shows_the_active_block(cli: Run) -> None:
    rid = ingest(cli, SUSPICIOUS_IP)["id"]
    [block] = out_json(cli("containments", "list", "--json"))["containments"]
    assert block["kind"] == "block"
    assert block["subject_type"] == "ip"
    assert block["subject"] == "203.0.113.77"
    assert block["scope"] == "*"
    assert block["remediation_id"] == rid
    assert block["expires_at"] is not None
    assert block["removed_at"] is None
    table = cli("containments", "list")
    assert table.exit_code == 0, table.output
    assert "ip 203.0.113.77" in table.stdout


def test_containments_list_is_empty_without_blocks(cli: Run) -> None:
    ingest(cli, UNUSED)
    assert out_json(cli("containments", "list", "--json")) == {"containments": []}


def test_guided_task_listed_then_completed(cli: Run, database_url: str, config_file: Path) -> None:
    """The default pack's guided playbook opens a task; completing it finishes the remediation."""
    rid = ingest(cli, UNAUTHENTICATED)["id"]
    [task] = out_json(cli("tasks", "list", "--json"))["tasks"]
    assert task["remediation_id"] == rid
    assert task["status"] == "open"
    assert task["title"].startswith("Require authentication on ")
    assert len(task["steps"]) == 4
    shown = out_json(cli("remediations", "show", str(rid), "--json"))
    assert shown["state"] == "running"
    states = {step["key"]: step["state"] for step in shown["steps"]}
    assert states == {"tell-owner": "skipped", "authenticate": "waiting"}

    table = cli("tasks", "list")
    assert table.exit_code == 0, table.output
    assert task["id"] in table.stdout

    done = cli("tasks", "complete", task["id"], "--note", "validate-jwt added")
    assert done.exit_code == 0, done.output
    assert one_line(done.stdout) == f"task {task['id']} done"
    assert out_json(cli("tasks", "list", "--json")) == {"tasks": []}
    [closed] = out_json(cli("tasks", "list", "--status", "done", "--json"))["tasks"]
    assert closed["note"] == "validate-jwt added"
    assert len(out_json(cli("tasks", "list", "--status", "all", "--json"))["tasks"]) == 1

    # The step is done; the engine (serve, or the next ingest) finishes the remediation.
    shown = out_json(cli("remediations", "show", str(rid), "--json"))
    assert shown["steps"][1]["state"] == "succeeded"
    app = Clampdown.open(load_config(config_file), database_url=database_url)
    try:
        drain(app)
        assert app.get_remediation(str(rid))["state"] == "succeeded"
    finally:
        app.close()


def test_completing_a_task_twice_fails(cli: Run) -> None:
    ingest(cli, UNAUTHENTICATED)
    [task] = out_json(cli("tasks", "list", "--json"))["tasks"]
    assert cli("tasks", "complete", task["id"]).exit_code == 0
    again = cli("tasks", "complete", task["id"])
    assert again.exit_code == 1
    assert one_line(again.stderr) == f"error: task {task['id']} is already done"


def test_completing_an_unknown_task_fails(cli: Run) -> None:
    result = cli("tasks", "complete", "nope")
    assert result.exit_code == 1
    assert one_line(result.stderr) == "error: no task nope"


def test_tasks_list_refuses_an_unknown_status(cli: Run) -> None:
    result = cli("tasks", "list", "--status", "later")
    assert result.exit_code == 2
    assert "'later' is not open or done" in one_line(result.stderr)


def test_containment_extended_then_undone_from_the_command_line(
    cli: Run, database_url: str, config_file: Path
) -> None:
    rid = ingest(cli, SUSPICIOUS_IP)["id"]
    [block] = out_json(cli("containments", "list", "--json"))["containments"]
    before = datetime.fromisoformat(block["expires_at"])

    extended = out_json(cli("containments", "extend", block["id"], "--by", "4h", "--json"))
    assert datetime.fromisoformat(extended["expires_at"]) - before == timedelta(hours=4)

    undone = cli("containments", "undo", block["id"], "--reason", "partner scanner")
    assert undone.exit_code == 0, undone.output
    assert one_line(undone.stdout) == f"containment {block['id']}: undo queued"
    app = Clampdown.open(load_config(config_file), database_url=database_url)
    try:
        drain(app)
        assert app.get_remediation(str(rid))["state"] == "rolled_back"
    finally:
        app.close()
    assert out_json(cli("containments", "list", "--json")) == {"containments": []}


def test_containment_commands_refuse_bad_input(cli: Run) -> None:
    ingest(cli, SUSPICIOUS_IP)
    [block] = out_json(cli("containments", "list", "--json"))["containments"]
    bad = cli("containments", "extend", block["id"], "--by", "soon")
    assert bad.exit_code == 2
    assert "--by: not a duration: 'soon'" in one_line(bad.stderr)
    missing = cli("containments", "undo", "nope")
    assert missing.exit_code == 1
    assert one_line(missing.stderr) == "error: no containment nope"
