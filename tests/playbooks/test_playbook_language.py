"""Language features: step options, step outputs, references between steps, exclusive
playbooks and priorities."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from clampdown.errors import PlaybookError
from clampdown.model import Finding, Severity
from clampdown.playbooks import Matcher, Playbook, load_playbooks
from clampdown.playbooks.matcher import select
from clampdown.playbooks.schema import OnFailure

Write = Callable[[str, str], Path]
Yaml = Callable[..., str]
MakeFinding = Callable[..., Finding]

OPTIONS = """\
- id: block
  uses: gateway.block
  with: {target: builtin, ip: "${{ finding.ip }}"}
  expires: 1h
  retries: 2
  timeout: 45s
- id: tell
  uses: task.create
  if: steps.block.status == "failed"
  with: {target: builtin, title: "Block of ${{ finding.ip }} failed"}
  on_failure: continue
- id: note
  uses: task.create
  with:
    target: builtin
    title: "Containment ${{ steps.block.output.containment_id }}"
  on_failure: undo_previous
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path])
    return [p.removeprefix(f"{path}:") for p in caught.value.problems]


def test_step_options_are_read(write: Write, playbook_yaml: Yaml) -> None:
    [playbook] = load_playbooks([write("pb.yaml", playbook_yaml(steps=OPTIONS))])
    block, tell, note = playbook.steps
    assert (block.retries, block.timeout, block.on_failure) == (
        2,
        timedelta(seconds=45),
        OnFailure.STOP,
    )
    assert (tell.retries, tell.timeout, tell.on_failure) == (None, None, OnFailure.CONTINUE)
    assert note.on_failure is OnFailure.UNDO_PREVIOUS
    assert block.as_spec() == {
        "uses": "gateway.block",
        "with": {"target": "builtin", "ip": "${{ finding.ip }}"},
        "if": None,
        "expires": 3600.0,
        "retries": 2,
        "timeout": 45.0,
        "on_failure": "stop",
        "vars": {},
    }
    assert tell.as_spec()["if"] == 'steps.block.status == "failed"'


def test_a_later_step_reads_an_earlier_ones_output(
    write: Write, playbook_yaml: Yaml, finding: Finding
) -> None:
    [playbook] = load_playbooks([write("pb.yaml", playbook_yaml(steps=OPTIONS))])
    _, tell, note = playbook.steps
    done = {"block": {"status": "succeeded", "output": {"containment_id": "c-42"}}}
    context = playbook.context(finding, done)
    assert not tell.should_run(context)
    assert note.render(context)["title"] == "Containment c-42"
    failed = playbook.context(finding, {"block": {"status": "failed", "output": {}}})
    assert tell.should_run(failed)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("retries: -1", "retries: Input should be greater than or equal to 0"),
        ("retries: '2'", "retries: Input should be a valid integer"),
        ("retries: 100", "retries: Input should be less than or equal to 99"),
        ("timeout: 0", "timeout: must be longer than zero"),
        ("timeout: soon", "timeout: not a duration: 'soon'"),
        (
            "on_failure: ignore",
            "on_failure: Input should be 'stop', 'continue' or 'undo_previous'",
        ),
    ],
)
def test_bad_step_options(write: Write, playbook_yaml: Yaml, option: str, message: str) -> None:
    steps = f"- id: t\n  uses: task.create\n  with: {{target: builtin, title: x}}\n  {option}\n"
    [problem] = problems(write("pb.yaml", playbook_yaml(steps=steps)))
    assert problem.startswith(f"13: playbook pb, step t: {message}")


def test_steps_read_only_earlier_steps(write: Write, playbook_yaml: Yaml) -> None:
    steps = """\
- id: first
  uses: task.create
  with: {target: builtin, title: "${{ steps.second.output.id }}"}
- id: second
  uses: task.create
  if: steps.frist.status == "succeeded"
  with: {target: builtin, title: 'not ${{ "steps.second" }} and see steps.x'}
"""
    assert problems(write("pb.yaml", playbook_yaml(steps=steps))) == [
        "12: playbook pb, step first: with.title: reads steps.second, a later step"
        " (a step sees only the steps before it)",
        "15: playbook pb, step second: if: reads steps.frist, but no step has that id"
        " (did you mean 'first'?)",
    ]


def test_exclusive_must_be_a_boolean(write: Write, playbook_yaml: Yaml) -> None:
    text = playbook_yaml().replace("  priority: 0", "  priority: 0\n  exclusive: 'yes'")
    assert problems(write("pb.yaml", text)) == [
        "6: playbook pb: spec.exclusive: Input should be a valid boolean"
    ]


# Priorities and exclusive playbooks ----------------------------------------------------------


@pytest.fixture
def load(write: Write, playbook_yaml: Yaml) -> Callable[..., list[Playbook]]:
    """Playbooks given as name -> (priority, exclusive, match body)."""

    def load(**specs: tuple[int, bool, str]) -> list[Playbook]:
        documents = []
        for name, (priority, exclusive, match) in specs.items():
            text = playbook_yaml(name, match=match, priority=priority)
            if exclusive:
                text = text.replace("  priority:", "  exclusive: true\n  priority:")
            documents.append(text)
        return load_playbooks([write("pbs.yaml", "---\n".join(documents))])

    return load


def test_an_exclusive_match_keeps_lower_priorities_out(
    load: Callable[..., list[Playbook]], make_finding: MakeFinding
) -> None:
    playbooks = load(
        top=(20, False, "types: ['*']"),
        only=(10, True, "severity: '>= high'"),
        peer=(10, False, "types: ['*']"),
        low=(0, False, "types: ['*']"),
        lower=(-5, True, "types: ['*']"),
    )
    matcher = Matcher(playbooks)
    high = make_finding(severity=Severity.HIGH)
    result = matcher.evaluate(high)
    assert [p.name for p in result.playbooks] == ["top", "only", "peer"]
    assert [p.name for p in result.exclusive] == ["only"]
    # The exclusive one does not match a medium finding: the lower ones run.
    medium = make_finding(severity=Severity.MEDIUM)
    assert [p.name for p in matcher.match(medium)] == ["top", "peer", "low", "lower"]
    assert [p.name for p in matcher.evaluate(medium).exclusive] == ["lower"]


def test_select_is_what_the_matcher_does(
    load: Callable[..., list[Playbook]], make_finding: MakeFinding
) -> None:
    playbooks = load(
        a=(5, False, "types: ['*']"),
        b=(3, True, "types: ['*']"),
        c=(3, True, "types: ['*']"),
        d=(1, False, "types: ['*']"),
    )
    everything = sorted(playbooks, key=lambda p: (-p.priority, p.name))
    assert [p.name for p in select(everything)] == ["a", "b", "c"]
    assert Matcher(playbooks).match(make_finding()) == select(everything)
    assert select([]) == []
    assert select(everything[-1:]) == everything[-1:]
