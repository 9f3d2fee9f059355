"""Variables documents: values defined once, read by name as `vars.<name>`, checked at load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clampdown.errors import PlaybookError
from clampdown.model import Finding
from clampdown.playbooks import Expression, Matcher, load_playbooks
from clampdown.playbooks.expressions import ExpressionEvaluationError, ip_in
from clampdown.playbooks.loader import load_text

Write = Callable[[str, str], Path]
Yaml = Callable[..., str]
MakeFinding = Callable[..., Finding]

VARIABLES = """\
apiVersion: clampdown/v1
kind: Variables
metadata: {name: shared, owner: secops}
spec:
  vars:
    trusted_ranges: [10.0.0.0/8, "2001:db8::/32"]
    protected_apis: [payments, auth]
    owners_by_api: {orders: orders-team@example.com}
    rate: 30
    strict: true
"""


def problems(paths: list[Path]) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        load_playbooks(paths)
    return [p.removeprefix(f"{paths[0].parent}/") for p in caught.value.problems]


def test_vars_are_read_in_when_group_if_and_with(
    write: Write, playbook_yaml: Yaml, make_finding: MakeFinding
) -> None:
    write("d/vars.yaml", VARIABLES)
    steps = """\
- id: task
  uses: task.create
  if: vars.strict && !(finding.api.api in vars.protected_apis)
  with:
    target: builtin
    title: "Rate ${{ vars.rate }} for ${{ finding.ip }}"
    owner: "${{ vars.owners_by_api[finding.api.api] }}"
    steps: "${{ vars.protected_apis }}"
"""
    match = "when: '!ip_in(finding.ip, vars.trusted_ranges)'"
    write("d/pb.yaml", playbook_yaml("pb", match=match, steps=steps))
    [playbook] = load_playbooks([Path(write("d/x.txt", "").parent)])
    matcher = Matcher([playbook])
    finding = make_finding(apis=[], ips=["203.0.113.7"])
    assert matcher.match(finding) == [playbook]
    assert matcher.match(make_finding(ips=["10.1.2.3"])) == []
    [step] = playbook.steps
    context = playbook.context(make_finding(ips=["203.0.113.7"]))
    context["finding"]["api"]["api"] = "orders"
    assert step.should_run(context)
    assert step.render(context) == {
        "target": "builtin",
        "title": "Rate 30 for 203.0.113.7",
        "owner": "orders-team@example.com",
        "steps": ["payments", "auth"],
    }
    assert step.variables == {
        "owners_by_api": {"orders": "orders-team@example.com"},
        "protected_apis": ["payments", "auth"],
        "rate": 30,
        "strict": True,
    }
    assert step.as_spec()["vars"] == step.variables


def test_variables_and_playbooks_may_share_a_file(write: Write, playbook_yaml: Yaml) -> None:
    text = VARIABLES + "---\n" + playbook_yaml(match="when: vars.strict")
    [playbook] = load_playbooks([write("pb.yaml", text)])
    assert playbook.variables["rate"] == 30
    assert load_text(text, "pb.yaml")[0][0].variables["strict"] is True


def test_unknown_names_are_load_errors_with_the_line(write: Write, playbook_yaml: Yaml) -> None:
    write("d/vars.yaml", VARIABLES)
    steps = """\
- id: task
  uses: task.create
  with:
    target: builtin
    title: "${{ vars.owners_by_apis['x'] }}"
    why: "${{ vars.zzz }}"
"""
    path = write("d/pb.yaml", playbook_yaml("pb", match="when: vars.strcit", steps=steps))
    assert problems([path.parent / "vars.yaml", path]) == [
        "pb.yaml:7: playbook pb: spec.match.when: unknown variable 'vars.strcit'"
        " (did you mean 'strict'?)",
        "pb.yaml:14: playbook pb, step task: with.title: unknown variable"
        " 'vars.owners_by_apis' (did you mean 'owners_by_api'?)",
        "pb.yaml:15: playbook pb, step task: with.why: unknown variable 'vars.zzz'"
        " (defined: owners_by_api, protected_apis, rate, strict, trusted_ranges)",
    ]


def test_vars_without_any_variables_document(write: Write, playbook_yaml: Yaml) -> None:
    path = write("pb.yaml", playbook_yaml(match="when: vars.strict"))
    assert problems([path]) == [
        "pb.yaml:7: playbook pb: spec.match.when: unknown variable 'vars.strict'"
        " (no Variables document defines it)"
    ]


def test_a_name_is_defined_once(write: Write) -> None:
    first = write("a.yaml", VARIABLES)
    second = write("b.yaml", VARIABLES.replace("shared", "other"))
    found = problems([first, second])
    assert found[0] == (
        f"b.yaml:6: variables other: spec.vars.trusted_ranges: defined twice, also at {first}:6"
        " (a name is defined once across all files)"
    )
    assert len(found) == 5


NOT_PLAIN = "must be a string, number, boolean, list or map, not date (quote dates and times)"
NOT_A_NAME = (
    "is not usable as vars.bad name: use letters, digits and '_', not starting with a digit"
)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("day: 2024-01-01", f"spec.vars.day: {NOT_PLAIN}"),
        ("'bad name': 1", f"spec.vars.bad name: 'bad name' {NOT_A_NAME}"),
        ("in: 1", "spec.vars.in: 'in' is a CEL keyword: vars.in would not parse"),
        ("m: {1: x}", "spec.vars.m: map keys must be strings, not 1"),
        ("x: .nan", "spec.vars.x: numbers must be finite"),
    ],
)
def test_values_and_names_are_checked(write: Write, entry: str, expected: str) -> None:
    path = write("vars.yaml", VARIABLES + f"    {entry}\n")
    [problem] = problems([path])
    assert problem == f"vars.yaml:11: variables shared: {expected}"


def test_unknown_fields_of_a_variables_document(write: Write) -> None:
    path = write("vars.yaml", VARIABLES.replace("  vars:", "  varz:"))
    assert problems([path]) == [
        "vars.yaml:4: variables shared: spec.vars: required field is missing",
        "vars.yaml:5: variables shared: spec.varz: unknown field (did you mean 'vars'?)",
    ]


def test_an_unknown_kind_names_both(write: Write, playbook_yaml: Yaml) -> None:
    path = write("pb.yaml", playbook_yaml().replace("kind: Playbook", "kind: Playbok"))
    assert "pb.yaml:2: playbook pb: kind: must be Playbook or Variables" in problems([path])


# ip_in ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "ranges", "inside"),
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", ["10.0.0.0/8", "192.0.2.0/24"], False),
        ("2001:db8::1", ["10.0.0.0/8", "2001:db8::/32"], True),
        ("192.0.2.7", ["192.0.2.7"], True),
        ("", ["0.0.0.0/0"], False),
        ("not an ip", ["0.0.0.0/0"], False),
        ("10.1.2.3", [], False),
    ],
)
def test_ip_in(ip: str, ranges: object, inside: bool) -> None:
    assert ip_in(ip, ranges) is inside
    assert (
        Expression("ip_in(finding.ip, vars.r)").test({"finding": {"ip": ip}, "vars": {"r": ranges}})
        is inside
    )
    assert (
        Expression("finding.ip.ip_in(vars.r)").test({"finding": {"ip": ip}, "vars": {"r": ranges}})
        is inside
    )


def test_ip_in_refuses_a_bad_range() -> None:
    with pytest.raises(ValueError, match="not an IP range"):
        ip_in("10.0.0.1", ["10.0.0.0/33"])
    with pytest.raises(ExpressionEvaluationError, match="not an IP range"):
        Expression("ip_in('10.0.0.1', ['nonsense'])").evaluate({})
    with pytest.raises(ValueError, match="must be a range or a list of ranges"):
        ip_in("10.0.0.1", [1])


def test_a_constant_ip_in_is_checked_at_load(write: Write, playbook_yaml: Yaml) -> None:
    path = write("pb.yaml", playbook_yaml(match="when: ip_in('10.0.0.1', ['10.0.0.0/99'])"))
    [problem] = problems([path])
    assert problem.startswith("pb.yaml:7: playbook pb: spec.match.when: always fails: ")
    assert "not an IP range" in problem


def test_ranges_read_from_vars_are_checked_at_load(write: Write, playbook_yaml: Yaml) -> None:
    write("d/vars.yaml", VARIABLES.replace("10.0.0.0/8", "10.0.0.0/8x"))
    match = "when: '!ip_in(finding.ip, vars.trusted_ranges) && !finding.ip.ip_in(vars.rate)'"
    path = write("d/pb.yaml", playbook_yaml(match=match))
    assert problems([path.parent / "vars.yaml", path]) == [
        "pb.yaml:7: playbook pb: spec.match.when: vars.rate as ranges of ip_in: must be a range"
        f" or a list of ranges (vars.rate is defined at {path.parent / 'vars.yaml'}:9)",
        "pb.yaml:7: playbook pb: spec.match.when: vars.trusted_ranges as ranges of ip_in: not an"
        " IP range: '10.0.0.0/8x' does not appear to be an IPv4 or IPv6 network"
        f" (vars.trusted_ranges is defined at {path.parent / 'vars.yaml'}:6)",
    ]


def test_only_the_vars_read_are_bound() -> None:
    expression = Expression("vars.a > 1 && ip_in('10.0.0.1', vars.b)")
    assert expression.needs.var_names == frozenset({"a", "b"})
    assert expression.needs.functions == frozenset({"ip_in"})
    assert Expression("size(vars) > 0").needs.var_names is None
    bound = expression.needs.bind({"vars": {"a": 2, "b": ["10.0.0.0/8"], "c": list(range(99))}})
    assert set(bound.variables["vars"]) == {"a", "b"}
