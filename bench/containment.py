"""Benchmark: time to containment at a real nginx, alert accepted -> attacker refused.

Runs a real `clampdown serve` (SQLite by default, or --database-url) and a real nginx built
from the docs' examples, the way tests/e2e/test_nginx_containment.py does, for each of the
two nginx integrations:

- rendered: the `nginx` target writes the include files of docs/targets/nginx.md, runs
  `nginx -t` and `nginx -s reload`;
- auth_request: nginx asks `GET /v1/decisions/auth` about every request (the configuration
  of docs/decision-api.md); the playbook blocks on the `builtin` list.

For each, --count alerts are posted one after the other (--gap seconds apart), each about a
new attacker address in 127.0.0.0/8 (127.1.x.y for rendered, 127.2.x.y for auth_request), so
every alert is a new containment. Time to containment runs from the moment the alert's POST
got its 2xx until the first 403 that nginx answers to that address: right after the 2xx, a
poller sends a request from the attacker's address (a new connection each time) every
--poll-ms until one is refused. Before each alert the attacker gets 200, and after it
127.0.0.1 still gets 200.

It prints p50, p90, p99 and max per integration against the published target (p99 < 1 s);
where the time went, from the step's recorded start and end (with --trace, also when each
`nginx -t` and reload began and ended, logged by a bash wrapper that adds a few ms to each);
and, on a separate idle nginx, how long `nginx -t`, `nginx -s reload` and the switch to the new
workers take on their own.

    python bench/containment.py [--count 50] [--gap 0.2] [--poll-ms 3] [--trace]

Environment: BENCH_NGINX (the nginx binary; default: `nginx` on PATH or /usr/sbin/nginx),
BENCH_ROUNDS (block/unblock rounds of the nginx-alone measurement, default 5), BENCH_KEEP=1
(keep the working directory and print where it is).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from common import TEMPLATE, free_port, percentile, start_serve, stop_serve, wait_ready

# The nginx helpers of the tests build nginx.conf from the docs' examples: the bench runs the
# same configurations as the tests and the docs.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.e2e.nginx_auth import write_auth_conf  # noqa: E402
from tests.targets.nginx_server import NGINX, NginxServer, write_conf  # noqa: E402

INGEST_TOKEN = "bench-ingest-token"
READ_TOKEN = "bench-read-token"
ADMIN_TOKEN = "bench-admin-token"
TARGET_P99_MS = 1000.0
EVERYONE_ELSE = "127.0.0.1"
PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: bench-contain-at-the-edge}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: TARGET, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def attacker(phase: int, n: int) -> str:
    """The n-th attacker address of a phase: 127.<phase>.x.y, routed to loopback."""
    return f"127.{phase}.{n // 250 % 256}.{n % 250 + 1}"


def alert(ip: str) -> dict[str, Any]:
    body = copy.deepcopy(TEMPLATE)
    props = body["properties"]
    props["systemAlertId"] = f"bench-containment-{ip}"
    props["entities"] = [{"$id": "1", "type": "ip", "address": ip}]
    return body


def status(port: int, source: str, path: str = "/") -> int:
    """What nginx answers a request from `source`, on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def poll_until(
    port: int, source: str, expected: int, interval: float, within: float = 30.0
) -> tuple[float, int]:
    """Poll until nginx answers `expected` to `source`: perf_counter then, and polls sent."""
    deadline = time.perf_counter() + within
    polls = 0
    while True:
        got = status(port, source)
        polls += 1
        if got == expected:
            return time.perf_counter(), polls
        if got not in (200, 403):
            raise SystemExit(f"nginx answered {got} to {source}")
        if time.perf_counter() > deadline:
            raise SystemExit(f"{source} did not get {expected} within {within:g} s")
        time.sleep(interval)


@dataclass
class Sample:
    ip: str
    remediation_id: str
    accepted: float  # wall clock (time.time) when the 2xx was read
    latency_ms: float  # 2xx -> first 403, from perf_counter
    polls: int
    started: float = 0.0  # the step's started_at, wall clock of the server
    finished: float = 0.0  # the step's finished_at


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    others_refused: int = 0
    trace: list[dict[str, float]] = field(default_factory=list)  # --trace: command times

    def latencies(self) -> list[float]:
        return [s.latency_ms for s in self.samples]


class Serve:
    """A `clampdown serve` with the bench tokens, one playbook on `target`, and `targets`."""

    def __init__(self, work: Path, database_url: str | None, target: str, **targets: Any):
        self.work = work
        work.mkdir(parents=True)
        (work / "playbooks").mkdir()
        (work / "playbooks" / "edge.yaml").write_text(PLAYBOOK.replace("TARGET", target))
        tokens = []
        for scope, secret in (
            ("ingest", INGEST_TOKEN),
            ("read", READ_TOKEN),
            ("admin", ADMIN_TOKEN),
        ):
            (work / f"{scope}-token").write_text(secret)
            tokens.append(
                {"name": scope, "secret": {"file": str(work / f"{scope}-token")}, "scopes": [scope]}
            )
        config = {
            "playbooks": str(work / "playbooks"),
            "default_pack": False,
            "targets": targets,
            "tokens": tokens,
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        self.database_url = database_url or f"sqlite:///{work / 'bench.db'}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def start(self) -> None:
        self.process = start_serve(self.work, self.database_url, self.port)
        asyncio.run(wait_ready(self.base))

    def stop(self) -> None:
        self.conn.close()
        if self.process is not None:
            stop_serve(self.process)

    def request(self, method: str, path: str, token: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        text = response.read()
        if not 200 <= response.status < 300:
            raise SystemExit(f"{method} {path}: {response.status} {text[:500]!r}")
        return json.loads(text)

    def remediation(self, remediation_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.request(
            "GET", f"/v1/remediations/{remediation_id}", ADMIN_TOKEN
        )
        return answer


def nginx_instance(root: Path, write: Callable[[Path], tuple[Path, int]]) -> NginxServer:
    """A started nginx in `root` whose nginx.conf `write` makes (it returns conf and port)."""
    binary = os.environ.get("BENCH_NGINX") or NGINX
    if binary is None:
        raise SystemExit("nginx not found (apt-get install nginx-light, or set BENCH_NGINX)")
    prefix = root / "nginx"
    directory = root / "clampdown"
    for path in (prefix / "logs", prefix / "temp", directory):
        path.mkdir(parents=True)
    (directory / "clampdown-http.conf").touch()
    (directory / "clampdown-server.conf").touch()
    conf, port = write(prefix)
    server = NginxServer(binary, prefix, conf, directory, port)
    server.start()
    return server


def rendered_nginx(root: Path) -> NginxServer:
    def write(prefix: Path) -> tuple[Path, int]:
        port = free_port()
        return write_conf(prefix, root / "clampdown", port, free_port()), port

    return nginx_instance(root, write)


def contain(
    serve: Serve, gateway: NginxServer, phase: Phase, ip: str, args: argparse.Namespace
) -> None:
    """One alert about `ip`, then poll until nginx refuses `ip`."""
    interval = args.poll_ms / 1000
    if status(gateway.port, ip) != 200:
        raise SystemExit(f"{ip} is refused before its alert")
    answer = serve.request("POST", "/v1/ingest", INGEST_TOKEN, alert(ip))
    accepted_perf, accepted = time.perf_counter(), time.time()
    [finding] = answer["findings"]
    [remediation] = finding["remediations"]
    refused, polls = poll_until(gateway.port, ip, 403, interval)
    phase.samples.append(
        Sample(ip, remediation["id"], accepted, (refused - accepted_perf) * 1000, polls)
    )
    if status(gateway.port, EVERYONE_ELSE) != 200:
        phase.others_refused += 1


def run_phase(
    name: str, serve: Serve, gateway: NginxServer, number: int, args: argparse.Namespace
) -> Phase:
    phase = Phase(name)
    for n in range(args.count):
        contain(serve, gateway, phase, attacker(number, n), args)
        time.sleep(args.gap)
    # Where the time went: the step's own start and end, as the server recorded them.
    for sample in phase.samples:
        deadline = time.monotonic() + 30
        while True:
            remediation = serve.remediation(sample.remediation_id)
            [step] = remediation["steps"]
            if step["finished_at"] is not None and remediation["state"] != "running":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"remediation {sample.remediation_id} did not finish")
            time.sleep(0.05)
        if remediation["state"] != "succeeded":
            raise SystemExit(f"remediation {sample.remediation_id}: {remediation['history']}")
        sample.started = datetime.fromisoformat(step["started_at"]).timestamp()
        sample.finished = datetime.fromisoformat(step["finished_at"]).timestamp()
    return phase


def traced(argv: list[str], log: Path, what: str) -> list[str]:
    """`argv` run by bash, which logs when it began and ended (no extra process per line)."""
    script = (
        'echo "$1 begin $EPOCHREALTIME" >> "$2"; shift 2; "$@"; code=$?; '
        f'echo "{what} end $EPOCHREALTIME" >> "{log}"; exit $code'
    )
    return ["bash", "-c", script, "traced", what, str(log), *argv]


def read_trace(log: Path) -> list[dict[str, float]]:
    """One {test begin, test end, reload begin, reload end} per reconcile, in order."""
    runs: list[dict[str, float]] = []
    for line in log.read_text().splitlines():
        what, edge, when = line.split()
        if what == "test" and edge == "begin":
            runs.append({})
        runs[-1][f"{what} {edge}"] = float(when.replace(",", "."))
    return runs


def rendered_phase(work: Path, args: argparse.Namespace) -> Phase:
    gateway = rendered_nginx(work / "rendered")
    test = gateway.test_command
    reload = [gateway.binary, "-s", "reload", "-p", str(gateway.prefix), "-c", str(gateway.conf)]
    trace = work / "rendered" / "trace.log"
    if args.trace:
        test, reload = traced(test, trace, "test"), traced(reload, trace, "reload")
    target = {
        "type": "nginx",
        "directory": str(gateway.directory),
        "test_command": test,
        "reload_command": reload,
    }
    serve = Serve(
        work / "rendered" / "serve", args.database_url, "edge-nginx", **{"edge-nginx": target}
    )
    try:
        serve.start()
        phase = run_phase("rendered file + reload", serve, gateway, 1, args)
    finally:
        serve.stop()
        gateway.stop()
    if args.trace:
        phase.trace = read_trace(trace)
        if len(phase.trace) != len(phase.samples):
            raise SystemExit(f"{len(phase.trace)} reconciles for {len(phase.samples)} alerts")
    return phase


def auth_phase(work: Path, args: argparse.Namespace) -> Phase:
    root = work / "auth"
    serve = Serve(root / "serve", args.database_url, "builtin")

    def write(prefix: Path) -> tuple[Path, int]:
        port = free_port()
        conf = write_auth_conf(
            prefix,
            port=port,
            backend_port=free_port(),
            clampdown_port=serve.port,
            token=READ_TOKEN,
        )
        return conf, port

    try:
        serve.start()
        gateway = nginx_instance(root, write)
        try:
            return run_phase("auth_request (builtin list)", serve, gateway, 2, args)
        finally:
            gateway.stop()
    finally:
        serve.stop()


# -- nginx alone ----------------------------------------------------------------------------

BLOCK_HTTP = "geo $clampdown_blocked {\n    default 0;\n    IP 1;\n}\n"
BLOCK_SERVER = "if ($clampdown_blocked) {\n    return 403;\n}\n"


@dataclass
class Alone:
    test_ms: list[float] = field(default_factory=list)
    reload_ms: list[float] = field(default_factory=list)
    switch_ms: list[float] = field(default_factory=list)  # reload sent -> new answer seen
    settled_ms: list[float] = field(default_factory=list)  # reload sent -> old workers gone


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return (time.perf_counter() - start) * 1000


def nginx_alone(work: Path, rounds: int, args: argparse.Namespace) -> Alone:
    """`nginx -t`, `nginx -s reload`, and the switch to new workers, on an idle nginx.

    Each round blocks or unblocks one address by writing the include files by hand (the
    same shape Clampdown renders), then runs the same commands as the `nginx` target.
    """
    gateway = rendered_nginx(work / "alone")
    ip = attacker(3, 0)
    reload = [gateway.binary, "-s", "reload", "-p", str(gateway.prefix), "-c", str(gateway.conf)]
    out = Alone()
    try:
        for n in range(2 * rounds):
            block = n % 2 == 0
            (gateway.directory / "clampdown-http.conf").write_text(
                BLOCK_HTTP.replace("IP", ip) if block else ""
            )
            (gateway.directory / "clampdown-server.conf").write_text(BLOCK_SERVER if block else "")
            out.test_ms.append(timed(gateway.test_command))
            sent = time.perf_counter()
            out.reload_ms.append(timed(reload))
            seen, _ = poll_until(gateway.port, ip, 403 if block else 200, args.poll_ms / 1000)
            out.switch_ms.append((seen - sent) * 1000)
            while gateway.workers() > 1:
                time.sleep(0.001)
            out.settled_ms.append((time.perf_counter() - sent) * 1000)
            time.sleep(args.gap)
    finally:
        gateway.stop()
    return out


# -- report ---------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return (
        f"{percentile(values, 50):>8.1f} {percentile(values, 90):>8.1f} "
        f"{percentile(values, 99):>8.1f} {max(values):>8.1f}"
    )


def report(phases: list[Phase], alone: Alone, args: argparse.Namespace) -> None:
    print()
    print(f"time to containment, alert 2xx -> first 403 from nginx (ms), {args.count} alerts")
    print(f"{'integration':<28} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  p99 < 1 s")
    for phase in phases:
        values = phase.latencies()
        verdict = "yes" if percentile(values, 99) < TARGET_P99_MS else "NO"
        print(f"{phase.name:<28} {len(values):>4} {spread(values)}  {verdict}")
    for phase in phases:
        if phase.others_refused:
            print(f"WARNING: {phase.name}: 127.0.0.1 was refused {phase.others_refused} times")

    print()
    print("where the time went (ms; the step's started_at and finished_at as recorded)")
    print(f"{'integration':<28} {'part':<34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for phase in phases:
        parts = {
            "2xx -> step started": [(s.started - s.accepted) * 1000 for s in phase.samples],
            "step started -> finished": [(s.finished - s.started) * 1000 for s in phase.samples],
            "step finished -> first 403": [
                (s.accepted + s.latency_ms / 1000 - s.finished) * 1000 for s in phase.samples
            ],
            "polls until the 403 (count)": [float(s.polls) for s in phase.samples],
        }
        for sample, run in zip(phase.samples, phase.trace, strict=False):
            run["refused"] = sample.accepted + sample.latency_ms / 1000
            run["started"], run["finished"] = sample.started, sample.finished
        for part, (a, b) in {
            "step started -> nginx -t begins": ("started", "test begin"),
            "nginx -t (traced)": ("test begin", "test end"),
            "nginx -t ends -> reload begins": ("test end", "reload begin"),
            "nginx -s reload (traced)": ("reload begin", "reload end"),
            "reload ends -> step finished": ("reload end", "finished"),
            "reload ends -> first 403": ("reload end", "refused"),
        }.items():
            if phase.trace:
                parts[part] = [(run[b] - run[a]) * 1000 for run in phase.trace]
        for part, values in parts.items():
            print(f"{phase.name:<28} {part:<34} {spread(values)}")

    print()
    print(f"nginx alone, {len(alone.test_ms)} changes of its include files (ms)")
    print(f"{'':<40} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for part, values in (
        ("nginx -t", alone.test_ms),
        ("nginx -s reload (the command)", alone.reload_ms),
        ("reload sent -> new answer seen", alone.switch_ms),
        ("reload sent -> old worker gone", alone.settled_ms),
        (
            "nginx -t + reload -> new answer",
            [a + b for a, b in zip(alone.test_ms, alone.switch_ms, strict=True)],
        ),
    ):
        print(f"{part:<40} {spread(values)}")


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="clampdown-bench-"))
    binary = os.environ.get("BENCH_NGINX") or NGINX
    version = subprocess.run(
        [binary or "nginx", "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    print(
        f"store: {(args.database_url or 'sqlite').split(':', 1)[0]}, cpus: {os.cpu_count()}, "
        f"{version}, {args.count} alerts per integration, {args.gap:g} s apart, "
        f"poll every {args.poll_ms:g} ms" + (", commands traced" if args.trace else "")
    )
    try:
        alone = nginx_alone(work, int(os.environ.get("BENCH_ROUNDS", "5")), args)
        phases = [rendered_phase(work, args), auth_phase(work, args)]
        report(phases, alone, args)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"working directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="alerts per integration")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between alerts")
    parser.add_argument("--poll-ms", type=float, default=3.0, help="poll interval of the prober")
    parser.add_argument("--database-url", help="default: a new SQLite file per integration")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the nginx target's commands through bash to time them (adds a few ms each)",
    )
    main(parser.parse_args())
