"""CEL expressions and ${{ }} templates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from clampdown.errors import ExpressionError
from clampdown.model import Finding
from clampdown.playbooks import (
    Expression,
    ExpressionCompileError,
    ExpressionEvaluationError,
    Template,
    compile_value,
    render_value,
)
from clampdown.playbooks.expressions import MATCH_VARIABLES, Needs, to_text

MakeFinding = Callable[..., Finding]
HOSTILE = "${{ finding.ip }} ${{ 1 + 1 }} }} ${{"


def context(finding: Finding, **steps: Any) -> dict[str, Any]:
    return {"finding": finding.expression_view(), "steps": steps, "playbook": {"name": "pb"}}


def test_expression_evaluates_against_the_finding(finding: Finding) -> None:
    assert Expression("size(finding.ips) > 0").test(context(finding))
    assert Expression("finding.api.id").evaluate(context(finding)).endswith("/apis/orders")
    assert Expression("finding.severity_rank >= 3 && playbook.name == 'pb'").test(context(finding))


def test_steps_are_visible_to_step_expressions(finding: Finding) -> None:
    ctx = context(finding, block={"status": "succeeded", "output": {"id": "c1"}})
    assert Expression('steps.block.status == "succeeded"').test(ctx)
    assert Expression("steps.block.output.id").evaluate(ctx) == "c1"


def test_compile_error_carries_line_and_column() -> None:
    with pytest.raises(ExpressionCompileError) as caught:
        Expression("finding.ip == 'x' &&\n  (finding.ips")
    assert (caught.value.line, caught.value.column) == (2, 15)
    assert "finding.ips" in str(caught.value)
    assert isinstance(caught.value, ExpressionError)


def test_unknown_variable_is_a_compile_error() -> None:
    with pytest.raises(ExpressionCompileError, match="unknown variable 'findings'"):
        Expression("size(findings.ips) > 0")


def test_steps_are_not_available_to_match_conditions() -> None:
    with pytest.raises(ExpressionCompileError, match="unknown variable 'steps'"):
        Expression("steps.a.status == 'x'", allowed=MATCH_VARIABLES)


def test_macro_variables_are_not_unknown(finding: Finding) -> None:
    expression = Expression("finding.ips.exists(x, x.startsWith('203.'))")
    assert expression.test(context(finding))
    assert Expression("[1, 2].map(n, n * 2)").evaluate({}) == [2, 4]


def test_evaluation_failure_names_expression_and_location(finding: Finding) -> None:
    expression = Expression("finding.properties['missing'] == 'x'", where="pb.yaml:7")
    with pytest.raises(ExpressionEvaluationError) as caught:
        expression.evaluate(context(finding))
    message = str(caught.value)
    assert message.startswith("pb.yaml:7: expression \"finding.properties['missing'] == 'x'\"")
    assert "missing" in caught.value.reason


@pytest.mark.parametrize("source", ["1 / 0", "'a' + 1", "[1][5]", "9223372036854775807 + 1"])
def test_every_runtime_failure_becomes_expression_error(source: str) -> None:
    with pytest.raises(ExpressionEvaluationError):
        Expression(source).evaluate({})


def test_test_requires_a_boolean(finding: Finding) -> None:
    with pytest.raises(ExpressionEvaluationError, match="must give true or false"):
        Expression("size(finding.ips)").test(context(finding))


def test_at_relabels_without_recompiling() -> None:
    first = Expression("1 / 0")
    relabeled = first.at("x.yaml:3")
    assert relabeled.source == first.source
    with pytest.raises(ExpressionError, match=r"^x\.yaml:3: "):
        relabeled.evaluate({})


def test_constant_expressions_are_known() -> None:
    assert Expression("false").is_constant
    assert Expression("[1].exists(x, x > 0)").is_constant
    assert not Expression("finding.ip == ''").is_constant


def test_needs_trim_the_finding_to_the_fields_read() -> None:
    assert Expression("size(finding.ips) > 0 && finding . ip != ''").needs == Needs(
        frozenset({"finding"}), frozenset({"ips", "ip"})
    )
    assert Expression("has(finding.ip)").needs.finding_fields == frozenset({"ip"})
    assert Expression("size(finding) > 0").needs.finding_fields is None
    assert Expression("finding['ip'] != ''").needs.finding_fields is None


def test_trimmed_context_gives_the_same_answers(finding: Finding) -> None:
    ctx = context(finding)
    assert Expression("has(finding.ip) && !has(finding.nope)").test(ctx)
    assert Expression("size(finding) > 10").test(ctx)


# Templates ---------------------------------------------------------------------------------


def test_whole_string_template_keeps_the_value_type(finding: Finding) -> None:
    ctx = context(finding)
    assert Template("${{ finding.ips }}").render(ctx) == ["203.0.113.7"]
    assert Template("${{ finding.severity_rank }}").render(ctx) == 3
    assert Template("${{ {'a': [1, 2]} }}").render(ctx) == {"a": [1, 2]}
    assert Template("${{ size(finding.ips) > 0 }}").render(ctx) is True


def test_mixed_template_joins_text(finding: Finding) -> None:
    ctx = context(finding)
    text = (
        "ip=${{ finding.ip }} rank=${{ finding.severity_rank }} ok=${{ true }} ${{ finding.ips }}"
    )
    assert Template(text).render(ctx) == 'ip=203.0.113.7 rank=3 ok=true ["203.0.113.7"]'
    assert Template(" ${{ finding.ips }}").render(ctx) == ' ["203.0.113.7"]'


def test_template_without_expressions_is_literal() -> None:
    template = Template("no expressions }} here")
    assert template.expressions == ()
    assert template.render({}) == "no expressions }} here"


def test_template_map_literal_braces_and_quoted_closers() -> None:
    assert Template("${{ {'a': {'b': 1}} }}").render({}) == {"a": {"b": 1}}
    assert Template("x${{ '}}' }}y").render({}) == "x}}y"


def test_unterminated_template_is_a_compile_error() -> None:
    with pytest.raises(ExpressionCompileError, match="without a closing") as caught:
        Template("ok\nthen ${{ finding.ip")
    assert (caught.value.line, caught.value.column) == (2, 6)


def test_template_compile_error_points_inside_the_string() -> None:
    with pytest.raises(ExpressionCompileError) as caught:
        Template("Blocked ${{ finding.ip + }} now")
    assert caught.value.line == 1
    assert caught.value.column > len("Blocked ${{")


@pytest.mark.parametrize(
    "template",
    ["${{ finding.user_agent }}", "UA: ${{ finding.user_agent }}", "${{ [finding.user_agent] }}"],
)
def test_finding_data_is_never_evaluated(template: str, make_finding: MakeFinding) -> None:
    """A user agent holding template syntax comes out exactly as it went in."""
    hostile = make_finding(user_agent=HOSTILE, ips=["198.51.100.1"])
    rendered = Template(template).render(context(hostile))
    assert HOSTILE in (rendered if isinstance(rendered, str) else rendered[0])
    assert "198.51.100.1" not in str(rendered)


def test_render_value_renders_nested_blocks_and_leaves_data_alone(
    make_finding: MakeFinding,
) -> None:
    hostile = make_finding(user_agent=HOSTILE)
    compiled = compile_value(
        {
            "target": "builtin",
            "rate": 60,
            "steps": ["Check ${{ finding.ip }}", "${{ finding.user_agent }}"],
            "meta": {"ips": "${{ finding.ips }}", "none": None},
        }
    )
    rendered = render_value(compiled, context(hostile))
    assert rendered == {
        "target": "builtin",
        "rate": 60,
        "steps": ["Check 203.0.113.7", HOSTILE],
        "meta": {"ips": ["203.0.113.7"], "none": None},
    }
    # Rendering again, or rendering a plain string, never parses anything.
    assert render_value(rendered, context(hostile)) == rendered


def test_compile_value_locates_the_failing_string() -> None:
    with pytest.raises(ExpressionCompileError) as caught:
        compile_value({"a": ["ok", {"b": "${{ nope }}"}]})
    assert caught.value.path == ("a", 1, "b")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (False, "false"),
        (1.5, "1.5"),
        (b"ab", "ab"),
        (timedelta(hours=1), "3600s"),
        ({"a": [1]}, '{"a": [1]}'),
    ],
)
def test_to_text(value: object, text: str) -> None:
    assert to_text(value) == text
