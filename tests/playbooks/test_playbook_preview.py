"""The pure preview: which playbooks match, and each step as it would be called."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tests.playbooks.conftest import API_ID

from clampdown.model import Finding, Mode
from clampdown.playbooks import Playbook, load_playbooks
from clampdown.playbooks.preview import ContainmentPreview, preview

MakeFinding = Callable[..., Finding]
Write = Callable[[str, str], Path]


def _load(write: Write, text: str) -> list[Playbook]:
    return load_playbooks([write("playbooks.yaml", text)])


STEPS = """\
- id: block
  uses: gateway.block
  with: {target: builtin, ip: "${{ finding.ip }}", scope: "${{ finding.api.id }}", reason: x}
  expires: 1h
- id: tell
  uses: task.create
  if: steps.block.status == "succeeded"
  with:
    target: builtin
    title: "Blocked ${{ finding.ip }} as ${{ steps.block.output.containment_id }}"
    steps: ["check ${{ finding.ip }}", "${{ steps.block.output.containment_id }}"]
"""


def test_parameters_are_rendered_as_the_playbook_renders_them(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    [playbook] = _load(write, playbook_yaml(steps=STEPS))
    [planned] = preview(finding, [playbook]).playbooks
    block = planned.steps[0]
    assert block.params == playbook.steps[0].render(playbook.context(finding))
    assert block.params == {
        "target": "builtin",
        "ip": "203.0.113.7",
        "scope": API_ID,
        "reason": "x",
    }
    assert block.unknown == ()
    assert block.runs is True
    assert block.expires == timedelta(hours=1)
    assert block.target == "builtin"
    assert block.problem == ""


def test_values_from_earlier_steps_stay_templates_and_are_marked(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    [playbook] = _load(write, playbook_yaml(steps=STEPS))
    tell = preview(finding, [playbook]).playbooks[0].steps[1]
    assert tell.params["title"] == (
        "Blocked ${{ finding.ip }} as ${{ steps.block.output.containment_id }}"
    )
    assert tell.params["steps"] == [
        "check 203.0.113.7",
        "${{ steps.block.output.containment_id }}",
    ]
    assert tell.unknown == ("title", "steps[1]")
    # `if` reads an earlier step's status: unknown before the run.
    assert tell.runs is None
    assert tell.condition == 'steps.block.status == "succeeded"'
    assert tell.containment is None


def test_an_if_on_the_finding_is_evaluated(
    write: Write, playbook_yaml: Callable[..., str], make_finding: MakeFinding
) -> None:
    steps = STEPS.replace("  expires: 1h\n", "  expires: 1h\n  if: finding.severity_rank >= 4\n", 1)
    [playbook] = _load(write, playbook_yaml(steps=steps))
    block = preview(make_finding(), [playbook]).playbooks[0].steps[0]
    assert block.runs is False
    critical = preview(make_finding(severity="critical"), [playbook]).playbooks[0].steps[0]
    assert critical.runs is True


def test_containments_say_what_they_would_hold(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    steps = """\
- id: slow
  uses: gateway.throttle
  with: {target: builtin, ip: "${{ finding.ip }}", rate: 10, period: 1m}
  expires: 30m
- id: shut
  uses: gateway.disable_endpoint
  with: {target: builtin, endpoint: "${{ finding.api.id }}"}
  expires: 1d
"""
    [playbook] = _load(write, playbook_yaml(steps=steps))
    [planned] = preview(finding, [playbook]).playbooks
    assert planned.containments == [
        ContainmentPreview("throttle", "ip", "203.0.113.7", "*", 10, 60),
        ContainmentPreview("disable", "endpoint", API_ID, API_ID),
    ]


def test_parameters_the_action_would_refuse_are_reported(
    write: Write, playbook_yaml: Callable[..., str], make_finding: MakeFinding
) -> None:
    [playbook] = _load(write, playbook_yaml(steps=STEPS))
    no_ip = preview(make_finding(ips=[]), [playbook]).playbooks[0].steps[0]
    assert no_ip.problem.startswith("parameters: ip: ")
    assert "does not appear to be an IPv4 or IPv6 address" in no_ip.problem
    # Nothing can be said about what it would contain.
    assert no_ip.containment == ContainmentPreview("block")


def test_matches_come_in_the_planner_s_order_with_their_mode(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    text = "---\n".join(
        [
            playbook_yaml("low", priority=-1),
            playbook_yaml("high", priority=5, mode="approval"),
            playbook_yaml("also-high", priority=5),
            playbook_yaml("other", match="types: [API_Spike*]"),
        ]
    )
    plan = preview(finding, _load(write, text))
    assert [(p.name, p.mode) for p in plan.playbooks] == [
        ("also-high", Mode.AUTOMATIC),
        ("high", Mode.APPROVAL),
        ("low", Mode.AUTOMATIC),
    ]
    assert [p.needs_approval for p in plan.playbooks] == [False, True, False]


def test_a_failing_when_is_reported_not_matched(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    text = playbook_yaml("strict", match="when: finding.properties.port == '1'")
    plan = preview(finding, _load(write, text))
    assert plan.playbooks == ()
    [(name, message)] = plan.errors
    assert name == "strict"
    assert "port" in message


def test_group_key_is_the_planner_s_with_its_fallback(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    text = playbook_yaml("grouped").replace(
        "  mode:", '  group: {by: "${{ finding.properties.x }}", window: 1h}\n  mode:'
    )
    [planned] = preview(finding, _load(write, text)).playbooks
    assert planned.group_key == finding.fingerprint
    assert planned.problem.startswith("group.by:")
    assert planned.as_json()["group_window"] == "1h"


def test_json_form_is_plain_data(
    write: Write, playbook_yaml: Callable[..., str], finding: Finding
) -> None:
    [playbook] = _load(write, playbook_yaml(steps=STEPS))
    data = preview(finding, [playbook]).as_json()
    [planned] = data["playbooks"]
    assert planned["playbook"] == "pb"
    assert planned["steps"][0]["containment"]["subject"] == "203.0.113.7"
    assert planned["steps"][0]["expires"] == "1h"
    assert planned["steps"][1]["runs"] is None
    assert data["finding"]["type"] == "API_AccessFromSuspiciousIP"


LADDER = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: ladder}
spec:
  match: {types: ["*"]}
  ladder: {key: "${{ finding.ip }}", decay: 1d, rungs: [observe, block]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      if: ladder.rung == "block"
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ ladder.rung }}"}
      expires: 1h
"""


def test_a_ladder_is_previewed_at_the_rung_its_history_gives(
    write: Write, finding: Finding, make_finding: MakeFinding
) -> None:
    playbooks = _load(write, LADDER)
    [first] = preview(finding, playbooks).playbooks
    assert first.ladder == {"key": "203.0.113.7", "level": 0, "rung": "observe", "offenses": 1}
    assert first.steps[0].runs is False
    [again] = preview(finding, playbooks, climb=lambda playbook, key: (1, 2)).playbooks
    assert again.ladder is not None
    assert again.ladder["rung"] == "block"
    assert again.steps[0].runs is True
    assert again.steps[0].params["reason"] == "block"
    # Nobody to keep a history for: the first rung, whatever the history.
    [anonymous] = preview(make_finding(ips=[]), playbooks, climb=lambda p, k: (1, 2)).playbooks
    assert anonymous.ladder == {"key": "", "level": 0, "rung": "observe", "offenses": 1}
