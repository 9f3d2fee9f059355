"""lint: every problem as a located Problem, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clampdown.actions.contract import Action, Params
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


def test_step_references_must_be_earlier_steps(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: first
  uses: task.create
  if: steps.later.status == "succeeded"
  with: {target: builtin, title: x}
- id: later
  uses: task.create
  with: {target: builtin, title: '${{ steps["first"].output.id }} ${{ steps.ghost.status }}'}
"""
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        "12: error: playbook p, step first: if: reads steps.later, a later step"
        " (a step sees only the steps before it)",
        "16: error: playbook p, step later: with.title: reads steps.ghost, but no step has that"
        " id (earlier steps: first)",
    ]


def test_a_step_that_never_runs(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: first
  uses: task.create
  if: "false"
  with: {target: builtin, title: x}
"""
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        "12: warning: playbook p, step first: never runs: `if` is always false",
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


# Checks of the language: template types, safety, shadowing, Defender types -----------------


class _UserParams(Params):
    user: str


def _fake(name: str, *, reversible: bool) -> type[Action]:
    attrs = {"name": name, "summary": name, "target_types": ("builtin",), "params": _UserParams}
    return type(name.replace(".", "_"), (Action,), {**attrs, "reversible": reversible})


@pytest.fixture
def more(actions: Actions, targets: Targets) -> Callable[[Path], list[str]]:
    """Lint with identity actions added to the fake catalog."""
    catalog = {
        **actions,
        "identity.disable": _fake("identity.disable", reversible=True),
        "identity.revoke_sessions": _fake("identity.revoke_sessions", reversible=False),
    }

    def run(path: Path) -> list[str]:
        found = lint([path.parent], actions=catalog, targets=targets)
        return [str(p).removeprefix(f"{path.parent}/") for p in found]

    return run


def test_templates_whose_type_the_parameter_refuses(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: slow
  uses: gateway.throttle
  with:
    target: builtin
    ip: "${{ finding.ips }}"
    rate: "${{ finding.title }}"
    reason: "${{ finding.severity_rank }}"
  expires: 1h
- id: task
  uses: task.create
  with:
    target: builtin
    title: "${{ finding.properties['missing'] }}"
    steps: "${{ finding.ip }}"
    links: ["${{ finding.url }}", "${{ steps.slow.output.id }}"]
    owner: "rank ${{ finding.severity_rank }}"
"""
    hint = "(a value that is exactly one ${{ }} keeps its type; text around it makes text)"
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        f"14: error: playbook p, step slow: with.ip: Input should be a valid string, but the"
        f" template gives a list {hint}",
        f"16: error: playbook p, step slow: with.reason: Input should be a valid string, but the"
        f" template gives a number {hint}",
        f"23: error: playbook p, step task: with.steps: Input should be a valid list, but the"
        f" template gives text {hint}",
    ]


def test_vars_are_type_checked_in_templates(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    variables = (
        "apiVersion: clampdown/v1\nkind: Variables\nmetadata: {name: v}\n"
        "spec: {vars: {rate: [60], why: {a: 1}}}\n---\n"
    )
    steps = """\
- id: task
  uses: task.create
  with: {target: builtin, title: "${{ vars.rate }}", why: "${{ vars.why }}"}
"""
    found = run(write("pb.yaml", variables + playbook_yaml("p", steps=steps)))
    assert [f.split(" (")[0] for f in found] == [
        "17: error: playbook p, step task: with.title: Input should be a valid string, but the"
        " template gives a list",
        "17: error: playbook p, step task: with.why: Input should be a valid string, but the"
        " template gives a map",
    ]


def test_disruptive_steps_without_expiry_or_approval(
    write: Write, playbook_yaml: Yaml, more: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: disable
  uses: identity.disable
  with: {target: builtin, user: "${{ finding.users[0] }}"}
- id: kick
  uses: identity.revoke_sessions
  with: {target: builtin, user: "${{ finding.users[0] }}"}
- id: timed
  uses: identity.disable
  with: {target: builtin, user: "${{ finding.users[0] }}"}
  expires: 1h
"""
    assert more(write("a/auto.yaml", playbook_yaml("p", steps=steps))) == [
        "auto.yaml:10: error: playbook p, step disable: identity.disable runs without approval"
        " and never expires (add `expires`, or use mode: approval)",
        "auto.yaml:14: warning: playbook p, step kick: identity.revoke_sessions cannot be undone"
        " and runs without approval (use mode: approval unless an unreviewed permanent effect is"
        " intended)",
    ]
    assert more(write("b/ok.yaml", playbook_yaml("q", steps=steps, mode="approval"))) == []


def test_undo_previous_with_nothing_to_undo(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]]
) -> None:
    steps = """\
- id: task
  uses: task.create
  with: {target: builtin, title: x}
- id: block
  uses: gateway.block
  with: {target: builtin, ip: "${{ finding.ip }}"}
  expires: 1h
  on_failure: undo_previous
- id: again
  uses: task.create
  with: {target: builtin, title: y}
  on_failure: undo_previous
"""
    assert run(write("pb.yaml", playbook_yaml("p", steps=steps))) == [
        "17: warning: playbook p, step block: on_failure: undo_previous has nothing to undo:"
        " no earlier step can be undone (use stop, the default)",
    ]


def test_playbooks_shadowed_by_an_exclusive_one(
    write: Write, playbook_yaml: Yaml, actions: Actions, targets: Targets
) -> None:
    def exclusive(text: str) -> str:
        return text.replace("  priority:", "  exclusive: true\n  priority:")

    documents = [
        exclusive(playbook_yaml("all-api", match="types: ['API_*']\nkinds: [alert]", priority=10)),
        playbook_yaml("spike", match="types: [API_SpikeInAPITraffic]\nkinds: [alert]"),
        playbook_yaml("peer", match="types: ['API_*']", priority=10),
        playbook_yaml("any-kind", match="types: [API_SpikeInAPITraffic]"),
        playbook_yaml("narrowed", match="types: ['API_Spike*']\nkinds: [alert]\nwhen: 'true'"),
        exclusive(
            playbook_yaml("ip-only", match="types: ['*']\nwhen: finding.ip != ''", priority=5)
        ),
        playbook_yaml("same-when", match="types: [X]\nwhen: finding.ip  != ''", priority=1),
        playbook_yaml("other-when", match="types: [X]\nwhen: finding.ip == ''", priority=1),
    ]
    path = write("pbs.yaml", "---\n".join(documents))
    found = [str(p) for p in lint([path], actions=actions, targets=targets)]
    prefix = f"{path}:"
    shadowed = [f.removeprefix(prefix) for f in found if "never runs" in f]
    assert shadowed == [
        f"22: warning: playbook spike: never runs: the exclusive playbook all-api (priority 10,"
        f" {path}:3) matches every finding it does (give it a priority above 10, or narrow"
        f" all-api)",
        "68: warning: playbook narrowed: never runs: the exclusive playbook all-api (priority 10,"
        f" {path}:3) matches every finding it does (give it a priority above 10, or narrow"
        " all-api)",
        "102: warning: playbook same-when: never runs: the exclusive playbook ip-only (priority 5,"
        f" {path}:83) matches every finding it does (give it a priority above 5, or narrow"
        " ip-only)",
    ]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (
            "types: [API_SpikeInApiTraffic]\nkinds: [alert]",
            "7: warning: playbook p: never matches: no known Defender for APIs alert type matches"
            " API_SpikeInApiTraffic (did you mean 'API_SpikeInAPITraffic'?)",
        ),
        (
            "types: [Custom]\nkinds: alert\nsources: defender",
            "7: warning: playbook p: never matches: no known Defender for APIs alert type matches"
            " Custom (a type Defender may add later is fine)",
        ),
        (
            "types: ['API_*']\nkinds: [recommendation]",
            "7: warning: playbook p: never matches: API_* types are alerts, and kinds admits only"
            " recommendation",
        ),
        (
            "types: ['Recommendation_*']\nkinds: [alert]",
            "7: warning: playbook p: never matches: Recommendation_* types are recommendations,"
            " and kinds admits only alert",
        ),
        (
            "types: [API_SprayInRequest, 'API_Spike*', Custom]",
            "7: warning: playbook p: 'API_SprayInRequest' matches no known Defender for APIs alert"
            " type (did you mean 'API_SprayInRequests'?)",
        ),
    ],
)
def test_types_defender_never_sends(
    write: Write,
    playbook_yaml: Yaml,
    run: Callable[[Path], list[str]],
    match: str,
    expected: str,
) -> None:
    assert run(write("pb.yaml", playbook_yaml("p", match=match))) == [expected]


@pytest.mark.parametrize(
    "match",
    [
        "types: [Custom]\nkinds: [alert]",
        "types: ['API_Spray*', 'API_Access*']\nkinds: [alert]\nsources: [defender]",
        "types: ['*']\nkinds: [recommendation]\nsources: [defender]",
    ],
)
def test_types_that_can_match(
    write: Write, playbook_yaml: Yaml, run: Callable[[Path], list[str]], match: str
) -> None:
    assert run(write("pb.yaml", playbook_yaml("p", match=match))) == []
