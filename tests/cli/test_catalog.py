"""`actions list` and `playbooks lint`: commands that need no database."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clampdown.cli.main import app
from tests.cli.conftest import one_line, write_config

ACTIONS = [
    "gateway.block",
    "gateway.unblock",
    "gateway.throttle",
    "gateway.disable_endpoint",
    "gateway.enable_endpoint",
    "credential.suspend",
    "credential.reactivate",
    "credential.rotate",
    "credential.revoke",
    "notify.send",
    "flow.trigger",
    "task.create",
    "ticket.create",
    "ticket.update",
    "ticket.resolve",
    "identity.revoke_sessions",
    "identity.disable",
    "identity.confirm_compromised",
    "finding.update",
]

GOOD = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: good-one}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""

BAD = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: bad-one}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.nuke
      with: {target: builtin, ip: "${{ finding.ip }}"}
"""


def playbook_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_actions_list_names_every_action(runner: CliRunner) -> None:
    result = runner.invoke(app, ["actions", "list"])
    assert result.exit_code == 0, result.output
    for name in ACTIONS:
        assert re.search(rf"^{re.escape(name)}  targets: ", result.stdout, re.M), name
    assert "ip (required)" not in result.stdout  # ip is one of several subjects
    assert "target (required)" in result.stdout
    assert "example:" in result.stdout


def test_actions_list_json_describes_every_action(runner: CliRunner) -> None:
    result = runner.invoke(app, ["actions", "list", "--json"])
    assert result.exit_code == 0, result.output
    catalog = {a["name"]: a for a in json.loads(result.stdout)["actions"]}
    assert sorted(catalog) == sorted(ACTIONS)
    block = catalog["gateway.block"]
    assert block["target_types"] == ["builtin", "azure-apim", "kong", "nginx"]
    assert block["idempotent"] is True
    assert block["reversible"] is True
    assert {"target", "ip", "cidr", "api_key", "scope"} <= set(block["parameters"])
    notify = catalog["notify.send"]
    assert notify["idempotent"] is False
    assert set(notify["required"]) == {"target", "text"}
    assert catalog["task.create"]["example"]["target"] == "builtin"


def test_lint_reports_a_bad_playbook_with_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    folder = playbook_dir(tmp_path, **{"good.yaml": GOOD, "bad.yaml": BAD})
    result = runner.invoke(app, ["playbooks", "lint", str(folder)])
    assert result.exit_code == 1
    lines = [one_line(line) for line in result.stdout.splitlines()]
    problem = next(line for line in lines if "gateway.nuke" in line)
    # The step's `uses:` is on line 9 of bad.yaml.
    assert re.match(rf"{re.escape(str(folder / 'bad.yaml'))}:9: error: ", problem), problem
    assert not any("good.yaml" in line for line in lines)
    assert re.search(r"[1-9]\d* error\(s\)", result.stdout)


def test_lint_json_lists_the_problems(runner: CliRunner, tmp_path: Path) -> None:
    folder = playbook_dir(tmp_path, **{"bad.yaml": BAD})
    result = runner.invoke(app, ["playbooks", "lint", str(folder), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    errors = [p for p in problems if p["level"] == "error"]
    assert errors
    assert {p["path"] for p in errors} == {str(folder / "bad.yaml")}
    assert any(p["line"] == 9 and "gateway.nuke" in p["message"] for p in errors)


def test_lint_of_good_playbooks_passes(runner: CliRunner, tmp_path: Path) -> None:
    folder = playbook_dir(tmp_path, **{"good.yaml": GOOD})
    result = runner.invoke(app, ["playbooks", "lint", str(folder)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.stdout


def test_lint_of_the_default_pack_passes(runner: CliRunner, tmp_path: Path) -> None:
    """With no paths and `default_pack: true`, lint checks the shipped pack: clean."""
    config = write_config(tmp_path / "c.yaml", default_pack=True)
    result = runner.invoke(app, ["--config", str(config), "playbooks", "lint"])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.stdout


def test_lint_of_the_configured_playbooks(runner: CliRunner, tmp_path: Path) -> None:
    folder = playbook_dir(tmp_path, **{"bad.yaml": BAD})
    config = write_config(tmp_path / "c.yaml", default_pack=False, playbooks=str(folder))
    result = runner.invoke(app, ["--config", str(config), "playbooks", "lint"])
    assert result.exit_code == 1
    assert f"{folder / 'bad.yaml'}:9:" in result.stdout


@pytest.mark.parametrize("as_json", [False, True])
def test_lint_of_a_missing_path_fails_clearly(
    runner: CliRunner, tmp_path: Path, as_json: bool
) -> None:
    missing = tmp_path / "nowhere"
    args = ["playbooks", "lint", str(missing)] + (["--json"] if as_json else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert one_line(result.stderr) == f"error: {missing}: no such file or directory"
    assert "Traceback" not in result.output
