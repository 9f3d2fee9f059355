"""lint: every problem as a located Problem, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clampdown.actions.contract import Action
from clampdown.playbooks import Problem, lint
from clampdown.targets.settings import TargetConfig

Write = Callable[[str, str], Path]
Yaml = Callable[..., str]
Actions = dict[str, type[Action]]
Targets = dict[str, TargetConfig]


@pytest.fixture
def run(actions: Actions, targets: Targets) -> Callable[[Path], list[str]]:
    """Lint one path with the fake catalog; problems as strings without the path."""

    def run(path: Path) -> list[str]:
        found = lint([path], actions=actions, targets=targets)
        assert all(p.path == str(path) for p in found)
        return [str(p).removeprefix(f"{path}:") for p in found]

    return run


def test_problem_text() -> None:
    problem = Problem("a.yaml", 3, "warning", "something", "do this")
    assert str(problem) == "a.yaml:3: warning: something (do this)"
    assert str(Problem("a.yaml", 3, "error", "bad")) == "a.yaml:3: error: bad"


def test_clean_playbook_has_no_problems(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    assert run(write("ok.yaml", playbook_yaml())) == []


def test_loader_problems_are_errors(write: Write, run: Callable[[Path], list[str]]) -> None:
    path = write(
        "bad.yaml",
        """\
        apiVersion: clampdown/v1
        kind: Playbook
        metadata: {name: bad}
        spec:
          match: {when: "size(finding.ips) >"}
          mode: automatic
          steps: []
        """,
    )
    assert run(path) == [
        "5: error: playbook bad: spec.match.when: Syntax error: mismatched input '<EOF>'"
        " (at 1:20 of 'size(finding.ips) >')",
        "7: error: playbook bad: spec.steps: List should have at least 1 item after validation,"
        " not 0",
    ]


def test_actions_targets_and_params(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: typo
  uses: gateway.blok
  with: {target: builtin}
- id: nowhere
  uses: task.create
  with: {target: apim-prod, title: x}
- id: wrong-type
  uses: task.create
  with: {target: hook, title: x}
- id: params
  uses: gateway.throttle
  with:
    target: builtin
    ipp: "${{ finding.ip }}"
    rate: fast
  expires: 1h
- id: subjects
  uses: gateway.block
  with: {target: builtin, ip: 1.2.3.4, user: bob}
  expires: 1h
- id: templated
  uses: gateway.block
  with: {target: "${{ 'builtin' }}", ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
  expires: 1h
"""
    path = write("pb.yaml", playbook_yaml("p", steps=steps))
    assert run(path) == [
        "11: error: playbook p, step typo: unknown action 'gateway.blok'"
        " (did you mean 'gateway.block'?)",
        "15: error: playbook p, step nowhere: unknown target 'apim-prod'"
        " (configured targets: builtin, hook)",
        "18: error: playbook p, step wrong-type: task.create cannot use target 'hook' of type"
        " webhook (task.create works with: builtin)",
        "23: error: playbook p, step params: gateway.throttle has no parameter 'ipp'"
        " (did you mean 'ip'?)",
        "24: error: playbook p, step params: with.rate: Input should be a valid integer,"
        " unable to parse string as an integer",
        "28: error: playbook p, step subjects: give exactly one subject:"
        " ip, cidr, api_key, subscription, client_id, user",
    ]


def test_missing_required_parameter(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = "- id: t\n  uses: task.create\n  with: {why: x}\n"
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        "12: error: playbook p, step t: task.create needs parameter 'target'",
        "12: error: playbook p, step t: task.create needs parameter 'title'",
    ]


def test_containment_without_approval_must_expire(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: block
  uses: gateway.block
  with: {target: builtin, ip: "${{ finding.ip }}"}
- id: revoke
  uses: credential.revoke
  with: {target: builtin, api_key: "${{ finding.credentials[0] }}"}
  expires: 1h
"""
    found = run(write("auto.yaml", playbook_yaml("p", steps=steps)))
    assert found == [
        "10: error: playbook p, step block: expires: gateway.block runs without approval,"
        " so it must expire: add `expires`, or use mode: approval",
    ]
    assert run(write("approval.yaml", playbook_yaml("q", steps=steps, mode="approval"))) == [
        "16: warning: playbook q, step revoke: expires has no effect:"
        " credential.revoke cannot be undone"
    ]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("types: []", "7: error: playbook p: never matches: types is empty (remove it for '*')"),
        ("kinds: []", "7: error: playbook p: never matches: kinds is empty (remove it)"),
        ("sources: []", "7: error: playbook p: never matches: sources is empty (remove it)"),
        (
            "severity: '> critical'",
            "7: error: playbook p: never matches: no severity is > critical",
        ),
        (
            "severity: '< informational'",
            "7: error: playbook p: never matches: no severity is < informational",
        ),
        ("when: 'false'", "7: warning: playbook p: never matches: `when` is always false"),
        ("when: false", "7: warning: playbook p: never matches: `when` is always false"),
        ("when: '1 > 2 || false'", "7: warning: playbook p: never matches: `when` is always false"),
    ],
)
def test_playbooks_that_can_never_match(
    write: Write,
    playbook_yaml: Yaml,
    run: Callable[[Path], list[str]],
    match: str,
    expected: str,
) -> None:
    assert run(write("pb.yaml", playbook_yaml("p", match=match))) == [expected]


def test_step_conditions_and_references(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: first
  uses: task.create
  if: steps.later.status == "succeeded"
  with: {target: builtin, title: x}
- id: later
  uses: task.create
  if: "false"
  with: {target: builtin, title: '${{ steps["first"].output.id }} ${{ steps.ghost.status }}'}
"""
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        "10: warning: playbook p, step first: refers to steps.later, which is not an earlier step"
        " (a step sees only the steps before it)",
        "14: warning: playbook p, step later: refers to steps.ghost, which is not an earlier step"
        " (a step sees only the steps before it)",
        "16: warning: playbook p, step later: never runs: `if` is always false",
    ]


def test_duplicate_names(
    write: Write, playbook_yaml: Yaml, actions: Actions, targets: Targets
) -> None:
    first = write("a.yaml", playbook_yaml("same"))
    second = write("b.yaml", playbook_yaml("same"))
    found = lint([first, second], actions=actions, targets=targets)
    assert [str(p) for p in found] == [
        f"{second}:3: error: playbook same: duplicate playbook name, also at {first}:3"
        " (names are unique across all files and the default pack)"
    ]


def test_sorted_by_file_and_line(
    write: Write, playbook_yaml: Yaml, actions: Actions, targets: Targets
) -> None:
    write("d/b.yaml", playbook_yaml("b", match="types: []"))
    path = write("d/a.yaml", playbook_yaml("a", match="kinds: []", mode="bad"))
    found = lint([path.parent], actions=actions, targets=targets)
    assert [(Path(p.path).name, p.line) for p in found] == [("a.yaml", 8), ("b.yaml", 7)]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300) | st.sampled_from(["- [", "a: &x [*x]", "{", "---\n---\n"]))
def test_lint_never_raises(tmp_path: Path, actions: Actions, targets: Targets, text: str) -> None:
    path = tmp_path / "any.yaml"
    path.write_text(text, encoding="utf-8", errors="replace")
    for problem in lint([path], actions=actions, targets=targets):
        assert problem.path == str(path)
        assert problem.line >= 1
