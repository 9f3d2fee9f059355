"""Benchmark: web console page times over a large store.

Seeds a database (SQLite by default, or --database-url: it must be empty) with --findings
findings and what the default pack would have made of them (bench/seed.py); then runs a
real `clampdown serve`, logs in to the console, waits for the background effectiveness
measurements (and prints how long they took) and times every page (--rounds GETs each,
after one warm-up). Prints p50, p90 and max per page against the target (p99 under 200 ms;
with few rounds, max stands for p99).

    python bench/console.py [--findings 100000] [--rounds 20] [--database-url URL]

BENCH_KEEP=1 keeps the working directory and prints where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from sqlalchemy import select

from clampdown.store.db import Database
from clampdown.store.tables import RemediationRow, table
from common import free_port, percentile, start_serve, stop_serve, wait_ready
from seed import TRIAL, seed

_rem = table(RemediationRow)

TOKEN = "bench-console-token"
TARGET_MS = 200.0


def sample_remediation(database_url: str) -> tuple[str, str]:
    """(id, playbook) of one remediation awaiting approval, for the timeline page."""
    db = Database(database_url)
    try:
        with db.read() as conn:
            row = conn.execute(
                select(_rem.c.id, _rem.c.playbook)
                .where(_rem.c.state == "awaiting_approval")
                .limit(1)
            ).one()
    finally:
        db.dispose()
    return str(row.id), str(row.playbook)


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
    (work / "playbooks" / "trial.yaml").write_text(TRIAL)
    config = {
        "playbooks": str(work / "playbooks"),
        "tokens": [{"name": "bench", "secret": {"file": str(work / "token")}, "scopes": ["admin"]}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    seeded = seed(database_url, findings=args.findings)
    print(f"seeded {args.findings:,} findings in {seeded.seconds:.1f} s")
    sample, playbook = sample_remediation(database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_serve(work, database_url, port)
    pages = [
        "/console/",
        "/console/remediations",
        "/console/remediations?state=failed",
        "/console/remediations?state=awaiting_approval",
        f"/console/remediations?playbook={playbook}",
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
