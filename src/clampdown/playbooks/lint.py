"""Static checks of playbook files against the actions and targets actually available.

`lint` never raises for bad input: every finding is a `Problem` with file:line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from clampdown.actions.contract import Action
from clampdown.playbooks.expressions import Expression, Template
from clampdown.playbooks.loader import Playbook, Step, collect
from clampdown.targets.settings import TargetConfig

Level = Literal["error", "warning"]
_Found = tuple[tuple[str | int, ...], str, Level, str]
"""Where inside the step (a path below it), message, level, hint."""

"""Actions that cut off traffic or access; in automatic mode they should expire."""

_STEP_REFERENCE = re.compile(r"""\bsteps\s*(?:\.\s*([A-Za-z_][\w]*)|\[\s*["']([^"']+)["']\s*\])""")


@dataclass(frozen=True, slots=True)
class Problem:
    """One lint finding."""

    path: str
    line: int
    level: Level
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.path}:{self.line}: {self.level}: {self.message}{hint}"


def lint(
    paths: Sequence[Path],
    *,
    actions: Mapping[str, type[Action]],
    targets: Mapping[str, TargetConfig],
    default_pack: bool = False,
) -> list[Problem]:
    """Every problem in the playbook files, errors and warnings, ordered by file and line.

    With `default_pack`, the shipped pack is checked too (and name clashes with it).
    """
    playbooks, issues = collect(paths, default_pack=default_pack)
    problems = [Problem(i.path, i.line, "error", i.subject, i.hint) for i in issues]
    for playbook in playbooks:
        problems.extend(_check_playbook(playbook, actions, targets))
    return sorted(problems, key=lambda p: (p.path, p.line, p.level, p.message))


def _check_playbook(
    playbook: Playbook, actions: Mapping[str, type[Action]], targets: Mapping[str, TargetConfig]
) -> list[Problem]:
    def problem(line: int, level: Level, message: str, hint: str = "") -> Problem:
        return Problem(playbook.path, line, level, f"playbook {playbook.name}: {message}", hint)

    problems = []
    match = playbook.match
    never = "never matches"
    if not match.types:
        line = playbook.line_of("spec", "match", "types")
        problems.append(problem(line, "error", f"{never}: types is empty", "remove it for '*'"))
    for field in ("kinds", "sources"):
        if getattr(match, field) is not None and not getattr(match, field):
            line = playbook.line_of("spec", "match", field)
            problems.append(problem(line, "error", f"{never}: {field} is empty", "remove it"))
    if match.severity is not None and not match.severity.ranks:
        line = playbook.line_of("spec", "match", "severity")
        message = f"{never}: no severity is {match.severity}"
        problems.append(problem(line, "error", message))
    if _constant_false(match.when):
        line = playbook.line_of("spec", "match", "when")
        problems.append(problem(line, "warning", f"{never}: `when` is always false"))
    earlier: set[str] = set()
    for index, step in enumerate(playbook.steps):
        for at, message, level, hint in _check_step(playbook, step, earlier, actions, targets):
            line = playbook.line_of("spec", "steps", index, *at)
            message = f"playbook {playbook.name}, step {step.id}: {message}"
            problems.append(Problem(playbook.path, line, level, message, hint))
        earlier.add(step.id)
    return problems


def _constant_false(expression: Expression | None) -> bool:
    return expression is not None and expression.is_constant and expression.evaluate({}) is False


def _check_step(
    playbook: Playbook,
    step: Step,
    earlier: set[str],
    actions: Mapping[str, type[Action]],
    targets: Mapping[str, TargetConfig],
) -> list[_Found]:
    found: list[_Found] = []
    if _constant_false(step.if_):
        found.append((("if",), "never runs: `if` is always false", "warning", ""))
    for name in sorted(_step_references(step) - earlier):
        message = f"refers to steps.{name}, which is not an earlier step"
        found.append(((), message, "warning", "a step sees only the steps before it"))
    action = actions.get(step.uses)
    if action is None:
        hint = _suggest(step.uses, actions)
        found.append((("uses",), f"unknown action {step.uses!r}", "error", hint))
        return found
    if step.expires is not None and not action.reversible:
        message = f"expires has no effect: {step.uses} cannot be undone"
        found.append((("expires",), message, "warning", ""))
    found.extend(_check_params(step, action))
    target = step.with_.get("target")
    if isinstance(target, str) and "${{" not in target:
        config = targets.get(target)
        at = ("with", "target")
        if config is None:
            hint = f"configured targets: {', '.join(sorted(targets)) or 'none'}"
            found.append((at, f"unknown target {target!r}", "error", hint))
        elif config.type not in action.target_types:
            message = f"{step.uses} cannot use target {target!r} of type {config.type}"
            hint = f"{step.uses} works with: {', '.join(action.target_types)}"
            found.append((at, message, "error", hint))
    return found


def _step_references(step: Step) -> set[str]:
    sources = [step.if_.source] if step.if_ is not None else []
    sources.extend(t.source for t in _templates(step.compiled_with))
    names: set[str] = set()
    for source in sources:
        for dotted, quoted in _STEP_REFERENCE.findall(source):
            names.add(dotted or quoted)
    return names


def _templates(value: Any) -> list[Template]:
    if isinstance(value, Template):
        return [value]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _templates(item)]
    if isinstance(value, list):
        return [t for item in value for t in _templates(item)]
    return []


def _is_literal(value: Any) -> bool:
    return not _templates(value)


def _check_params(step: Step, action: type[Action]) -> list[_Found]:
    found: list[_Found] = []
    fields = action.params.model_fields
    accepted = set(fields) | {f.alias for f in fields.values() if f.alias}
    for key in step.with_:
        if key not in accepted:
            hint = _suggest(key, accepted)
            found.append((("with", key), f"{step.uses} has no parameter {key!r}", "error", hint))
    for name, info in fields.items():
        if info.is_required() and name not in step.with_ and info.alias not in step.with_:
            message = f"{step.uses} needs parameter {info.alias or name!r}"
            found.append((("with",), message, "error", ""))
    literal = {
        key: value
        for key, value in step.with_.items()
        if key in accepted and _is_literal(step.compiled_with.get(key))
    }
    # Template values are unknown until run time: only literal values are type-checked, and
    # checks across parameters only when every value is literal.
    all_literal = len(literal) == len(step.with_)
    try:
        action.params.model_validate(literal)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if error["type"] in ("missing", "extra_forbidden"):
                continue
            if loc and loc[0] not in literal:
                continue
            if not loc and not all_literal:
                continue
            where = ".".join(str(part) for part in loc)
            message = error["msg"].removeprefix("Value error, ")
            at = ("with", *loc[:1])
            found.append((at, f"with.{where}: {message}" if where else message, "error", ""))
    return found


def _suggest(word: str, choices: Mapping[str, Any] | set[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
