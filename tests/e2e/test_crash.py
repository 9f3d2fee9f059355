"""SIGKILL in the middle of a burst: nothing acknowledged is lost, nothing is done twice."""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import sample
from tests.e2e.server import Server, client, headers, write_config
from tests.fakes import Reply, WebhookReceiver

pytestmark = pytest.mark.slow

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-and-notify}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Blocked ${{ finding.ip }}"}
"""
FINAL = {"succeeded", "failed", "rejected", "rolled_back", "expired", "dry_run"}


def alert(n: int) -> dict[str, Any]:
    """A distinct suspicious-IP alert: its own id and its own source address."""
    body = copy.deepcopy(sample("defender-rest-suspicious-ip.json"))
    props = body["properties"]
    props["systemAlertId"] = f"crash-{n}"
    props["entities"][0]["address"] = f"198.51.{n // 250}.{n % 250 + 1}"
    return body


async def burst(base: str, count: int, acknowledged: list[str], stop_after: int) -> None:
    """Send `count` alerts 16 at a time; stop sending once `stop_after` were acknowledged."""
    queue = list(range(count))
    async with aiohttp.ClientSession(headers=headers("ingest")) as session:

        async def sender() -> None:
            while queue and len(acknowledged) < stop_after:
                n = queue.pop(0)
                try:
                    async with session.post(f"{base}/v1/ingest", json=alert(n)) as resp:
                        if 200 <= resp.status < 300:
                            acknowledged.append(f"crash-{n}")
                except aiohttp.ClientError:
                    return

        await asyncio.gather(*(sender() for _ in range(16)))


def test_sigkill_mid_burst_loses_nothing_and_repeats_nothing(
    tmp_path: Path, database_url: str
) -> None:
    # A slow receiver keeps steps in flight and queued when the kill comes.
    receiver = WebhookReceiver(default=Reply(200, delay=0.2))
    with receiver.running():
        folder = tmp_path / "playbooks"
        folder.mkdir()
        (folder / "crash.yaml").write_text(PLAYBOOK)
        config = write_config(
            tmp_path,
            playbooks=str(folder),
            default_pack=False,
            targets={"hook": {"type": "webhook", "url": receiver.url}},
        )
        server = Server(config, database_url, tmp_path).start()
        acknowledged: list[str] = []
        try:
            asyncio.run(_burst_then_kill(server, acknowledged))
            assert len(acknowledged) >= 100
            restarted_at = datetime.now(UTC).isoformat()
            server.start()
            remediations = _wait_until_final(server)
            with client(server) as api:
                found = api.get("/v1/findings?limit=1000").json()["findings"]
        finally:
            server.stop()

        stored = {f["source_id"] for f in found}
        missing = set(acknowledged) - stored
        assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
        assert len(remediations) == len(stored)
        resumed = [r for r in remediations if r["updated_at"] > restarted_at]
        assert resumed, "no work was left at the kill: the test proved nothing"
        keys = receiver.keys()
        assert len(keys) == len(set(keys)), "a step reached the webhook twice"
        assert len(keys) >= 1


async def _burst_then_kill(server: Server, acknowledged: list[str]) -> None:
    sending = asyncio.create_task(burst(server.base, 600, acknowledged, stop_after=10_000))
    while len(acknowledged) < 150:
        await asyncio.sleep(0.005)
    await asyncio.to_thread(server.kill)
    await sending


def _wait_until_final(server: Server, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with client(server) as api:
        while time.monotonic() < deadline:
            rows = api.get("/v1/remediations?limit=1000").json()["remediations"]
            if rows and all(r["state"] in FINAL for r in rows):
                return list(rows)
            time.sleep(0.2)
    pending = [r for r in rows if r["state"] not in FINAL]
    raise AssertionError(f"{len(pending)} remediations never finished: {pending[:3]}")
