"""Playbooks: the YAML format, its loader, expressions, the matcher and the linter."""

from clampdown.playbooks.expressions import (
    Expression,
    ExpressionCompileError,
    ExpressionEvaluationError,
    Template,
    compile_value,
    render_value,
)
from clampdown.playbooks.lint import Problem, lint
from clampdown.playbooks.loader import (
    Match,
    Playbook,
    Step,
    load_default_pack,
    load_playbooks,
)
from clampdown.playbooks.matcher import Matcher, MatchResult
from clampdown.playbooks.schema import SeverityThreshold

__all__ = [
    "Expression",
    "ExpressionCompileError",
    "ExpressionEvaluationError",
    "Match",
    "MatchResult",
    "Matcher",
    "Playbook",
    "Problem",
    "SeverityThreshold",
    "Step",
    "Template",
    "compile_value",
    "lint",
    "load_default_pack",
    "load_playbooks",
    "render_value",
]
