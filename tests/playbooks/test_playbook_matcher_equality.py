"""`when` conditions on one field (`finding.api.api == "x"`, `in [...]`): exact CEL semantics.

Large deployments scope thousands of playbooks this way; whatever the matcher does to make
them cheap, the result must be what CEL gives, failures included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clampdown.model import ApiRef, Finding
from clampdown.playbooks import Matcher, load_playbooks

MakeFinding = Callable[..., Finding]
Write = Callable[[str, str], Path]


def _playbook(name: str, when: str, priority: int = 0, exclusive: bool = False) -> str:
    return f"""\
apiVersion: clampdown/v1
kind: Playbook
metadata: {{name: {name}}}
spec:
  priority: {priority}
  exclusive: {str(exclusive).lower()}
  match: {{types: ["*"], when: {when!r}}}
  mode: automatic
  steps: [{{id: t, uses: task.create, with: {{target: builtin, title: x}}}}]
"""


PLAYBOOKS = [
    _playbook("orders", 'finding.api.api == "orders"'),
    _playbook("orders-single-quoted", "finding.api.api == 'orders'"),
    _playbook("orders-or-users", 'finding.api.api in ["orders", "users"]'),
    _playbook("users", 'finding.api.api == "users"'),
    _playbook("get-order", 'finding.api.operation == "getOrder"'),
    _playbook("port", 'finding.properties.port == "443"'),
    _playbook("high", 'finding.severity == "high"'),
    _playbook("not-a-guard", 'finding.api.api == "orders" && size(finding.ips) > 0'),
]


@pytest.fixture
def matcher(write: Write) -> Matcher:
    return Matcher(load_playbooks([write("p.yaml", "---\n".join(PLAYBOOKS))]))


def _names(matcher: Matcher, finding: Finding) -> tuple[list[str], list[str]]:
    result = matcher.evaluate(finding)
    return [p.name for p in result.playbooks], [p.name for p, _ in result.errors]


def test_equal_and_in(matcher: Matcher, make_finding: MakeFinding) -> None:
    orders = make_finding(apis=[ApiRef(id="x", api="orders", operation="getOrder")])
    matched, errors = _names(matcher, orders)
    assert matched == [
        "get-order",
        "high",
        "not-a-guard",
        "orders",
        "orders-or-users",
        "orders-single-quoted",
    ]
    assert errors == ["port"]
    users = make_finding(apis=[ApiRef(id="x", api="users")], severity="low", ips=[])
    assert _names(matcher, users) == (["orders-or-users", "users"], ["port"])


def test_a_field_of_another_type_is_no_match_and_a_missing_one_a_failure(
    matcher: Matcher, make_finding: MakeFinding
) -> None:
    # api.api is null for an API given only by id: false in CEL, not a failure.
    no_name = make_finding(apis=[ApiRef(id="x")], properties={"port": "443"})
    assert _names(matcher, no_name) == (["high", "port"], [])


def test_an_exclusive_guarded_playbook_keeps_lower_ones_out(
    write: Write, make_finding: MakeFinding
) -> None:
    text = "---\n".join(
        [
            _playbook("orders-only", 'finding.api.api == "orders"', priority=5, exclusive=True),
            _playbook("same-rank", 'finding.severity == "high"', priority=5),
            _playbook("lower", "true"),
        ]
    )
    matcher = Matcher(load_playbooks([write("x.yaml", text)]))
    orders = make_finding(apis=[ApiRef(id="x", api="orders")])
    assert _names(matcher, orders) == (["orders-only", "same-rank"], [])
    other = make_finding(apis=[ApiRef(id="x", api="users")])
    assert _names(matcher, other) == (["same-rank", "lower"], [])
