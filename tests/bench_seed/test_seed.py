"""bench/seed.py: the counts it reports are in the database, and every history holds together."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections import defaultdict
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from clampdown.actions import registry
from clampdown.config import Config
from clampdown.model import Finding
from clampdown.services import Clampdown
from clampdown.store.db import Database
from clampdown.store.tables import (
    ContainmentRow,
    FindingRow,
    HistoryRow,
    JobRow,
    RemediationRow,
    StepRow,
    TaskRow,
    table,
)
from tests.conftest import REPO, sample

FINDINGS = 2000


def load_seed() -> ModuleType:
    """bench/seed.py as a module (bench/ holds scripts, not a package)."""
    if "bench_seed" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_seed", REPO / "bench" / "seed.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_seed"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_seed"]


@pytest.fixture
def seeded(database_url: str) -> tuple[Any, datetime]:
    """The test database seeded with FINDINGS findings over 30 days; and the `now` used."""
    now = datetime.now(UTC)
    return load_seed().seed(database_url, findings=FINDINGS, days=30, seed=3, now=now), now


def rows(database_url: str, model: type) -> list[dict[str, Any]]:
    """Every row of a table."""
    db = Database(database_url)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table(model)))]
    finally:
        db.dispose()


def test_the_counts_reported_are_stored(database_url: str, seeded: tuple[Any, datetime]) -> None:
    done, _ = seeded
    db = Database(database_url)
    try:
        with db.read() as conn:
            for name, count in done.rows.items():
                stored = conn.execute(sa.select(sa.func.count()).select_from(sa.table(name)))
                assert stored.scalar_one() == count, name
    finally:
        db.dispose()
    assert done.rows["findings"] == FINDINGS
    assert sum(done.outcomes.values()) == done.rows["remediations"]
    # The outcomes of the default pack's modes (and of the dry-run trial playbook).
    assert set(done.outcomes) >= {"succeeded", "expired", "failed", "rolled_back", "dry_run"}


def test_every_history_ends_in_its_remediations_state(
    database_url: str, seeded: tuple[Any, datetime]
) -> None:
    _, now = seeded
    histories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows(database_url, HistoryRow), key=lambda r: r["id"]):
        histories[row["remediation_id"]].append(row)
    remediations = rows(database_url, RemediationRow)
    assert {r["id"] for r in remediations} == set(histories)
    for rem in remediations:
        history = histories[rem["id"]]
        times = [h["at"] for h in history]
        assert times == sorted(times), rem["id"]
        assert times[-1] <= now
        assert rem["updated_at"] == times[-1]
        own = [h for h in history if h["step_key"] is None]
        assert own[0]["from_state"] is None
        assert own[0]["to_state"] == "planned"
        # Each transition starts where the one before ended.
        for before, after in itertools.pairwise(own):
            assert after["from_state"] == before["to_state"], rem["id"]
        assert own[-1]["to_state"] == rem["state"], rem["id"]


def test_steps_containments_tasks_and_jobs_agree(
    database_url: str, seeded: tuple[Any, datetime]
) -> None:
    _, now = seeded
    steps = {s["idempotency_key"]: s for s in rows(database_url, StepRow)}
    for step in steps.values():
        if step["params"] is not None:
            registry.get(step["action"]).params.model_validate(step["params"])
    jobs = {(j["remediation_id"], j["step_key"]) for j in rows(database_url, JobRow)}
    active = 0
    for containment in rows(database_url, ContainmentRow):
        step = steps[containment["key"]]
        assert step["result"]["output"]["containment_id"] == containment["id"]
        if containment["removed_at"] is None:
            active += 1
            assert step["state"] == "succeeded"
            if containment["expires_at"] is not None:
                assert containment["expires_at"] > now
                assert (step["remediation_id"], step["key"]) in jobs
        else:
            assert step["state"] == "undone"
    assert active > 0
    tasks = rows(database_url, TaskRow)
    for task in tasks:
        step = next(
            s
            for s in steps.values()
            if s["result"] and s["result"]["output"].get("task_id") == task["id"]
        )
        assert step["state"] == ("waiting" if task["status"] == "open" else "succeeded")
    assert any(t["status"] == "open" for t in tasks)


def test_findings_are_stored_findings_and_recur(
    database_url: str, seeded: tuple[Any, datetime]
) -> None:
    found = rows(database_url, FindingRow)
    for row in found[:200]:
        finding = Finding.model_validate(row["data"])
        assert finding.fingerprint == row["fingerprint"]
        assert finding.source_id == row["source_id"]
    assert len({r["fingerprint"] for r in found}) < len(found)


def test_the_store_goes_on_after_seeding(database_url: str, seeded: tuple[Any, datetime]) -> None:
    app = Clampdown.open(Config(), database_url=database_url)
    try:
        [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    finally:
        app.close()
    assert result.new
    assert result.finding_id == FINDINGS + 1


def test_seeding_again_adds_another_set(database_url: str, seeded: tuple[Any, datetime]) -> None:
    again = load_seed().seed(database_url, findings=300, days=2, seed=4)
    assert again.rows["findings"] == 300
    assert len(rows(database_url, FindingRow)) == FINDINGS + 300
