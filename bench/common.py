"""Helpers shared by the benchmarks: a real `clampdown serve` subprocess, sample alerts,
percentiles."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
SAMPLE = (
    HERE.parent.parent / "shared" / "fixtures" / "findings" / "defender-rest-suspicious-ip.json"
)


def _template() -> dict[str, Any]:
    if SAMPLE.exists():
        data: dict[str, Any] = json.loads(SAMPLE.read_text())
        return data
    return {
        "id": "x",
        "type": "Microsoft.Security/Locations/alerts",
        "properties": {
            "alertType": "API_AccessFromSuspiciousIP",
            "systemAlertId": "x",
            "alertDisplayName": "Access from a suspicious IP address",
            "severity": "High",
            "entities": [{"$id": "1", "type": "ip", "address": "203.0.113.1"}],
        },
    }


TEMPLATE = _template()
"""A Defender for APIs "access from a suspicious IP" alert (the shared sample when present)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def start_serve(work: Path, database_url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`clampdown serve` on `port`, with the config in `work`/config.yaml."""
    cmd = [
        sys.executable,
        "-m",
        "clampdown",
        "--config",
        str(work / "config.yaml"),
        "--database-url",
        database_url,
        "serve",
        "--port",
        str(port),
        *extra,
    ]
    return subprocess.Popen(cmd, cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_serve(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(15)


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{base}/v1/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("serve did not start")
