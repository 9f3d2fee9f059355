"""Benchmark: web console page times over a large store.

Seeds a database (SQLite by default, or --database-url: it must be empty) with --findings
findings, one remediation each (eight playbooks, states spread as a busy month leaves them,
two steps and four history rows each), containments (most lifted, some active) and guided
tasks; then runs a real `clampdown serve`, logs in to the console, waits for the background
effectiveness measurements (and prints how long they took) and times every page (--rounds
GETs each, after one warm-up). Prints p50, p90 and max per page against the target
(p99 under 200 ms; with few rounds, max stands for p99).

    python bench/console.py [--findings 100000] [--rounds 20] [--database-url URL]

BENCH_KEEP=1 keeps the working directory and prints where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sqlalchemy import insert

from clampdown.store.db import Database
from clampdown.store.tables import (
    ContainmentRow,
    FindingRow,
    HistoryRow,
    RemediationFindingRow,
    RemediationRow,
    StepRow,
    TaskRow,
    table,
)
from common import free_port, percentile, start_serve, stop_serve, wait_ready

TOKEN = "bench-console-token"
TARGET_MS = 200.0
PLAYBOOKS = [f"bench-playbook-{n}" for n in range(8)]
# A month of traffic: almost everything finished, a few hundred still open.
STATES = [
    ("succeeded", 0.80),
    ("expired", 0.08),
    ("failed", 0.05),
    ("rejected", 0.02),
    ("dry_run", 0.04),
    ("running", 0.004),
    ("awaiting_approval", 0.004),
    ("verifying", 0.001),
    ("planned", 0.001),
]
BATCH = 5000
PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {{name: {name}}}
spec:
  match: {{types: [{name}-matches-nothing]}}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {{target: builtin, ip: "${{{{ finding.ip }}}}"}}
      expires: 1h
"""


def pick_state(rng: random.Random) -> str:
    roll = rng.random()
    for state, share in STATES:
        roll -= share
        if roll < 0:
            return state
    return "succeeded"


def finding_data(n: int, at: datetime) -> dict[str, Any]:
    """A stored finding as `Finding.model_dump(mode="json")` would write it."""
    ip = f"198.18.{(n >> 8) & 255}.{n & 255}"
    return {
        "source": "defender",
        "source_id": f"bench-{n}",
        "shape": "defender-rest",
        "kind": "alert",
        "type": "API_AccessFromSuspiciousIP",
        "title": f"Access from a suspicious IP address ({ip})",
        "description": "",
        "severity": "high",
        "status": "active",
        "first_seen": at.isoformat(),
        "last_seen": at.isoformat(),
        "reported_at": at.isoformat(),
        "tactics": [],
        "techniques": [],
        "ips": [ip],
        "apis": [],
        "endpoint": None,
        "credentials": [],
        "users": [],
        "user_agent": "curl/8.0",
        "url": None,
        "remediation_steps": [],
        "properties": {},
        "raw": {},
    }


def seed(database_url: str, count: int) -> str:
    """Fill the store; returns the id of one remediation (for the timeline page)."""
    rng = random.Random(7)
    db = Database(database_url)
    db.migrate()
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    sample_id = ""
    for first in range(0, count, BATCH):
        found, rems, links, steps, hist, conts, tasks = [], [], [], [], [], [], []
        for n in range(first, min(count, first + BATCH)):
            fid = n + 1
            at = start + timedelta(seconds=30 * 24 * 3600 * n / count)
            data = finding_data(n, at)
            found.append(
                {
                    "id": fid,
                    "source": data["source"],
                    "source_id": data["source_id"],
                    "shape": data["shape"],
                    "kind": "alert",
                    "type": data["type"],
                    "severity": "high",
                    "fingerprint": uuid.uuid4().hex,
                    "title": data["title"],
                    "received_at": at,
                    "data": data,
                }
            )
            rid = uuid.uuid4().hex
            state = pick_state(rng)
            playbook = PLAYBOOKS[n % len(PLAYBOOKS)]
            done = at + timedelta(seconds=5)
            rems.append(
                {
                    "id": rid,
                    "playbook": playbook,
                    "mode": "automatic",
                    "state": state,
                    "finding_id": fid,
                    "group_key": data["ips"][0],
                    "group_until": at + timedelta(hours=1),
                    "finding_count": 1,
                    "created_at": at,
                    "updated_at": done,
                }
            )
            links.append({"remediation_id": rid, "finding_id": fid, "added_at": at})
            for pos, (key, action) in enumerate(
                [("block", "gateway.block"), ("tell", "notify.send")]
            ):
                steps.append(
                    {
                        "remediation_id": rid,
                        "key": key,
                        "position": pos,
                        "action": action,
                        "spec": {"id": key, "uses": action},
                        "state": "succeeded",
                        "attempts": 1,
                        "params": {"target": "builtin", "ip": data["ips"][0]},
                        "result": {"output": {}, "summary": "done"},
                        "error": None,
                        "idempotency_key": f"{rid}:{key}",
                        "expires_at": at + timedelta(hours=1) if key == "block" else None,
                        "started_at": at,
                        "finished_at": done,
                    }
                )
            for step_key, frm, to in [
                (None, None, "planned"),
                (None, "planned", "running"),
                ("block", "pending", "succeeded"),
                (None, "running", state),
            ]:
                hist.append(
                    {
                        "remediation_id": rid,
                        "step_key": step_key,
                        "at": done,
                        "from_state": frm,
                        "to_state": to,
                        "reason": "bench",
                        "actor": "engine",
                    }
                )
            if state in ("succeeded", "expired") and n % 3 == 0:
                active = n > count - 1500
                conts.append(
                    {
                        "id": uuid.uuid4().hex,
                        "key": f"{rid}:block",
                        "target": "builtin",
                        "kind": "block",
                        "subject_type": "ip",
                        "subject": data["ips"][0],
                        "scope": "*",
                        "rate": None,
                        "period_seconds": None,
                        "reason": data["title"],
                        "remediation_id": rid,
                        "created_by": "engine",
                        "created_at": at,
                        "expires_at": now + timedelta(hours=rng.randint(1, 48))
                        if active
                        else at + timedelta(hours=1),
                        "removed_at": None if active else at + timedelta(hours=1),
                        "removed_reason": None if active else "expired",
                    }
                )
            if n % 50 == 0:
                tasks.append(
                    {
                        "id": uuid.uuid4().hex,
                        "key": f"{rid}:task",
                        "remediation_id": rid,
                        "step_key": "block",
                        "title": f"Review {data['title']}",
                        "why": "bench",
                        "steps": ["Read it", "Fix it"],
                        "links": [],
                        "evidence": [],
                        "owner": "soc@example.com",
                        "due_at": at + timedelta(days=3),
                        "status": "open" if n > count - 5000 else "done",
                        "created_at": at,
                        "completed_at": None,
                        "completed_by": None,
                        "note": None,
                    }
                )
            if state == "awaiting_approval":
                sample_id = rid
        with db.write() as conn:
            conn.execute(insert(table(FindingRow)), found)
            conn.execute(insert(table(RemediationRow)), rems)
            conn.execute(insert(table(RemediationFindingRow)), links)
            conn.execute(insert(table(StepRow)), steps)
            conn.execute(insert(table(HistoryRow)), hist)
            if conts:
                conn.execute(insert(table(ContainmentRow)), conts)
            if tasks:
                conn.execute(insert(table(TaskRow)), tasks)
    db.dispose()
    return sample_id


async def login(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/console/login") as resp:
        page = await resp.text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no login form"
    form = {"token": TOKEN, "csrf": found.group(1)}
    async with session.post(
        f"{base}/console/login", data=form, allow_redirects=False, headers={"Origin": base}
    ) as resp:
        assert resp.status == 303, f"login answered {resp.status}"


async def time_page(
    session: aiohttp.ClientSession, url: str, rounds: int
) -> tuple[list[float], int]:
    timings = []
    status = 0
    for n in range(rounds + 1):
        began = time.perf_counter()
        async with session.get(url, allow_redirects=False) as resp:
            await resp.read()
            status = resp.status
        if n:
            timings.append((time.perf_counter() - began) * 1000)
    return timings, status


async def measured(session: aiohttp.ClientSession, url: str) -> float:
    """Seconds until the effectiveness page shows figures rather than "being measured"."""
    began = time.perf_counter()
    while True:
        async with session.get(url) as resp:
            if "effectiveness-pending" not in await resp.text():
                return time.perf_counter() - began
        await asyncio.sleep(0.25)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="clampdown-bench-"))
    (work / "token").write_text(TOKEN)
    (work / "playbooks").mkdir()
    for name in PLAYBOOKS:
        (work / "playbooks" / f"{name}.yaml").write_text(PLAYBOOK.format(name=name))
    config = {
        "playbooks": str(work / "playbooks"),
        "default_pack": False,
        "tokens": [{"name": "bench", "secret": {"file": str(work / "token")}, "scopes": ["admin"]}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    began = time.perf_counter()
    sample = seed(database_url, args.findings)
    print(f"seeded {args.findings:,} findings in {time.perf_counter() - began:.1f} s")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_serve(work, database_url, port)
    pages = [
        "/console/",
        "/console/remediations",
        "/console/remediations?state=failed",
        "/console/remediations?state=awaiting_approval",
        f"/console/remediations?playbook={PLAYBOOKS[3]}",
        f"/console/remediations/{sample}",
        "/console/tasks",
        "/console/containments",
        "/console/playbooks",
        "/console/effectiveness?period=24h",
        "/console/effectiveness?period=7d",
        "/console/effectiveness?period=30d",
    ]
    try:
        await wait_ready(base)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            await login(session, base)
            for period in ("24h", "7d", "30d"):
                took = await measured(session, f"{base}/console/effectiveness?period={period}")
                print(
                    f"effectiveness of the last {period} measured in the background: {took:.1f} s"
                )
            worst = 0.0
            print(f"{'page':55} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
            for page in pages:
                timings, status = await time_page(session, base + page, args.rounds)
                assert status == 200, f"{page} answered {status}"
                worst = max(worst, max(timings))
                print(
                    f"{page:55} {percentile(timings, 50):8.1f} {percentile(timings, 90):8.1f} "
                    f"{max(timings):8.1f}"
                )
        verdict = "met" if worst < TARGET_MS else "NOT met"
        print(f"target (every page under {TARGET_MS:g} ms): {verdict} (slowest {worst:.1f} ms)")
    finally:
        stop_serve(server)
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=100_000, help="findings to store")
    parser.add_argument("--rounds", type=int, default=20, help="GETs per page")
    parser.add_argument("--database-url", help="an empty database; default: a new SQLite file")
    asyncio.run(main(parser.parse_args()))
