"""Response ladders: repeat offenders climb, others start low, quiet ones start over."""

from __future__ import annotations

import time

from clampdown.engine.decisions import Request
from clampdown.model import Decision
from clampdown.services import Clampdown
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

LADDER = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: ladder}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  ladder:
    key: "${{ finding.ip }}"
    decay: {decay}
    rungs: [observe, throttle, block]
  steps:
    - id: throttle
      uses: gateway.throttle
      if: ladder.rung == "throttle"
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 10, period: 60}
      expires: 1h
    - id: block
      uses: gateway.block
      if: ladder.rung == "block"
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "offense ${{ ladder.offenses }}"}
      expires: 1h
"""

_seen = iter(range(1000))


def _offend(app: Clampdown, ip: str) -> dict[str, object]:
    [result] = app.ingest(suspicious_ip_alert(next(_seen), ip))
    drain(app)
    return app.get_remediation(result.remediations[0].remediation_id)


def _ran(rem: dict[str, object]) -> list[str]:
    steps = rem["steps"]
    assert isinstance(steps, list)
    return [s["key"] for s in steps if s["state"] == "succeeded"]


def test_repeat_offenders_climb_and_stay_on_the_top_rung(make_app: AppFactory) -> None:
    app = make_app(LADDER.replace("{decay}", "1h"))
    ip = "198.51.100.9"
    assert _ran(_offend(app, ip)) == []  # observe
    assert _ran(_offend(app, ip)) == ["throttle"]
    assert app.decide(Request(ip=ip)).decision is not Decision.DENY
    third = _offend(app, ip)
    assert _ran(third) == ["block"]
    assert app.decide(Request(ip=ip)).decision is Decision.DENY
    assert _ran(_offend(app, ip)) == ["block"]
    planned = third["history"][0]  # type: ignore[index]
    assert planned["reason"].endswith(  # type: ignore[index]
        "; ladder rung block (offense 3 of '198.51.100.9')"
    )
    # Another address starts at the bottom.
    assert _ran(_offend(app, "198.51.100.10")) == []


def test_the_ladder_resets_after_the_decay(make_app: AppFactory) -> None:
    app = make_app(LADDER.replace("{decay}", "1s"))
    ip = "198.51.100.11"
    _offend(app, ip)
    assert _ran(_offend(app, ip)) == ["throttle"]
    time.sleep(1.2)
    assert _ran(_offend(app, ip)) == []
    assert _ran(_offend(app, ip)) == ["throttle"]
