"""The playbook test runner: a finding in, the expected plan out, differences at file:line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import sample

from clampdown.playbooks import Playbook, load_playbooks
from clampdown.playbooks.testcases import CaseResult, case_sources, load_cases, run_cases, untested

Write = Callable[[str, str], Path]

PLAYBOOK = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-it}
spec:
  match: {types: [API_AccessFromSuspiciousIP], when: "size(finding.ips) > 0"}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", scope: "*", reason: "${{ finding.title }}"}
      expires: 1h
"""

PAYLOAD = """\
    payload:
      id: alert-1
      type: Microsoft.Security/Locations/alerts
      properties:
        alertType: API_AccessFromSuspiciousIP
        systemAlertId: alert-1
        alertDisplayName: Suspicious IP
        severity: High
        startTimeUtc: 2026-11-20T08:14:02Z
        entities: [{$id: "1", type: ip, address: 203.0.113.77}]
"""


def _case(name: str, expect: str, payload: str = PAYLOAD) -> str:
    return (
        "apiVersion: clampdown/v1\nkind: PlaybookTest\n"
        f"metadata: {{name: {name}}}\nspec:\n  finding:\n{payload}  expect:{expect}"
    )


def _run(write: Write, tests: str, playbooks: str = PLAYBOOK) -> list[CaseResult]:
    folder = write("pb/playbooks.yaml", playbooks).parent
    write("pb/playbooks.test.yaml", tests)
    loaded = load_playbooks([folder / "playbooks.yaml"])
    results: list[CaseResult] = []
    for source in case_sources([folder]):
        cases, broken = load_cases(source)
        results.extend(broken)
        results.extend(run_cases(cases, loaded))
    return results


GOOD = """
    - playbook: block-it
      mode: automatic
      steps:
        - id: block
          uses: gateway.block
          expires: 1h
          runs: true
          with: {ip: 203.0.113.77, scope: "*"}
          contains: {kind: block, subject: 203.0.113.77}
"""


def test_a_matching_plan_passes(write: Write) -> None:
    [result] = _run(write, _case("blocks", GOOD))
    assert result.passed, [str(d) for d in result.differences]
    assert result.name == "blocks"
    assert result.path.endswith("playbooks.test.yaml")
    assert result.line == 1


def test_a_differing_parameter_is_reported_at_its_line(write: Write) -> None:
    tests = _case("blocks", GOOD.replace("ip: 203.0.113.77, ", "ip: 203.0.113.7, "))
    [result] = _run(write, tests)
    assert not result.passed
    [difference] = result.differences
    line = tests.splitlines().index('          with: {ip: 203.0.113.7, scope: "*"}') + 1
    assert (difference.line, difference.where) == (line, "expect[0].steps[0].with.ip")
    assert difference.diff() == ['- "203.0.113.7"', '+ "203.0.113.77"']
    assert str(difference).startswith(f"{result.path}:{line}: expect[0].steps[0].with.ip: ")


def test_differing_matches_are_shown_as_a_diff(write: Write) -> None:
    tests = _case("blocks", "\n    - playbook: throttle-it\n")
    [result] = _run(write, tests)
    [difference] = result.differences
    assert difference.where == "expect"
    assert difference.line == 16
    assert difference.diff() == ["- throttle-it", "+ block-it"]


def test_expect_nothing(write: Write) -> None:
    other = PAYLOAD.replace("API_AccessFromSuspiciousIP", "API_SpikeInLatency")
    tests = "---\n".join([_case("quiet", " nothing\n", payload=other), _case("loud", " nothing\n")])
    quiet, loud = _run(write, tests)
    assert quiet.passed
    assert not loud.passed
    assert loud.differences[0].diff() == ["+ block-it"]


def test_only_the_fields_given_are_checked_but_all_steps_must_be_listed(write: Write) -> None:
    brief = "\n    - playbook: block-it\n      steps: [{uses: gateway.block}]\n"
    [result] = _run(write, _case("brief", brief))
    assert result.passed
    playbooks = PLAYBOOK + (
        "    - id: note\n      uses: task.create\n      with: {target: builtin, title: t}\n"
    )
    [longer] = _run(write, _case("brief", brief), playbooks)
    [difference] = longer.differences
    assert difference.message == "the playbook has 2 step(s), the case lists 1"
    assert difference.actual == ["block", "note"]


def test_mode_expiry_and_containment_are_compared(write: Write) -> None:
    wrong = GOOD.replace("mode: automatic", "mode: approval").replace("1h", "2h")
    wrong = wrong.replace("kind: block", "kind: throttle")
    [result] = _run(write, _case("blocks", wrong))
    found = {d.where: (d.expected, d.actual) for d in result.differences}
    assert found == {
        "expect[0].mode": ("approval", "automatic"),
        "expect[0].steps[0].expires": ("2h", "1h"),
        "expect[0].steps[0].contains.kind": ("throttle", "block"),
    }


def test_a_step_that_would_fail_fails_the_case_unless_expected(write: Write) -> None:
    bad = PLAYBOOK.replace('ip: "${{ finding.ip }}"', 'ip: "${{ finding.title }}"')
    [result] = _run(write, _case("blocks", "\n    - playbook: block-it\n"), bad)
    [difference] = result.differences
    assert "step block would fail: parameters: ip:" in difference.message
    expected = "\n    - playbook: block-it\n      steps: [{id: block, problem: 'ip:'}]\n"
    [result] = _run(write, _case("blocks", expected), bad)
    assert result.passed


def test_a_finding_file_next_to_the_test(write: Write) -> None:
    write("pb/alert.json", json.dumps(sample("defender-rest-suspicious-ip.json")))
    tests = _case("from-file", GOOD, payload="    file: alert.json\n")
    [result] = _run(write, tests)
    assert result.passed, [str(d) for d in result.differences]


def test_a_batch_needs_an_index(write: Write) -> None:
    write("pb/batch.json", json.dumps(sample("defender-eventhub-batch.json")))
    tests = _case("batch", " nothing\n", payload="    file: batch.json\n")
    [result] = _run(write, tests)
    [difference] = result.differences
    assert difference.line == 5
    assert "holds 2 findings" in difference.message
    indexed = _case("batch", " nothing\n", payload="    file: batch.json\n    index: 1\n")
    [result] = _run(write, indexed)
    assert result.passed


def test_an_unknown_field_is_located(write: Write) -> None:
    tests = _case("typo", GOOD.replace("      mode:", "      mdoe:"))
    [result] = _run(write, tests)
    [difference] = result.differences
    assert (difference.line, difference.where, difference.message) == (
        18,
        "expect[0].mdoe",
        "unknown field",
    )


def test_broken_yaml_is_one_failed_result(write: Write) -> None:
    [result] = _run(write, "kind: [PlaybookTest\n")
    assert not result.passed
    assert "not valid YAML" in result.differences[0].message


def test_untested_playbooks_are_listed(write: Write) -> None:
    folder = write("pb/playbooks.yaml", PLAYBOOK).parent
    write("pb/playbooks.test.yaml", _case("blocks", GOOD))
    [source] = case_sources([folder])
    cases, _ = load_cases(source)
    other: list[Playbook] = load_playbooks(
        [write("other.yaml", PLAYBOOK.replace("block-it", "other"))]
    )
    assert untested([*load_playbooks([folder]), *other], cases) == ["other"]


LADDER = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-it}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  ladder: {key: "${{ finding.ip }}", decay: 1d, rungs: [observe, block]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      if: ladder.rung == "block"
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def test_offense_picks_the_ladder_rung(write: Write) -> None:
    first = "\n    - playbook: block-it\n      rung: observe\n      steps: [{runs: false}]\n"
    third = "\n    - playbook: block-it\n      rung: block\n      steps: [{runs: true}]\n"
    tests = "---\n".join(
        [
            _case("first", first),
            _case("third", third).replace("  expect:", "  offense: 3\n  expect:"),
        ]
    )
    results = _run(write, tests, LADDER)
    assert [r.passed for r in results] == [True, True], [
        str(d) for r in results for d in r.differences
    ]
    wrong = _case("wrong", first).replace("  expect:", "  offense: 2\n  expect:")
    [result] = _run(write, wrong, LADDER)
    assert {d.where: (d.expected, d.actual) for d in result.differences} == {
        "expect[0].rung": ("observe", "block"),
        "expect[0].steps[0].runs": (False, True),
    }
