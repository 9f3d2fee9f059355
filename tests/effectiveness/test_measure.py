"""Effectiveness measured from a real run of the default pack, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.services import Clampdown
from clampdown.store import tallies
from tests.api.conftest import auth
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import drain

PLAYBOOK = "block-suspicious-ip"


def _blocked(app: Clampdown) -> str:
    rid = app.ingest(suspicious_ip_alert(1))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    return rid


def _hour(app: Clampdown) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def test_an_automatic_block_then_a_recurrence(app: Clampdown) -> None:
    _blocked(app)
    # The same IP and type again, after the first closed: the same fingerprint.
    again = app.ingest(suspicious_ip_alert(2))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(again)["state"] == "succeeded")
    since, until = _hour(app)

    eff = app.effectiveness(since=since, until=until)

    f = eff.overall
    assert (f.remediations, f.ended, f.automatic, f.contained) == (2, 2, 2, 2)
    assert (f.success_rate, f.failure_rate, f.overridden) == (1.0, 0.0, 0)
    assert (f.closed, f.recurred, f.recurrence_rate) == (2, 1, 0.5)
    # The fixture's alert started days ago: detection is the detector's time, not ours.
    assert f.time_to_contain.count == 2
    assert f.time_to_contain.p50 is not None
    assert f.time_to_contain.p50 > 86_400
    assert eff.playbooks == sorted(p.name for p in app.playbooks)
    assert [g.key for g in eff.by_playbook] == eff.playbooks
    [fired] = [g for g in eff.by_playbook if g.figures.remediations]
    assert fired.key == PLAYBOOK
    assert [g.key for g in eff.by_target] == ["builtin"]
    assert [g.key for g in eff.by_alert_type] == ["API_AccessFromSuspiciousIP"]
    [threat] = eff.recurring
    assert (threat.playbook, threat.recurrences) == (PLAYBOOK, 1)
    assert eff.bucket_seconds == 3600
    assert sum(b.figures.remediations for b in eff.timeline) == 2


def test_an_early_undo_counts_as_an_override(app: Clampdown) -> None:
    rid = _blocked(app)
    [row] = app.list_containments()
    app.undo_containment(row["id"], actor="console:alice", reason="partner scanner")
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    since, until = _hour(app)

    f = app.effectiveness(since=since, until=until).overall

    assert (f.contained, f.overridden, f.override_rate) == (1, 1, 1.0)
    assert (f.automatic, f.outcomes) == (0, {"rolled_back": 1})


def test_remediations_outside_the_period_are_not_counted(app: Clampdown) -> None:
    _blocked(app)
    later = datetime.now(UTC) + timedelta(minutes=5)
    eff = app.effectiveness(since=later, until=later + timedelta(days=7))
    assert eff.overall.remediations == 0
    assert eff.bucket_seconds == 86_400
    # Whole UTC days: a week that starts mid-day touches eight of them.
    assert len(eff.timeline) == 8
    assert eff.timeline[0].start == later.replace(hour=0, minute=0, second=0, microsecond=0)


def test_rest_route_gives_the_same_figures(app: Clampdown) -> None:
    _blocked(app)
    with TestClient(create_app(app, run_worker=False)) as client:
        got = client.get("/v1/effectiveness?since=1h", headers=auth("read"))
        assert got.status_code == 200, got.text
        assert got.json()["overall"]["contained"] == 1
        bad = client.get("/v1/effectiveness?since=lately", headers=auth("read"))
        assert bad.status_code == 400
        assert bad.json()["error"]["message"].startswith("since: not a duration")
        assert client.get("/v1/effectiveness").status_code == 401


def test_collateral_from_decision_tallies(app: Clampdown) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [
        {"bucket_start": hour, "api": "orders", "allowed": 60, "denied": 30, "throttled": 10},
        {"bucket_start": hour, "api": "billing", "allowed": 99, "denied": 1, "throttled": 0},
        {"bucket_start": hour, "api": "quiet", "allowed": 50, "denied": 0, "throttled": 0},
        {
            "bucket_start": hour - timedelta(days=30),
            "api": "old",
            "allowed": 1,
            "denied": 1,
            "throttled": 0,
        },
    ]
    with app.db.write() as conn:
        tallies.add(conn, rows)

    eff = app.effectiveness(since=hour - timedelta(hours=1), until=hour + timedelta(hours=1))

    assert [(c.api, c.allowed, c.denied, c.throttled, c.refused_share) for c in eff.collateral] == [
        ("orders", 60, 30, 10, 0.4),
        ("billing", 99, 1, 0, 0.01),
    ]
