"""A finding already closed at the source when first seen is kept, and nothing is planned."""

from __future__ import annotations

import copy

import pytest

from clampdown.services import Clampdown
from tests.conftest import sample, suspicious_ip_alert


@pytest.mark.parametrize("status", ["Healthy", "NotApplicable"])
def test_a_healthy_recommendation_opens_no_task(app: Clampdown, status: str) -> None:
    body = copy.deepcopy(sample("recommendation-unauthenticated-endpoint.json"))
    body["properties"]["status"]["code"] = status
    [result] = app.ingest(body)
    assert result.new
    assert result.remediations == []
    assert app.list_tasks() == []


@pytest.mark.parametrize("status", ["Dismissed", "Resolved"])
def test_a_closed_alert_blocks_nothing(app: Clampdown, status: str) -> None:
    alert = suspicious_ip_alert(1)
    alert["properties"]["status"] = status
    [result] = app.ingest(alert)
    assert result.remediations == []
    assert app.list_containments() == []


def test_the_same_alert_active_is_remediated(app: Clampdown) -> None:
    alert = suspicious_ip_alert(1)
    alert["properties"]["status"] = "Active"
    [result] = app.ingest(alert)
    assert [r.playbook for r in result.remediations] == ["block-suspicious-ip"]
