"""`clampdown demo`: a directory with a config, tokens and a database that shows every feature.

The sample alerts shipped in `samples/` (invented values, one file per delivery shape plus a
few variants) go through the default pack exactly as `clampdown ingest` would take them, and
the engine runs until no step is due. Before them, unless asked not to, a week of made-up
history (see `synthetic`) gives the effectiveness charts something to show; every row of it
is labelled: findings from source "demo", people "demo:<name>", reasons ending "(demo data)".
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from clampdown.config import load_config
from clampdown.demo import workspace
from clampdown.demo.synthetic import Profile, Synthesizer, fill
from clampdown.model import Finding
from clampdown.services import Clampdown
from clampdown.sources import normalize

# In this order: a repeat comes after the alert it repeats.
SAMPLES = (
    "defender-eventhub-batch.json",
    "defender-rest-suspicious-ip.json",
    "defender-workflow-tor.json",
    "securityalert-row-useragent.json",
    "graph-alert-param-enum.json",
    "sentinel-incident-payload.json",
    "ocsf-detection-finding.json",
    "recommendation-unauthenticated-endpoint.json",
    "recommendation-unused-endpoint.json",
    "defender-rest-spike-repeat.json",
    "generic-hostile-user-agent.json",
    "generic-uptime-monitor-spike.json",
    "defender-workflow-latency-no-ip.json",
    "defender-rest-population-spike.json",
    "recommendation-subscription-all-apis.json",
    "recommendation-unused-endpoint-reports.json",
    "recommendation-minimum-api-version.json",
)
HISTORY_DAYS = 7
HISTORY_FINDINGS = 280
PROFILE = Profile(
    source="demo",
    people=("demo:alice", "demo:bob", "demo:oncall"),
    label=" (demo data)",
    # More approvals than in real life, for the approval charts of a small history.
    weights=(("Recommendation_UnusedEndpoint", 6.0),),
    open_approvals=2,
    open_tasks=3,
    open_window=timedelta(days=3),
)
SETTLE_SECONDS = 60.0


@dataclass(frozen=True)
class Result:
    """What the demo wrote and what happened to the samples."""

    workspace: workspace.Workspace
    samples: int
    findings: int
    unmatched: int
    remediations: dict[str, int]
    """Remediations of the samples, by state."""
    history: dict[str, int] = field(default_factory=dict)
    """Rows of made-up history per table (empty with history off)."""
    history_outcomes: dict[str, int] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    """Every active containment (samples and history), by kind."""
    open_tasks: int = 0
    awaiting_approval: int = 0

    def as_json(self) -> dict[str, Any]:
        """A plain dict for --json output."""
        ws = self.workspace
        return {
            "directory": str(ws.directory),
            "config": str(ws.config),
            "database": str(ws.database),
            "tokens": {"admin": str(ws.admin_token), "read": str(ws.read_token)},
            "samples": {
                "files": self.samples,
                "findings": self.findings,
                "unmatched": self.unmatched,
                "remediations": self.remediations,
            },
            "history": {"rows": self.history, "remediations": self.history_outcomes},
            "active_containments": self.active,
            "open_tasks": self.open_tasks,
            "awaiting_approval": self.awaiting_approval,
        }


def sample_payloads(now: datetime | None = None) -> list[tuple[str, object]]:
    """(file name, parsed JSON) of every sample, in ingest order.

    With `now`, the times in each sample are moved so that its latest is ten minutes before
    `now`: the alerts look fresh, and times to contain are minutes, not the samples' age.
    """
    folder = resources.files("clampdown.demo") / "samples"
    payloads = [(name, json.loads((folder / name).read_text())) for name in SAMPLES]
    if now is None:
        return payloads
    return [(name, freshen(payload, now - timedelta(minutes=10))) for name, payload in payloads]


# ISO 8601 times as the samples write them, and epoch milliseconds (OCSF).
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")
_EPOCH_MS = range(10**12, 10**13)


def freshen(payload: Any, latest: datetime) -> Any:
    """`payload` with every time in it moved by the same amount, its latest to `latest`."""
    times = list(_times(payload))
    if not times:
        return payload
    return _moved(payload, latest - max(times))


def _times(value: Any) -> Iterator[datetime]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _times(item)
    elif isinstance(value, list):
        for item in value:
            yield from _times(item)
    elif isinstance(value, str) and _ISO.fullmatch(value):
        yield datetime.fromisoformat(value)
    elif isinstance(value, int) and value in _EPOCH_MS:
        yield datetime.fromtimestamp(value / 1000, UTC)


def _moved(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {key: _moved(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, delta) for item in value]
    if isinstance(value, str) and (found := _ISO.fullmatch(value)):
        when = (datetime.fromisoformat(value) + delta).astimezone(UTC)
        digits = len(found.group(1) or "")
        fraction = f".{when.microsecond:06d}{'0' * digits}"[: digits + 1] if digits else ""
        return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
    if isinstance(value, int) and value in _EPOCH_MS:
        return value + int(delta.total_seconds() * 1000)
    return value


def create(directory: Path, *, force: bool = False, history: bool = True, seed: int = 1) -> Result:
    """Write the demo into `directory` and run the samples; see the module docstring."""
    ws = workspace.prepare(directory, force=force)
    workspace.write_files(ws)
    # The demo's own database, whatever CLAMPDOWN_DATABASE_URL says.
    app = Clampdown.open(load_config(ws.config), database_url=ws.database_url)
    try:
        written: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        if history:
            written, outcomes = _history(app, seed)
        payloads = sample_payloads(datetime.now(UTC))
        ingested = [item for _, payload in payloads for item in app.ingest(payload)]
        asyncio.run(app.settle(SETTLE_SECONDS))
        rem_ids = {p.remediation_id for item in ingested for p in item.remediations}
        states = Counter(app.get_remediation(rid)["state"] for rid in sorted(rem_ids))
        active = Counter(c["kind"] for c in app.list_containments(limit=100_000))
        return Result(
            workspace=ws,
            samples=len(payloads),
            findings=len(ingested),
            unmatched=sum(1 for item in ingested if not item.remediations),
            remediations=dict(sorted(states.items())),
            history=written,
            history_outcomes=dict(sorted(outcomes.items())),
            active=dict(sorted(active.items())),
            open_tasks=len(app.list_tasks(status="open", limit=100_000)),
            awaiting_approval=len(app.list_remediations(state="awaiting_approval", limit=100_000)),
        )
    finally:
        app.close()


def _history(app: Clampdown, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """A week of made-up history, ending two hours ago; the samples' threats recur in it."""
    now = datetime.now(UTC)
    synthesizer = Synthesizer(
        app.playbooks, PROFILE, seed=seed, now=now, threats=_recurring(), pool=150
    )
    rows = fill(
        app.db,
        synthesizer,
        count=HISTORY_FINDINGS,
        since=now - timedelta(days=HISTORY_DAYS),
        until=now - timedelta(hours=2),
    )
    return rows, synthesizer.outcomes


def _recurring() -> list[Finding]:
    """The samples' attackers (alerts with an IP, except the protected uptime monitor)."""
    protected = ip_network(workspace.PROTECTED)
    seen: dict[str, Finding] = {}
    for _, payload in sample_payloads():
        for finding in normalize(payload):
            if finding.ips and ip_address(finding.ips[0]) not in protected:
                seen.setdefault(finding.fingerprint, finding)
    return list(seen.values())
