"""`clampdown targets types` and `targets check`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clampdown.cli.main import app
from clampdown.testing.kong import FakeKong
from tests.cli.conftest import write_config


def test_types_lists_every_type_with_its_verbs() -> None:
    result = CliRunner().invoke(app, ["targets", "types", "--json"])
    assert result.exit_code == 0, result.output
    types = {t["type"]: t for t in json.loads(result.stdout)["types"]}
    assert set(types) == {
        "builtin",
        "webhook",
        "flow",
        "azure-apim",
        "kong",
        "nginx",
        "oauth-revocation",
        "servicenow",
        "jira",
        "pagerduty",
        "teams",
        "slack",
        "smtp",
        "graph",
        "defender",
    }
    assert "credential.suspend" in types["azure-apim"]["verbs"]
    assert "gateway.throttle" in types["nginx"]["verbs"]
    assert types["kong"]["verbs"] == [
        "credential.revoke",
        "gateway.block",
        "gateway.disable_endpoint",
        "gateway.enable_endpoint",
        "gateway.throttle",
        "gateway.unblock",
    ]
    assert types["oauth-revocation"]["settings"]["client_secret"]["required"] is True
    text = CliRunner().invoke(app, ["targets", "types"])
    assert "oauth-revocation  " in text.stdout


def test_check_reports_each_target_and_fails_on_any_failure(tmp_path: Path) -> None:
    with FakeKong().running() as kong:
        config = write_config(
            tmp_path / "c.yaml",
            targets={
                "edge": {"type": "kong", "admin_url": kong.url},
                "gone": {"type": "kong", "admin_url": "http://127.0.0.1:9", "timeout": 2},
            },
        )
        result = CliRunner().invoke(app, ["-c", str(config), "targets", "check", "--json"])
        assert {r.method for r in kong.requests} == {"GET"}
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["targets"]["edge"] == [
        {"check": "admin api", "ok": True, "detail": "Admin API readable"}
    ]
    [gone] = report["targets"]["gone"]
    assert gone["ok"] is False
    assert gone["detail"] == "target gone: cannot connect"
    assert report["targets"]["builtin"][0]["ok"] is True


def test_check_passes_when_every_target_answers(tmp_path: Path) -> None:
    with FakeKong().running() as kong:
        config = write_config(
            tmp_path / "c.yaml", targets={"edge": {"type": "kong", "admin_url": kong.url}}
        )
        result = CliRunner().invoke(app, ["-c", str(config), "targets", "check"])
    assert result.exit_code == 0, result.output
    assert "Admin API readable" in result.stdout
