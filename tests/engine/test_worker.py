"""The worker survives a failing pass: a database outage delays work, it does not end it."""

from __future__ import annotations

from typing import Any

import pytest

from clampdown.engine.worker import Worker
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.engine.playbooks import NOTIFY
from tests.fakes import WebhookReceiver


def test_a_failing_claim_is_retried_and_work_still_gets_done(
    make_app: AppFactory, webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(NOTIFY, webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    real = Worker._claim_into
    calls = {"n": 0}

    async def flaky(self: Worker, executor: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database unreachable")
        await real(self, executor)

    monkeypatch.setattr(Worker, "_claim_into", flaky)
    drain(app)
    assert calls["n"] >= 2
    assert app.get_remediation(result.remediations[0].remediation_id)["state"] == "succeeded"
    assert len(webhook.deliveries) == 1


def test_lease_owners_are_told_apart_by_pid_and_start_time() -> None:
    """Alive: this process. Dead: a pid that is gone, or a pid reused by a later process."""
    import os
    import socket
    import subprocess
    import sys

    from clampdown.engine.worker import is_dead_local_owner, worker_id

    me = worker_id()
    assert not is_dead_local_owner(me)
    host, pid, started, _ = me.split(":")
    assert not is_dead_local_owner(f"{host}:{pid}:{started}:another-worker-here")
    assert is_dead_local_owner(f"{host}:{pid}:{int(started or 0) + 1}:earlier-process")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert is_dead_local_owner(f"{socket.gethostname()}:{gone.pid}:1:x")
    assert not is_dead_local_owner(f"elsewhere:{os.getpid()}:1:x")
