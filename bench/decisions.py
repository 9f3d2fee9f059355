"""Benchmark: the decision API (`/v1/decisions/check`, `/v1/decisions/auth`) of `serve`.

Runs a real `clampdown serve` (SQLite by default, or --database-url) with the default
playbook pack and a token with the `read` scope, ingests --blocked Defender "access from a
suspicious IP" alerts (the default pack blocks each alert's IP for an hour), then asks about
requests from those IPs and from as many others: about half are denied. For each route it
prints the checks/s achieved and the latency (p50, p90, p99, max):

- at maximum throughput: --connections keep-alive connections, each sending its next request
  as soon as the answer is in;
- at a fixed offered rate (--rate, default 10,000/s, the published target) over the same
  connections. Latency runs from the moment a request is written; a server that cannot keep
  up shows as an achieved rate below the offered one ("NOT sustained").

"not 2xx" is the share of 403 answers: 0 for /check (a deny is a 200 with a JSON body), about
half for /auth (every denied request). The published target, >= 10,000 checks/s with p99 <
5 ms, is read as: at least 10,000/s at maximum throughput, and p99 under 5 ms at a fixed
10,000/s.

The load comes from `wrk` (Debian package `wrk`) with a generated Lua script, which costs far
less CPU than the server: on a small machine the two share the cores. Without `wrk` (or with
--generator python), an aiohttp-based generator is used instead; it needs about as much CPU
per request as the server, so its figures say more about the generator than about the server.

    python bench/decisions.py [--blocked 1000] [--seconds 10] [--rate 10000] [--connections 32]

Environment: BENCH_WRK (the wrk binary; default: `wrk` on PATH), BENCH_WRK_THREADS (wrk
threads, default 1).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

from common import TEMPLATE, free_port, percentile, start_serve, stop_serve, wait_ready

READ_TOKEN = "bench-read-token"
INGEST_TOKEN = "bench-ingest-token"
TARGET_RATE = 10_000.0  # checks/s
TARGET_P99_MS = 5.0
PATHS = ["/orders/1234", "/orders", "/catalog/items?page=2", "/login", "/orders/7/items"]
METHODS = ["GET", "GET", "GET", "POST", "DELETE"]


def blocked_ip(n: int) -> str:
    """An address of the benchmarking range 198.18.0.0/15: data only, never contacted."""
    return f"198.18.{n // 256 % 256}.{n % 256}"


def blocked_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 65_536:
        raise argparse.ArgumentTypeError("from 1 to 65536 (the addresses of 198.18.0.0/16)")
    return count


def allowed_ip(n: int) -> str:
    return f"198.19.{n // 256 % 256}.{n % 256}"


def alert(n: int) -> dict[str, Any]:
    body = copy.deepcopy(TEMPLATE)
    props = body["properties"]
    props["systemAlertId"] = f"bench-decisions-{n}"
    props["entities"] = [{"$id": "1", "type": "ip", "address": blocked_ip(n)}]
    return body


@dataclass(frozen=True)
class Probe:
    """One request a gateway asks about."""

    ip: str
    method: str
    path: str

    def check_target(self) -> str:
        query = urlencode({"ip": self.ip, "method": self.method, "path": self.path})
        return f"/v1/decisions/check?{query}"

    def auth_headers(self) -> dict[str, str]:
        return {
            "X-Real-IP": self.ip,
            "X-Original-Method": self.method,
            "X-Original-URI": self.path,
        }


def probes(blocked: int, count: int) -> list[Probe]:
    """`count` requests, alternately from a blocked IP and from an allowed one."""
    out = []
    for n in range(count):
        k = n // 2
        ip = blocked_ip(k % blocked) if n % 2 == 0 else allowed_ip(k % blocked)
        out.append(Probe(ip, METHODS[n % len(METHODS)], PATHS[n % len(PATHS)]))
    return out


@dataclass
class Result:
    requests: int
    seconds: float
    not_2xx: int
    errors: int
    p50: float  # ms
    p90: float
    p99: float
    max: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# -- wrk ----------------------------------------------------------------------------------

_LUA_CLOCK = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
"""

_LUA_PACING = """
-- Open loop per thread: request k of this thread is due at start + k * interval, whatever
-- the earlier answers; a late one is sent at once. wrk schedules in whole milliseconds.
local interval = 1000 * THREADS / RATE
local due = nil
function delay()
  local now = now_ms()
  if due == nil then due = now end
  local wait = due - now
  due = due + interval
  if wait < 1 then return 0 end
  return math.floor(wait)
end
"""

_LUA_BODY = """
local index = 0
local prepared = {}
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  for i, item in ipairs(ITEMS) do
    prepared[i] = wrk.format("GET", item[1], item[2])
  end
  index = offset % #prepared
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "status": %d, "errors": %d, '
    .. '"p50": %d, "p90": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def wrk_script(route: str, items: list[Probe], *, rate: float, threads: int) -> str:
    """A Lua script for wrk: the requests prepared once, paced at `rate` when given."""
    lines = []
    for probe in items:
        if route == "check":
            target, headers = probe.check_target(), {}
        else:
            target, headers = "/v1/decisions/auth", probe.auth_headers()
        headers["Authorization"] = f"Bearer {READ_TOKEN}"
        table = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
        lines.append(f"  {{{_lua_string(target)}, {{{table}}}}},")
    script = "ITEMS = {\n" + "\n".join(lines) + "\n}\n" + _LUA_CLOCK
    if rate > 0:
        script += f"THREADS = {threads}\nRATE = {rate}\n" + _LUA_PACING
    return script + _LUA_BODY


def run_wrk(
    wrk: str,
    base: str,
    work: Path,
    route: str,
    items: list[Probe],
    args: argparse.Namespace,
    *,
    rate: float,
    seconds: float,
) -> Result:
    threads = int(os.environ.get("BENCH_WRK_THREADS", "1"))
    script = work / f"{route}-{int(rate)}.lua"
    script.write_text(wrk_script(route, items, rate=rate, threads=threads))
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "2s",
        "-s",
        str(script),
        base,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line[len("BENCH ") :])
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        not_2xx=data["status"],
        errors=data["errors"],
        p50=data["p50"] / 1000,
        p90=data["p90"] / 1000,
        p99=data["p99"] / 1000,
        max=data["max"] / 1000,
    )


# -- the aiohttp fallback -----------------------------------------------------------------


async def run_python(
    base: str,
    route: str,
    items: list[Probe],
    args: argparse.Namespace,
    *,
    rate: float,
    seconds: float,
) -> Result:
    """The same load from aiohttp: --connections workers, paced at `rate` when given."""
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    latencies: list[float] = []
    statuses = {"not_2xx": 0, "errors": 0}
    counter = iter(range(1 << 62))
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        start = time.perf_counter()
        stop = start + seconds

        async def worker() -> None:
            while True:
                k = next(counter)
                if rate > 0:
                    delay = start + k / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if time.perf_counter() >= stop:
                    return
                probe = items[k % len(items)]
                if route == "check":
                    url, extra = base + probe.check_target(), None
                else:
                    url, extra = base + "/v1/decisions/auth", probe.auth_headers()
                sent = time.perf_counter()
                try:
                    async with session.get(url, headers=extra) as resp:
                        await resp.read()
                        if not 200 <= resp.status < 300:
                            statuses["not_2xx"] += 1
                except aiohttp.ClientError:
                    statuses["errors"] += 1
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)

        await asyncio.gather(*(worker() for _ in range(args.connections)))
        elapsed = time.perf_counter() - start
    if not latencies:
        raise SystemExit("no request succeeded")
    return Result(
        requests=len(latencies),
        seconds=elapsed,
        not_2xx=statuses["not_2xx"],
        errors=statuses["errors"],
        p50=percentile(latencies, 50),
        p90=percentile(latencies, 90),
        p99=percentile(latencies, 99),
        max=max(latencies),
    )


# -- the run ------------------------------------------------------------------------------


async def seed(base: str, blocked: int) -> None:
    """Ingest one alert per blocked IP (Event Hub batches of 100); wait for every block."""
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for first in range(0, blocked, 100):
            batch = {"records": [alert(n) for n in range(first, min(first + 100, blocked))]}
            async with session.post(f"{base}/v1/ingest", json=batch) as resp:
                if resp.status != 202:
                    raise SystemExit(f"ingest answered {resp.status}: {await resp.text()}")
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with session.get(f"{base}/v1/decisions/stream", headers=read) as resp:
                if len((await resp.json())["added"]) >= blocked:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit("the engine did not block every seeded IP in time")


async def sanity(base: str, blocked: int) -> None:
    """Before measuring: a blocked IP is denied, another allowed, on both routes."""
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for ip, decision, status in (
            (blocked_ip(blocked - 1), "deny", 403),
            (allowed_ip(0), "allow", 204),
        ):
            probe = Probe(ip, "GET", "/orders/1")
            async with session.get(base + probe.check_target()) as resp:
                body = await resp.json()
                if resp.status != 200 or body["decision"] != decision:
                    raise SystemExit(f"check {ip}: {resp.status} {body}, expected {decision}")
            url = f"{base}/v1/decisions/auth"
            async with session.get(url, headers=probe.auth_headers()) as resp:
                if resp.status != status:
                    raise SystemExit(f"auth {ip}: {resp.status}, expected {status}")


def busy_cpus(seconds: float = 1.0) -> float | None:
    """How many CPUs were busy over `seconds` (Linux; None elsewhere)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def row(route: str, load: str, result: Result) -> str:
    return (
        f"{route:<6} {load:<22} {result.rate:>9,.0f} {result.p50:>7.2f} {result.p90:>7.2f} "
        f"{result.p99:>7.2f} {result.max:>8.2f} {result.not_2xx / max(result.requests, 1):>7.1%} "
        f"{result.errors:>6}"
    )


async def main(args: argparse.Namespace) -> None:
    wrk = os.environ.get("BENCH_WRK") or shutil.which("wrk")
    if args.generator == "wrk" and wrk is None:
        raise SystemExit("wrk not found (apt-get install wrk, or set BENCH_WRK)")
    if args.generator == "python":
        wrk = None
    if wrk is None:
        why = (
            "--generator python"
            if args.generator == "python"
            else "wrk not found (Debian package `wrk`, or set BENCH_WRK)"
        )
        print(
            f"NOTE: {why}: using the aiohttp generator, which needs about as much CPU per "
            "request as the server. The figures below are limited by the generator, not by "
            "the server."
        )

    work = Path(tempfile.mkdtemp(prefix="clampdown-bench-"))
    (work / "read-token").write_text(READ_TOKEN)
    (work / "ingest-token").write_text(INGEST_TOKEN)
    config = {
        "tokens": [
            {"name": "gateway", "secret": {"file": str(work / "read-token")}, "scopes": ["read"]},
            {
                "name": "detections",
                "secret": {"file": str(work / "ingest-token")},
                "scopes": ["ingest"],
            },
        ],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_serve(work, database_url, port)
    try:
        await wait_ready(base)
        await seed(base, args.blocked)
        await sanity(base, args.blocked)
        items = probes(args.blocked, 2 * args.blocked)
        generator = f"wrk ({os.environ.get('BENCH_WRK_THREADS', '1')} thread)" if wrk else "aiohttp"
        busy = await asyncio.to_thread(busy_cpus)
        if busy is not None and busy > 0.2:
            print(
                f"NOTE: {busy:.2f} CPUs busy while the server was idle: something else is "
                "running, and the figures below are lower than this machine gives when idle."
            )
        print(
            f"store: {database_url.split(':', 1)[0]}, cpus: {os.cpu_count()}, "
            f"one server process, generator: {generator}, "
            f"{args.connections} keep-alive connections, {args.blocked} blocked IPs, "
            f"half the requests from them, {args.seconds:g} s per line"
            + (f", {busy:.2f} CPUs busy before" if busy is not None else "")
        )
        print(
            f"{'route':<6} {'load':<22} {'checks/s':>9} {'p50 ms':>7} {'p90 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>8} {'not 2xx':>7} {'errors':>6}"
        )

        async def measure(route: str, rate: float, seconds: float) -> Result:
            if wrk is not None:
                return await asyncio.to_thread(
                    run_wrk, wrk, base, work, route, items, args, rate=rate, seconds=seconds
                )
            gc.collect()
            gc.disable()
            try:
                return await run_python(base, route, items, args, rate=rate, seconds=seconds)
            finally:
                gc.enable()

        results: dict[tuple[str, str], Result] = {}
        for route in ("check", "auth"):
            await measure(route, 0, 2)  # warm-up: connections, caches, the first refreshes
            result = await measure(route, 0, args.seconds)
            results[(route, "max")] = result
            print(row(route, "max throughput", result))
            result = await measure(route, args.rate, args.seconds)
            results[(route, "fixed")] = result
            print(row(route, f"fixed {args.rate:,.0f}/s", result))

        print()
        for route in ("check", "auth"):
            top, fixed = results[(route, "max")], results[(route, "fixed")]
            sustained = fixed.rate >= 0.97 * args.rate
            met = (
                top.rate >= TARGET_RATE
                and sustained
                and fixed.p99 < TARGET_P99_MS
                and args.rate >= TARGET_RATE
                and not (fixed.errors or top.errors)
            )
            print(
                f"target for {route} (>= {TARGET_RATE:,.0f} checks/s, p99 < {TARGET_P99_MS:g} ms "
                f"at {TARGET_RATE:,.0f}/s): {'met' if met else 'NOT met'} "
                f"(max {top.rate:,.0f}/s; at {args.rate:,.0f}/s offered: {fixed.rate:,.0f}/s "
                f"{'sustained' if sustained else 'NOT sustained'}, p99 {fixed.p99:.2f} ms)"
                + ("" if wrk else " [aiohttp generator: see the NOTE above]")
            )
    finally:
        stop_serve(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--blocked", type=blocked_count, default=1000, help="IPs blocked before measuring"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="the fixed offered rate")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--generator", choices=["auto", "wrk", "python"], default="auto", help="load generator"
    )
    parser.add_argument("--database-url", help="default: a new SQLite file")
    asyncio.run(main(parser.parse_args()))
