"""Benchmark: durable ingest rate and alert -> first action latency of `clampdown serve`.

Runs a real `clampdown serve` (SQLite by default, or --database-url) with one playbook that
blocks the alert's IP on the built-in list and then calls a local webhook. Prints:

- durable ingest, alerts/s: single-alert POSTs (32 in flight) and Event Hub batches of 100
  (8 in flight), every alert committed before its 2xx; first for alerts no playbook matches
  (ingest alone), then for alerts that each start a 2-step remediation in the same process;
- alert -> first action latency (p50, p90, p99, max) at a fixed 200 alerts/s, after 2 s of
  warm-up at that rate: from the moment the POST is sent to the containment's creation time
  recorded by the server (same clock);
- alert -> webhook delivered (the second action), for reference.

    python bench/remediation_loop.py [--count 5000] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from sqlalchemy import select

from clampdown.store.db import Database
from clampdown.store.tables import ContainmentRow, table
from common import TEMPLATE, free_port, percentile, start_serve, stop_serve, wait_ready

TOKEN = "bench-token"
PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: bench-block-and-notify}
spec:
  match: {types: [API_AccessFromSuspiciousIP], when: "size(finding.ips) > 0"}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Blocked ${{ finding.ip }}"}
"""


def alert(run: str, n: int) -> dict[str, Any]:
    """A distinct alert with its own id and its own source address."""
    body = copy.deepcopy(TEMPLATE)
    props = body["properties"]
    props["systemAlertId"] = f"{run}-{n}"
    props["entities"] = [{"$id": "1", "type": "ip", "address": ip_of(run, n)}]
    return body


def ip_of(run: str, n: int) -> str:
    """An address of the benchmarking range 198.18.0.0/15: data only, never contacted."""
    index = {"a": 0, "b": 1, "c": 2, "d": 3, "u": 4}[run] * 25_000 + n
    return f"198.{18 + index // 65_536}.{index // 256 % 256}.{index % 256}"


class Receiver:
    """The webhook target: records when each delivery arrived, keyed by the blocked IP."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrivals[body["text"].rsplit(" ", 1)[-1]] = time.time()
        return web.Response(text="ok")

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def closed_loop(base: str, bodies: list[Any], concurrency: int) -> float:
    """POST every body with `concurrency` in flight; returns elapsed seconds."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(f"{base}/v1/ingest", json=body) as resp:
                    if resp.status != 202:
                        raise SystemExit(f"ingest answered {resp.status}: {await resp.text()}")
                    await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


async def open_loop(base: str, run: str, rate: float, seconds: float) -> dict[str, float]:
    """Send alerts at a fixed rate whatever the answers; returns IP -> send time."""
    sent: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    total = int(rate * seconds)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(n: int) -> None:
            body = alert(run, n)
            sent[ip_of(run, n)] = time.time()
            async with session.post(f"{base}/v1/ingest", json=body) as resp:
                if resp.status != 202:
                    raise SystemExit(f"ingest answered {resp.status}")
                await resp.read()

        tasks = []
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return sent


def created_times(database_url: str) -> dict[str, float]:
    db = Database(database_url)
    t = table(ContainmentRow)
    with db.read() as conn:
        rows = conn.execute(select(t.c.subject, t.c.created_at)).all()
    db.dispose()
    return {r.subject: r.created_at.timestamp() for r in rows}


async def settle(receiver: Receiver, expected: int, timeout: float = 300) -> None:
    """Wait until the engine has finished every remediation (its webhook arrived)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(receiver.arrivals) >= expected:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the engine did not catch up")


def report_rate(title: str, count: int, elapsed: float) -> None:
    print(f"durable {title}: {count / elapsed:,.0f} alerts/s ({count} in {elapsed:.2f} s)")


def report_latency(title: str, sent: dict[str, float], done: dict[str, float]) -> None:
    latencies = [(done[ip] - t) * 1000 for ip, t in sent.items() if ip in done]
    if os.environ.get("BENCH_SERIES"):
        start = min(sent.values())
        buckets: dict[int, list[float]] = {}
        for ip, t in sent.items():
            if ip in done:
                buckets.setdefault(int((t - start) * 4), []).append((done[ip] - t) * 1000)
        print(" ".join(f"{k / 4:.2f}:{max(v):.0f}" for k, v in sorted(buckets.items())))
    missing = len(sent) - len(latencies)
    print(
        f"{title}: n={len(latencies)} p50={percentile(latencies, 50):.2f} ms "
        f"p90={percentile(latencies, 90):.2f} ms p99={percentile(latencies, 99):.2f} ms "
        f"max={max(latencies):.2f} ms mean={statistics.fmean(latencies):.2f} ms"
        + (f" (missing {missing})" if missing else "")
    )


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="clampdown-bench-"))
    receiver = Receiver()
    runner = await receiver.start()
    (work / "playbooks").mkdir()
    (work / "playbooks" / "bench.yaml").write_text(PLAYBOOK)
    (work / "token").write_text(TOKEN)
    config = {
        "playbooks": str(work / "playbooks"),
        "default_pack": False,
        "targets": {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{receiver.port}/hook"}},
        "tokens": [{"name": "bench", "secret": {"file": str(work / "token")}, "scopes": ["admin"]}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_serve(work, database_url, port)
    try:
        await wait_ready(base)
        print(f"store: {database_url.split(':', 1)[0]}, cpus: {os.cpu_count()}")

        unmatched = [alert("u", n) for n in range(args.count)]
        for body in unmatched:
            body["properties"]["alertType"] = "API_NotInAnyPlaybook"
        report_rate(
            "ingest only (no playbook matches), single alerts",
            args.count,
            await closed_loop(base, unmatched, 32),
        )
        for body in unmatched:
            body["properties"]["systemAlertId"] += "-again"
        batches = [{"records": unmatched[i : i + 100]} for i in range(0, args.count, 100)]
        report_rate(
            "ingest only (no playbook matches), batches of 100",
            args.count,
            await closed_loop(base, batches, 8),
        )

        bodies = [alert("a", n) for n in range(args.count)]
        report_rate(
            "ingest + 2-step remediation each, single alerts",
            args.count,
            await closed_loop(base, bodies, 32),
        )
        await settle(receiver, args.count)
        batches = [
            {"records": [alert("b", n) for n in range(i, i + 100)]}
            for i in range(0, args.count, 100)
        ]
        report_rate(
            "ingest + 2-step remediation each, batches of 100",
            args.count,
            await closed_loop(base, batches, 8),
        )
        await settle(receiver, 2 * args.count)

        # Warm up at the same rate first: new connections and the first checkpoint of a
        # large write-ahead log are one-time costs, not the steady state being measured.
        await open_loop(base, "d", args.rate, 2)
        await settle(receiver, 2 * args.count + int(args.rate * 2))
        receiver.arrivals.clear()
        # The measuring client must not pause itself: no collections while it sends.
        gc.collect()
        gc.disable()
        sent = await open_loop(base, "c", args.rate, args.seconds)
        gc.enable()
        await settle(receiver, len(sent))
        created = await asyncio.to_thread(created_times, database_url)
        report_latency(f"alert -> first action (block) at {args.rate:g}/s", sent, created)
        report_latency(f"alert -> webhook delivered at {args.rate:g}/s", sent, receiver.arrivals)
    finally:
        stop_serve(server)
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="alerts per ingest phase")
    parser.add_argument("--rate", type=float, default=200.0, help="alerts/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    parser.add_argument("--database-url", help="default: a new SQLite file")
    asyncio.run(main(parser.parse_args()))
