"""Static checks of playbook files against the actions and targets actually available.

`lint` never raises for bad input: every finding is a `Problem` with file:line.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from clampdown.actions.contract import Action
from clampdown.errors import ExpressionError
from clampdown.model import JSON, ApiRef, Finding, Kind, Mode, Severity
from clampdown.playbooks.expressions import Expression, render_value, templates_in
from clampdown.playbooks.loader import Playbook, Step, collect
from clampdown.playbooks.schema import CONTAINMENT_ACTIONS, OnFailure
from clampdown.targets.settings import TargetConfig

Level = Literal["error", "warning"]
_Found = tuple[tuple[str | int, ...], str, Level, str]
"""Where inside the step (a path below it), message, level, hint."""

_GLOB_CHARS = re.compile(r"[*?\[]")

DEFENDER_ALERT_TYPES = (
    "API_PopulationSpikeInAPITraffic",
    "API_SpikeInAPITraffic",
    "API_SpikeInPayload",
    "API_SpikeInLatency",
    "API_SprayInRequests",
    "API_ParameterEnumeration",
    "API_DistributedParameterEnumeration",
    "API_UnseenParamType",
    "API_UnseenParam",
    "API_AccessFromTorExitNode",
    "API_AccessFromSuspiciousIP",
    "API_AccessFromSuspiciousUserAgent",
)
"""The Defender for APIs alert types known to Clampdown; their names all start with API_."""
DEFENDER_ALERT_PREFIX = "API_"
RECOMMENDATION_PREFIX = "Recommendation_"

HELD_ACTIONS = CONTAINMENT_ACTIONS | {"credential.suspend", "identity.disable"}
"""Actions that cut off traffic or access until undone: they expire, or a person approves."""
PERMANENT_ACTIONS = frozenset(
    {"credential.revoke", "credential.rotate", "identity.revoke_sessions"}
    | {"identity.confirm_compromised"}
)
"""Actions whose disruptive effect cannot be undone."""


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
    problems.extend(_shadowed(playbooks))
    return sorted(problems, key=lambda p: (p.path, p.line, p.level, p.message))


def _check_playbook(
    playbook: Playbook, actions: Mapping[str, type[Action]], targets: Mapping[str, TargetConfig]
) -> list[Problem]:
    def problem(line: int, level: Level, message: str, hint: str = "") -> Problem:
        return Problem(playbook.path, line, level, f"playbook {playbook.name}: {message}", hint)

    problems = [
        problem(playbook.line_of("spec", "match", *at), level, message, hint)
        for at, message, level, hint in _never_matches(playbook)
    ]
    earlier: set[str] = set()
    for index, step in enumerate(playbook.steps):
        found = _check_step(playbook, step, earlier, actions, targets)
        found.extend(_check_safety(playbook, index, actions))
        for at, message, level, hint in found:
            line = playbook.line_of("spec", "steps", index, *at)
            message = f"playbook {playbook.name}, step {step.id}: {message}"
            problems.append(Problem(playbook.path, line, level, message, hint))
        earlier.add(step.id)
    return problems


# Never matches ---------------------------------------------------------------------------


def _never_matches(playbook: Playbook) -> list[_Found]:
    match = playbook.match
    never = "never matches"
    found: list[_Found] = []
    if not match.types:
        found.append((("types",), f"{never}: types is empty", "error", "remove it for '*'"))
    for field in ("kinds", "sources"):
        if getattr(match, field) is not None and not getattr(match, field):
            found.append(((field,), f"{never}: {field} is empty", "error", "remove it"))
    if match.severity is not None and not match.severity.ranks:
        found.append((("severity",), f"{never}: no severity is {match.severity}", "error", ""))
    if _constant_false(match.when):
        found.append((("when",), f"{never}: `when` is always false", "warning", ""))
    found.extend(_defender_types(playbook))
    return found


def _defender_types(playbook: Playbook) -> list[_Found]:
    """Types that cannot occur for the kinds admitted, by Defender's naming of its findings.

    Every Defender for APIs alert type starts with API_ and every recommendation type with
    Recommendation_; other sources may use any name, so only API_ patterns, or every pattern
    of a playbook restricted to `sources: [defender]`, are held to the known alert types.
    """
    match = playbook.match
    kinds = match.kinds if match.kinds is not None else frozenset(Kind)
    patterns = match.types
    if not patterns or not kinds:
        return []
    at = ("types",)
    if kinds == {Kind.RECOMMENDATION} and all(_is_alert_pattern(p) for p in patterns):
        message = "never matches: API_* types are alerts, and kinds admits only recommendation"
        return [(at, message, "warning", "")]
    if Kind.ALERT not in kinds:
        return []
    alert_only = kinds == {Kind.ALERT}
    if alert_only and all(p.startswith(RECOMMENDATION_PREFIX) for p in patterns):
        message = "never matches: Recommendation_* types are recommendations, and kinds admits"
        return [(at, message + " only alert", "warning", "")]
    defender_only = match.sources is not None and set(match.sources) == {"defender"}
    held = (
        patterns if alert_only and defender_only else [p for p in patterns if _is_alert_pattern(p)]
    )
    unknown = [p for p in held if not _known_alerts(p)]
    if alert_only and unknown and len(unknown) == len(patterns):
        shown = ", ".join(unknown)
        message = f"never matches: no known Defender for APIs alert type matches {shown}"
        return [(at, message, "warning", _type_hint(unknown[0]))]
    return [
        (at, f"{p!r} matches no known Defender for APIs alert type", "warning", _type_hint(p))
        for p in unknown
    ]


def _is_alert_pattern(pattern: str) -> bool:
    return pattern.startswith(DEFENDER_ALERT_PREFIX)


def _known_alerts(pattern: str) -> list[str]:
    return [t for t in DEFENDER_ALERT_TYPES if fnmatch.fnmatchcase(t, pattern)]


def _type_hint(pattern: str) -> str:
    return _suggest(pattern, DEFENDER_ALERT_TYPES) or "a type Defender may add later is fine"


def _constant_false(expression: Expression | None) -> bool:
    if expression is None or not expression.is_constant:
        return False
    try:
        return expression.evaluate({}) is False
    except ExpressionError:
        return False


# Shadowed by an exclusive playbook -------------------------------------------------------


def _shadowed(playbooks: Sequence[Playbook]) -> list[Problem]:
    """Playbooks an exclusive one of higher priority keeps out of every finding they match."""
    exclusive = sorted((p for p in playbooks if p.exclusive), key=lambda p: -p.priority)
    problems = []
    for playbook in playbooks:
        for first in exclusive:
            if first.priority <= playbook.priority:
                break
            if _covers(first, playbook):
                where = f"{first.path}:{first.line_of('metadata', 'name')}"
                message = (
                    f"playbook {playbook.name}: never runs: the exclusive playbook {first.name} "
                    f"(priority {first.priority}, {where}) matches every finding it does"
                )
                hint = f"give it a priority above {first.priority}, or narrow {first.name}"
                line = playbook.line_of("spec", "priority")
                problems.append(Problem(playbook.path, line, "warning", message, hint))
                break
    return problems


def _covers(wide: Playbook, narrow: Playbook) -> bool:
    """True when every finding `narrow` matches is matched by `wide` as well."""
    a, b = wide.match, narrow.match
    if a.kinds is not None and (b.kinds is None or not b.kinds <= a.kinds):
        return False
    if a.severity is not None and not (
        b.severity is not None and b.severity.ranks <= a.severity.ranks
    ):
        return False
    if not _patterns_cover(a.types, b.types):
        return False
    if a.sources is not None and (b.sources is None or not _patterns_cover(a.sources, b.sources)):
        return False
    if a.when is None or _constant_true(a.when):
        return True
    return b.when is not None and " ".join(a.when.source.split()) == " ".join(b.when.source.split())


def _patterns_cover(wide: Iterable[str], narrow: Iterable[str]) -> bool:
    wide = list(wide)
    return all(any(_pattern_covers(w, n) for w in wide) for n in narrow)


def _pattern_covers(wide: str, narrow: str) -> bool:
    if wide == narrow or wide == "*":
        return True
    if not _GLOB_CHARS.search(narrow):
        return fnmatch.fnmatchcase(narrow, wide)
    # A glob is covered by a plain prefix glob ("API_*") when it starts with that prefix.
    prefix = wide[:-1]
    return wide.endswith("*") and not _GLOB_CHARS.search(prefix) and narrow.startswith(prefix)


def _constant_true(expression: Expression) -> bool:
    if not expression.is_constant:
        return False
    try:
        return expression.evaluate({}) is True
    except ExpressionError:
        return False


# Steps -----------------------------------------------------------------------------------


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
    action = actions.get(step.uses)
    if action is None:
        hint = _suggest(step.uses, actions)
        found.append((("uses",), f"unknown action {step.uses!r}", "error", hint))
        return found
    if step.expires is not None and not action.reversible:
        message = f"expires has no effect: {step.uses} cannot be undone"
        found.append((("expires",), message, "warning", ""))
    found.extend(_check_params(step, action))
    found.extend(_check_template_types(playbook, step, earlier, action))
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


def _check_safety(
    playbook: Playbook, index: int, actions: Mapping[str, type[Action]]
) -> list[_Found]:
    """Disruptive steps nobody approves: they must expire, and permanent ones are flagged."""
    step = playbook.steps[index]
    found: list[_Found] = []
    unattended = playbook.mode is not Mode.APPROVAL
    if step.uses in HELD_ACTIONS and step.expires is None and unattended:
        message = f"{step.uses} runs without approval and never expires"
        found.append(((), message, "error", "add `expires`, or use mode: approval"))
    if step.uses in PERMANENT_ACTIONS and unattended and playbook.mode is not Mode.DRY_RUN:
        message = f"{step.uses} cannot be undone and runs without approval"
        hint = "use mode: approval unless an unreviewed permanent effect is intended"
        found.append((("uses",), message, "warning", hint))
    if step.on_failure is OnFailure.UNDO_PREVIOUS and not any(
        (action := actions.get(s.uses)) is not None and action.reversible
        for s in playbook.steps[:index]
    ):
        message = "on_failure: undo_previous has nothing to undo: no earlier step can be undone"
        found.append((("on_failure",), message, "warning", "use stop, the default"))
    return found


def _is_literal(value: Any) -> bool:
    return next(templates_in(value), None) is None


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
    # Template values are unknown until run time: only literal values are checked here, and
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


def _check_template_types(
    playbook: Playbook, step: Step, earlier: set[str], action: type[Action]
) -> list[_Found]:
    """Templates whose value has a type the parameter refuses, whatever the finding.

    Each template is rendered against a sample finding; one that cannot be rendered there
    (it reads an optional property or an earlier step's output) is left to run time. Only
    errors about the type of the value are reported, never about the sample's content.
    """
    context = {
        "finding": _sample_view(),
        "steps": {name: {"status": "succeeded", "output": {}} for name in earlier},
        "playbook": {"name": playbook.name},
        "vars": playbook.variables,
    }
    fields = action.params.model_fields
    values: dict[str, Any] = {}
    rendered: dict[str, Any] = {}
    for key, compiled in step.compiled_with.items():
        if key not in fields:
            continue
        if _is_literal(compiled):
            values[key] = compiled
            continue
        try:
            rendered[key] = render_value(compiled, context)
        except ExpressionError:
            continue
    if not rendered:
        return []
    try:
        action.params.model_validate(values | rendered)
    except ValidationError as exc:
        found: list[_Found] = []
        reported: set[str] = set()
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            if name not in rendered or name in reported or not error["type"].endswith("_type"):
                continue
            reported.add(name)
            gives = _kind(rendered[name])
            message = f"with.{name}: {error['msg']}, but the template gives {gives}"
            hint = "a value that is exactly one ${{ }} keeps its type; text around it makes text"
            found.append((("with", name), message, "error", hint))
        return found
    return []


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return "null" if value is None else type(value).__name__


@cache
def _sample_view() -> Mapping[str, JSON]:
    """A finding with every field filled in, to learn the type of what a template gives."""
    return Finding(
        source="defender",
        source_id="lint-sample",
        shape="lint",
        kind=Kind.ALERT,
        type="API_AccessFromSuspiciousIP",
        title="Sample",
        description="Sample",
        severity=Severity.HIGH,
        tactics=["InitialAccess"],
        techniques=["T1190"],
        ips=["192.0.2.1"],
        apis=[ApiRef(id="/apis/sample", service="gateway", api="sample", operation="get")],
        endpoint="GET /sample",
        credentials=["sample-key"],
        users=["user@example.com"],
        user_agent="sample-agent",
        url="https://example.com/alert",
    ).expression_view()


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
