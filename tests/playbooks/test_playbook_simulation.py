"""Replaying findings without acting: grouping, approvals, containments, the safety hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clampdown.model import Finding
from clampdown.playbooks import Playbook, load_playbooks
from clampdown.playbooks.simulation import Contained, Replay, simulate

MakeFinding = Callable[..., Finding]
Write = Callable[[str, str], Path]
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

PLAYBOOKS = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: throttle}
spec:
  match: {types: [API_Spike*]}
  group: {by: "${{ finding.ip }}", window: 1h}
  mode: automatic
  steps:
    - id: slow
      uses: gateway.throttle
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 60}
      expires: 1h
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: retire}
spec:
  match: {types: [Recommendation_UnusedEndpoint]}
  mode: approval
  steps:
    - id: shut
      uses: gateway.disable_endpoint
      with: {target: builtin, endpoint: "${{ finding.api.id }}"}
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: rehearse}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: dry_run
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def _playbooks(write: Write) -> list[Playbook]:
    return load_playbooks([write("playbooks.yaml", PLAYBOOKS)])


def _replay(finding: Finding, minutes: float, n: int) -> Replay:
    return Replay(finding, T0 + timedelta(minutes=minutes), f"finding {n}")


def test_repeats_in_the_group_window_fold_into_one_remediation(
    write: Write, make_finding: MakeFinding
) -> None:
    spike = make_finding(type="API_SpikeInAPITraffic")
    other = make_finding(type="API_SpikeInPayload", ips=["198.51.100.1"])
    replays = [
        _replay(spike, 0, 1),
        _replay(spike, 30, 2),
        _replay(other, 40, 3),
        _replay(spike, 59, 4),
        _replay(spike, 61, 5),  # the window of the first one closed at 60
    ]
    report = simulate(replays, _playbooks(write))
    throttle = report.playbooks["throttle"]
    assert (throttle.matched, throttle.remediations, throttle.grouped) == (5, 3, 2)
    assert throttle.containments == {"throttle": 3}
    assert throttle.subjects == {
        ("throttle", "ip", "203.0.113.7", "*"): 2,
        ("throttle", "ip", "198.51.100.1", "*"): 1,
    }
    assert (report.findings, report.unmatched) == (5, 0)
    assert (report.first, report.last) == (T0, T0 + timedelta(minutes=61))


def test_approval_mode_and_dry_run_contain_nothing_by_themselves(
    write: Write, make_finding: MakeFinding
) -> None:
    unused = make_finding(type="Recommendation_UnusedEndpoint", kind="recommendation", ips=[])
    report = simulate([_replay(unused, 0, 1), _replay(make_finding(), 1, 2)], _playbooks(write))
    retire = report.playbooks["retire"]
    assert (retire.remediations, retire.needs_approval) == (1, 1)
    assert retire.containments == {}
    assert retire.pending == {"disable": 1}
    rehearse = report.playbooks["rehearse"]
    assert (rehearse.remediations, rehearse.needs_approval) == (1, 0)
    assert rehearse.containments == rehearse.pending == {}
    assert report.playbooks["block"].containments == {"block": 1}


def test_the_budget_turns_containments_into_approvals_and_says_where(
    write: Write, make_finding: MakeFinding
) -> None:
    seen: list[Contained] = []

    def two_per_hour(contained: Contained) -> str | None:
        recent = [c for c in seen if c.at > contained.at - timedelta(hours=1)]
        if len(recent) >= 2:
            return "budget: 2 per hour"
        seen.append(contained)
        return None

    replays = [
        _replay(make_finding(source_id=str(n), ips=[f"192.0.2.{n}"]), n * 10, n)
        for n in range(1, 5)
    ] + [_replay(make_finding(source_id="late", ips=["192.0.2.99"]), 120, 99)]
    report = simulate(replays, _playbooks(write), budget=two_per_hour)
    block = report.playbooks["block"]
    assert block.remediations == 5
    assert block.containments == {"block": 3}
    assert block.pending == {"block": 2}
    assert block.needs_approval == 2
    assert [(t.origin, t.reason) for t in block.trips] == [
        ("finding 3", "budget: 2 per hour"),
        ("finding 4", "budget: 2 per hour"),
    ]
    assert [c.subject for c in seen] == ["192.0.2.1", "192.0.2.2", "192.0.2.99"]
    assert report.as_json()["budget_trips"][0]["origin"] == "finding 3"


def test_protected_assets_are_refused_not_contained(
    write: Write, make_finding: MakeFinding
) -> None:
    def protect(action: str, params: Mapping[str, Any]) -> str | None:
        return "ip is protected" if params.get("ip") == "203.0.113.7" else None

    report = simulate([_replay(make_finding(), 0, 1)], _playbooks(write), protected=protect)
    block = report.playbooks["block"]
    assert block.containments == {}
    assert block.refused == {"block: ip is protected": 1}


def test_unmatched_findings_and_progress(write: Write, make_finding: MakeFinding) -> None:
    ticks: list[None] = []
    report = simulate(
        [_replay(make_finding(type="Custom"), 0, 1)],
        _playbooks(write),
        progress=lambda: ticks.append(None),
    )
    assert (report.findings, report.unmatched, report.playbooks) == (1, 1, {})
    assert len(ticks) == 1


LADDER = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: ladder}
spec:
  match: {types: [API_AccessFromTorExitNode]}
  ladder: {key: "${{ finding.ip }}", decay: 1d, rungs: [observe, throttle, block]}
  mode: automatic
  steps:
    - id: slow
      uses: gateway.throttle
      if: ladder.rung == "throttle"
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 60}
      expires: 1h
    - id: block
      uses: gateway.block
      if: ladder.rung == "block"
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def test_the_ladder_climbs_per_identity_and_resets_after_its_decay(
    write: Write, make_finding: MakeFinding
) -> None:
    tor = make_finding(type="API_AccessFromTorExitNode")
    other = make_finding(type="API_AccessFromTorExitNode", ips=["198.51.100.5"])
    hours = [0, 1, 2, 3, 3.5, 30]  # 30 h: more than a day after the last one
    replays = [_replay(tor, h * 60, n) for n, h in enumerate(hours)]
    replays.insert(4, _replay(other, 3 * 60 + 10, 99))
    report = simulate(replays, load_playbooks([write("ladder.yaml", LADDER)]))
    ladder = report.playbooks["ladder"]
    assert ladder.rungs == {"observe": 3, "throttle": 1, "block": 3}
    assert ladder.containments == {"throttle": 1, "block": 3}
    assert ladder.remediations == 7
