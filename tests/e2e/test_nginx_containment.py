"""An alert posted to a real `clampdown serve` makes a real nginx refuse the attacker, and only
the attacker, until the containment expires: once through the `nginx` target (rendered include
files and a reload), once through `auth_request` to the decision API (the `builtin` target).

The attacker sends from 127.0.0.5 and everyone else from 127.0.0.1: Linux routes all of
127.0.0.0/8 to the loopback interface, and nginx sees the source address as `$remote_addr`.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import TOKENS, sample
from tests.e2e.nginx_auth import auth_nginx
from tests.e2e.server import Server, headers, write_config
from tests.targets.nginx_server import NGINX, NginxServer, nginx

__all__ = ["nginx"]  # the fixture, imported for pytest

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.5"
EVERYONE_ELSE = "127.0.0.1"
EXPIRY_SECONDS = 3
UNSETTLED = {"planned", "running", "verifying"}

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: contain-at-the-edge}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: TARGET, ip: "${{ finding.ip }}"}
      expires: EXPIRYs
"""


def serve(tmp_path: Path, target: str, **extra: Any) -> Server:
    """`clampdown serve` (not started) on a new SQLite file, with one playbook on `target`."""
    folder = tmp_path / "playbooks"
    folder.mkdir()
    text = PLAYBOOK.replace("TARGET", target).replace("EXPIRY", str(EXPIRY_SECONDS))
    (folder / "edge.yaml").write_text(text)
    config = write_config(tmp_path, playbooks=str(folder), default_pack=False, **extra)
    return Server(config, f"sqlite:///{tmp_path / 'clampdown.db'}", tmp_path)


async def post_alert(base: str, ip: str) -> str:
    """Post the suspicious-IP sample with `ip` as the attacker; the remediation's id."""
    body = copy.deepcopy(sample("defender-rest-suspicious-ip.json"))
    body["properties"]["systemAlertId"] = f"nginx-containment-{ip}"
    body["properties"]["entities"][0]["address"] = ip
    async with httpx2.AsyncClient(base_url=base, headers=headers("ingest"), timeout=10) as ingest:
        response = await ingest.post("/v1/ingest", json=body)
    assert response.status_code == 202, response.text
    [finding] = response.json()["findings"]
    assert finding["ips"] == [ip]
    [remediation] = finding["remediations"]
    return str(remediation["id"])


async def settled(
    base: str, remediation_id: str, *, leaving: set[str], within: float
) -> dict[str, Any]:
    """Poll the remediation until its state is none of `leaving`; the remediation then."""
    deadline = time.monotonic() + within
    async with httpx2.AsyncClient(base_url=base, headers=headers("admin"), timeout=10) as api:
        while True:
            response = await api.get(f"/v1/remediations/{remediation_id}")
            assert response.status_code == 200, response.text
            remediation: dict[str, Any] = response.json()
            if remediation["state"] not in leaving:
                return remediation
            assert time.monotonic() < deadline, remediation
            await asyncio.sleep(0.05)


def assert_verified(remediation: dict[str, Any]) -> None:
    assert remediation["state"] == "succeeded", remediation["history"]
    [step] = remediation["steps"]
    assert step["state"] == "succeeded", step
    assert step["params"]["ip"] == ATTACKER
    verdicts = [
        (h["from_state"], h["to_state"], h["reason"])
        for h in remediation["history"]
        if h["step_key"] is None
    ]
    assert ("verifying", "succeeded", "verified") in verdicts, remediation["history"]


def assert_expired(remediation: dict[str, Any]) -> None:
    assert remediation["state"] == "expired", remediation["history"]
    [step] = remediation["steps"]
    assert step["state"] == "undone", step
    reasons = [h["reason"] for h in remediation["history"] if h["step_key"] == "block"]
    assert "expired: undone on schedule" in reasons, remediation["history"]


async def contain_and_expire(gateway: NginxServer, server: Server, within: float) -> None:
    """The shared scenario: before, contained (attacker only, verified), after expiry."""
    await gateway.wait_status(200, source=ATTACKER)
    remediation_id = await post_alert(server.base, ATTACKER)

    await gateway.wait_status(403, source=ATTACKER, within=within)
    assert await gateway.status(source=EVERYONE_ELSE) == 200
    assert await gateway.status("/orders/1", source=ATTACKER) == 403
    remediation = await settled(server.base, remediation_id, leaving=UNSETTLED, within=within)
    assert_verified(remediation)

    # The containment lapses EXPIRY_SECONDS after the step started; the undo follows.
    await gateway.wait_status(200, source=ATTACKER, within=EXPIRY_SECONDS + within)
    assert await gateway.status(source=EVERYONE_ELSE) == 200
    remediation = await settled(
        server.base, remediation_id, leaving=UNSETTLED | {"succeeded"}, within=within
    )
    assert_expired(remediation)


async def test_rendered_files_refuse_the_attacker_until_expiry(
    tmp_path: Path, nginx: NginxServer
) -> None:
    target = {
        "type": "nginx",
        "directory": str(nginx.directory),
        "test_command": nginx.test_command,
        "reload_command": nginx.reload_command,
    }
    server = serve(tmp_path, "edge-nginx", targets={"edge-nginx": target}).start()
    try:
        await contain_and_expire(nginx, server, within=10)
        # One reload to add the block, one to lift it: nothing else touched nginx.
        assert nginx.reloads == 2
        assert ATTACKER not in (nginx.directory / "clampdown-http.conf").read_text()
    except BaseException:
        print(server.log())
        raise
    finally:
        server.stop()


@pytest.fixture
async def auth_request(tmp_path: Path) -> AsyncIterator[tuple[NginxServer, Server]]:
    """`serve` with the builtin target, and the nginx of docs/decision-api.md in front."""
    if NGINX is None:
        if os.environ.get("CLAMPDOWN_REQUIRE_NGINX") == "1":
            pytest.fail("CLAMPDOWN_REQUIRE_NGINX is set but nginx is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    server = serve(tmp_path, "builtin")
    gateway = auth_nginx(tmp_path, clampdown_port=server.port, token=TOKENS["read"])
    server.start()
    try:
        gateway.start()
        try:
            yield gateway, server
        finally:
            gateway.stop()
    finally:
        server.stop()


async def test_auth_request_refuses_the_attacker_until_expiry(
    auth_request: tuple[NginxServer, Server],
) -> None:
    gateway, server = auth_request
    try:
        await contain_and_expire(gateway, server, within=10)
    except BaseException:
        print(server.log())
        raise
