"""The API and the CLI say when a delivery changed a known finding's status, and what it did."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clampdown import logs
from clampdown.api.app import create_app
from clampdown.cli.main import app as cli_app
from clampdown.services import Clampdown
from tests.api.conftest import auth
from tests.closing.conftest import assessment


def _wait_for_task(app: Clampdown) -> None:
    for _ in range(250):
        if app.list_tasks():
            return
        time.sleep(0.02)
    raise AssertionError("the guided task did not open")


def test_ingest_answer_says_what_changed(app: Clampdown) -> None:
    with TestClient(create_app(app)) as client:
        first = client.post("/v1/ingest", json=assessment("Unhealthy"), headers=auth("ingest"))
        [opened] = first.json()["findings"]
        rid = opened["remediations"][0]["id"]
        assert opened["changed"] is None
        _wait_for_task(app)

        answer = client.post("/v1/ingest", json=assessment("Healthy"), headers=auth("ingest"))

        assert answer.status_code == 202, answer.text
        [finding] = answer.json()["findings"]
        assert (finding["new"], finding["changed"]) == (False, "unhealthy -> healthy")
        assert finding["remediations"] == []
        assert finding["followed_up"] == [
            {
                "id": rid,
                "playbook": "secure-unauthenticated-endpoint",
                "state": "succeeded",
                "did": "closed",
            }
        ]
        again = client.post("/v1/ingest", json=assessment("Healthy"), headers=auth("ingest"))
        [repeat] = again.json()["findings"]
        assert (repeat["changed"], repeat["followed_up"]) == (None, [])


def test_cli_ingest_prints_the_change(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commands configure logging with the stderr of the moment; CliRunner closes it after.
    monkeypatch.setattr(logs, "sys", SimpleNamespace(stderr=io.StringIO()))
    config = tmp_path / "clampdown.yaml"
    config.write_text(yaml.safe_dump({"engine": {"poll_interval": 0.05}}))
    files = {}
    for code in ("Unhealthy", "Healthy"):
        files[code] = tmp_path / f"{code}.json"
        files[code].write_text(json.dumps(assessment(code)))
    runner = CliRunner(env={"COLUMNS": "250", "CLAMPDOWN_CONFIG": None})
    options = ["--database-url", database_url, "--config", str(config)]

    first = runner.invoke(cli_app, [*options, "ingest", str(files["Unhealthy"])])
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli_app, [*options, "ingest", str(files["Healthy"])])

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "Recommendation_UnauthenticatedEndpoint [status unhealthy -> healthy]" in text
    assert "secure-unauthenticated-endpoint: remediation" in text
    assert "succeeded (closed: the detector's report)" in text
