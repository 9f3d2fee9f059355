"""The detector's word, pulled from the fakes, closes the loop on remediations."""

from __future__ import annotations

from pathlib import Path

from clampdown.collectors.runner import pull_once
from clampdown.services import Clampdown
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from tests.collectors.conftest import (
    APIM,
    OpenApp,
    Sleeps,
    ago,
    assessment,
    assessments_source,
    graph_alert,
    graph_source,
)
from tests.conftest import make_config


async def test_a_recommendation_fixed_at_the_source_closes_its_guided_remediation(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    found = defender.add_assessment(assessment(f"{APIM}/apis/orders/operations/op0"))
    app = open_app(assessments_source(defender.url))
    await pull_once(app, "mdc-posture", sleep=sleeps)
    assert await app.settle(10)
    [task] = app.list_tasks()
    rid = task["remediation_id"]
    assert app.get_remediation(rid)["state"] == "running"  # waiting for a person

    defender.set_assessment_status(found, "Healthy")
    await pull_once(app, "mdc-posture", sleep=sleeps)
    assert await app.settle(10, lambda: app.get_remediation(rid)["state"] == "succeeded")

    rem = app.get_remediation(rid)
    last = rem["history"][-1]
    assert (last["to_state"], last["reason"]) == ("succeeded", "verified by the detector")
    assert last["actor"] == "detector:defender"
    assert app.list_tasks() == []  # the guided task was closed by the detector's word


async def test_an_alert_dismissed_at_the_source_is_recorded_and_lifts_its_containment(
    graph: FakeGraph, tmp_path: Path, database_url: str, sleeps: Sleeps
) -> None:
    graph.add_alert(graph_alert("x", at=ago(minutes=5)))
    config = make_config(
        tmp_path, sources=[graph_source(graph.url)], closing={"undo_on": ["dismissed"]}
    )
    app = Clampdown.open(config, database_url=database_url)
    try:
        await pull_once(app, "graph-alerts", sleep=sleeps)
        assert await app.settle(10)
        [contained] = app.list_containments()
        rid = contained["remediation_id"]

        graph.update_alert("dax", status="resolved", classification="falsePositive")
        await pull_once(app, "graph-alerts", sleep=sleeps)
        assert await app.settle(10, lambda: app.get_remediation(rid)["state"] == "rolled_back")

        assert app.list_containments() == []
        reasons = [h["reason"] for h in app.get_remediation(rid)["history"]]
        assert any("Dismissed" in reason for reason in reasons)
    finally:
        app.close()
