"""Read playbook files into compiled, ready-to-run `Playbook` objects.

Every problem in every file is collected before anything is refused, and each one names the
file, the line, the playbook and the step. `Variables` documents, in any file, define the
`vars.<name>` every playbook may read; a reference to a name no document defines is refused.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clampdown.errors import ExpressionError, PlaybookError
from clampdown.model import JSON, Finding, Kind, Mode
from clampdown.playbooks._yaml import Document, LineLoader
from clampdown.playbooks.expressions import (
    Expression,
    Needs,
    Template,
    check_ranges,
    needs_of_value,
    relocate_value,
    render_value,
    step_references,
    templates_in,
    to_text,
)
from clampdown.playbooks.expressions import Path as ValuePath
from clampdown.playbooks.schema import (
    SECTIONS,
    VARIABLES_SECTIONS,
    ApprovalSpec,
    LadderSpec,
    OnFailure,
    PlaybookDocument,
    SchemaProblem,
    SeverityThreshold,
    VariablesDocument,
    allowed_keys,
    duplicate_step_ids,
)

PLAYBOOK_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")
"""Playbook test files (`clampdown playbooks test`), skipped when a directory is loaded."""
_PATTERN_HELP = {
    "name": "use a-z, 0-9, '.', '_' and '-', starting and ending with a letter or digit",
    "id": "use a-z, 0-9, '_' and '-'",
    "uses": "not an action name such as gateway.block",
}
PACK_LABEL = "clampdown/playbooks/pack"
KINDS = ("Playbook", "Variables")
# `ip_in(x, vars.name)` and `x.ip_in(vars.name)`: the named variable must hold IP ranges.
_RANGES_USE = re.compile(r"\bip_in\s*\((?:[^(),]|\([^()]*\))*,\s*vars\.(\w+)\s*\)")
_RANGES_METHOD = re.compile(r"\.\s*ip_in\s*\(\s*vars\.(\w+)\s*\)")


@dataclass(frozen=True, slots=True)
class Match:
    """When a playbook applies; every condition given must hold."""

    types: tuple[str, ...]
    kinds: frozenset[Kind] | None
    sources: tuple[str, ...] | None
    severity: SeverityThreshold | None
    when: Expression | None


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """One compiled step: the action to call and how to build its parameters."""

    id: str
    uses: str
    with_: Mapping[str, JSON]
    """The parameters as written, templates unrendered."""
    compiled_with: Mapping[str, Any]
    if_: Expression | None
    expires: timedelta | None
    line: int
    needs: Needs = field(default_factory=Needs, repr=False)
    retries: int | None = None
    """Retries after a transient failure; None means engine.max_attempts - 1."""
    timeout: timedelta | None = None
    """The longest one call may take; None means the target's timeout."""
    on_failure: OnFailure = OnFailure.STOP
    variables: Mapping[str, JSON] = field(default_factory=dict, repr=False)
    """The `vars` this step reads (`if` and `with`), with their values."""

    def as_spec(self) -> dict[str, JSON]:
        """What the engine stores for this step and runs it from."""
        return {
            "uses": self.uses,
            "with": dict(self.with_),
            "if": self.if_.source if self.if_ is not None else None,
            "expires": self.expires.total_seconds() if self.expires else None,
            "retries": self.retries,
            "timeout": self.timeout.total_seconds() if self.timeout else None,
            "on_failure": self.on_failure.value,
            "vars": dict(self.variables),
        }

    def should_run(self, context: Mapping[str, Any]) -> bool:
        """Evaluate `if` against the step context; True when there is none."""
        return True if self.if_ is None else self.if_.test(context)

    def render(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The action parameters for this context (one CEL conversion for all templates)."""
        rendered: dict[str, Any] = render_value(self.compiled_with, self.needs.bind(context))
        return rendered


@dataclass(frozen=True, slots=True, eq=False)
class Playbook:
    """A loaded playbook, compiled and ready to match and run.

    Compared and hashed by identity; `revision` tells whether two loads hold the same text.
    """

    name: str
    owner: str
    description: str
    priority: int
    mode: Mode
    match: Match
    group_by: Template
    group_window: timedelta
    steps: tuple[Step, ...]
    path: str
    line: int
    revision: str
    """A digest of the parsed document: comments and layout aside, any edit changes it."""
    locations: Mapping[ValuePath, int] = field(default_factory=dict, repr=False)
    exclusive: bool = False
    """When it matches, playbooks of lower priority do not run for the finding."""
    approval: ApprovalSpec | None = None
    """Who approves, how many, and what happens at the timeout (mode approval)."""
    ladder: LadderSpec | None = None
    """The response ladder, when the playbook escalates per identity."""
    variables: Mapping[str, JSON] = field(default_factory=dict, repr=False)
    """Every `vars.<name>` loaded with the playbook."""

    def line_of(self, *path: str | int) -> int:
        """The line of a document path such as ("spec", "match", "severity")."""
        for end in range(len(path), 0, -1):
            line = self.locations.get(path[:end])
            if line is not None:
                return line
        return self.line

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError when there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def context(
        self, finding: Finding | Mapping[str, JSON], steps: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The variables expressions see: finding, steps (id -> status, output), playbook, vars."""
        view = finding.expression_view() if isinstance(finding, Finding) else finding
        return {
            "finding": view,
            "steps": dict(steps or {}),
            "playbook": {"name": self.name},
            "vars": self.variables,
        }

    def expressions(self) -> Iterator[tuple[ValuePath, Expression | Template]]:
        """Every compiled expression and template, with its path in the document."""
        if self.match.when is not None:
            yield ("spec", "match", "when"), self.match.when
        yield ("spec", "group", "by"), self.group_by
        if self.ladder is not None:
            yield ("spec", "ladder", "key"), self.ladder.key
        for index, step in enumerate(self.steps):
            at: ValuePath = ("spec", "steps", index)
            if step.if_ is not None:
                yield (*at, "if"), step.if_
            for path, template in templates_in(step.compiled_with):
                yield (*at, "with", *path), template

    def group_key(self, finding: Finding | Mapping[str, JSON]) -> str:
        """The rendered `group.by` for a finding; findings with equal keys are grouped."""
        return to_text(self.group_by.render(self.context(finding)))

    def group_key_or_fingerprint(self, view: Mapping[str, JSON], fingerprint: str) -> str:
        """`group_key`, or the finding's fingerprint when the key cannot be computed.

        A group key that cannot be computed must not stop the response.
        """
        try:
            return self.group_key(view)
        except ExpressionError:
            return fingerprint

    def ladder_key(self, finding: Finding | Mapping[str, JSON]) -> str:
        """The rendered `ladder.key`: who the finding's offense counts for ("" without one)."""
        if self.ladder is None:
            return ""
        return to_text(self.ladder.key.render(self.context(finding)))


@dataclass(frozen=True, slots=True)
class VariableSet:
    """One Variables document: named values, and where each is defined."""

    name: str
    values: Mapping[str, JSON]
    path: str
    line: int
    lines: Mapping[str, int]

    def where(self, name: str) -> str:
        """file:line of a variable."""
        return f"{self.path}:{self.lines.get(name, self.line)}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One loading problem, located."""

    path: str
    line: int
    message: str
    playbook: str = ""
    """The name of the document concerned (a playbook, or a Variables document)."""
    step: str = ""
    hint: str = ""
    kind: str = "playbook"
    """What `playbook` names: "playbook" or "variables"."""

    @property
    def subject(self) -> str:
        """The message with the playbook and step it concerns."""
        where = ", ".join(
            part
            for part in (
                f"{self.kind} {self.playbook}" if self.playbook else "",
                f"step {self.step}" if self.step else "",
            )
            if part
        )
        return f"{where}: {self.message}" if where else self.message

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.path}:{self.line}: {self.subject}{hint}"


def load_playbooks(paths: Sequence[Path], *, default_pack: bool = False) -> list[Playbook]:
    """Load playbook files and directories (every *.yaml / *.yml below them).

    With `default_pack`, the shipped pack is loaded first and its names count as taken.
    Raises PlaybookError listing every problem found.
    """
    playbooks, issues = collect(paths, default_pack=default_pack)
    if issues:
        raise PlaybookError([str(issue) for issue in issues])
    return playbooks


def load_default_pack() -> list[Playbook]:
    """The playbooks shipped with Clampdown."""
    return load_playbooks([], default_pack=True)


def collect(
    paths: Sequence[Path], *, default_pack: bool = False
) -> tuple[list[Playbook], list[Issue]]:
    """Every playbook that loads, and every problem found; never raises for bad input."""
    playbooks: list[Playbook] = []
    sets: list[VariableSet] = []
    issues: list[Issue] = []
    sources = [*(_pack_sources() if default_pack else []), *_file_sources(paths, issues)]
    for label, text in sources:
        loaded, defined, found = _read_text(text, label)
        playbooks.extend(loaded)
        sets.extend(defined)
        issues.extend(found)
    unique: dict[str, Playbook] = {}
    for playbook in playbooks:
        first = unique.setdefault(playbook.name, playbook)
        if first is not playbook:
            also = f"{first.path}:{first.line_of('metadata', 'name')}"
            issues.append(
                Issue(
                    playbook.path,
                    playbook.line_of("metadata", "name"),
                    f"duplicate playbook name, also at {also}",
                    playbook=playbook.name,
                    hint="names are unique across all files and the default pack",
                )
            )
    bound, found = bind_variables(list(unique.values()), sets)
    return bound, issues + found


def load_text(text: str, label: str) -> tuple[list[Playbook], list[Issue]]:
    """Load the playbooks and variables in one YAML text; `label` names it in messages."""
    playbooks, sets, issues = _read_text(text, label)
    bound, found = bind_variables(playbooks, sets)
    return bound, issues + found


def _read_text(text: str, label: str) -> tuple[list[Playbook], list[VariableSet], list[Issue]]:
    playbooks: list[Playbook] = []
    sets: list[VariableSet] = []
    issues: list[Issue] = []
    try:
        for document in LineLoader(text).documents():
            loaded, found = _load_document(document, label)
            issues.extend(found)
            if isinstance(loaded, Playbook):
                playbooks.append(loaded)
            elif loaded is not None:
                sets.append(loaded)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(Issue(label, line, f"not valid YAML: {problem}"))
    return playbooks, sets, issues


def bind_variables(
    playbooks: Sequence[Playbook], sets: Sequence[VariableSet]
) -> tuple[list[Playbook], list[Issue]]:
    """Give every playbook the variables; refuse those that read a name nobody defines.

    A name defined twice is refused too (in the later document).
    """
    issues: list[Issue] = []
    values: dict[str, JSON] = {}
    defined_in: dict[str, VariableSet] = {}
    for variables in sets:
        for name, value in variables.values.items():
            first = defined_in.setdefault(name, variables)
            if first is not variables:
                issues.append(
                    Issue(
                        variables.path,
                        variables.lines.get(name, variables.line),
                        f"spec.vars.{name}: defined twice, also at {first.where(name)}",
                        playbook=variables.name,
                        kind="variables",
                        hint="a name is defined once across all files",
                    )
                )
                continue
            values[name] = value
    bound = []
    for playbook in playbooks:
        found = _check_variables(playbook, values, defined_in)
        issues.extend(found)
        if not found:
            bound.append(_with_variables(playbook, values))
    return bound, issues


def _check_variables(
    playbook: Playbook, values: Mapping[str, JSON], defined_in: Mapping[str, VariableSet]
) -> list[Issue]:
    issues: list[Issue] = []
    for path, expression in playbook.expressions():
        found: list[tuple[str, str]] = []
        names = expression.needs.var_names or frozenset()
        for name in sorted(names - values.keys()):
            hint = _defined_hint(name, sorted(values))
            found.append((f"unknown variable 'vars.{name}'", hint))
        for name in _range_variables(expression):
            problem = check_ranges(values[name]) if name in values else ""
            if problem:
                hint = f"vars.{name} is defined at {defined_in[name].where(name)}"
                found.append((f"vars.{name} as ranges of ip_in: {problem}", hint))
        step, shown = _step_of_playbook(playbook, path)
        line = playbook.line_of(*path)
        issues.extend(
            Issue(playbook.path, line, f"{_dotted(shown)}: {message}", playbook.name, step, hint)
            for message, hint in found
        )
    return issues


def _defined_hint(name: str, defined: list[str]) -> str:
    if not defined:
        return "no Variables document defines it"
    close = difflib.get_close_matches(name, defined, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(defined[:10]) + (", ..." if len(defined) > 10 else "")
    return f"defined: {shown}"


def _range_variables(expression: Expression | Template) -> list[str]:
    sources = (
        [expression.source]
        if isinstance(expression, Expression)
        else [e.source for e in expression.expressions]
    )
    return sorted(
        {
            name
            for source in sources
            for pattern in (_RANGES_USE, _RANGES_METHOD)
            for name in pattern.findall(source)
        }
    )


def _with_variables(playbook: Playbook, values: Mapping[str, JSON]) -> Playbook:
    if not values:
        return playbook
    steps = []
    for step in playbook.steps:
        names = step.needs.var_names
        read = values if names is None else {n: values[n] for n in sorted(names) if n in values}
        steps.append(replace(step, variables=read))
    return replace(playbook, steps=tuple(steps), variables=values)


def _step_of_playbook(playbook: Playbook, path: ValuePath) -> tuple[str, ValuePath]:
    if len(path) >= 3 and path[:2] == ("spec", "steps") and isinstance(path[2], int):
        return playbook.steps[path[2]].id, path[3:]
    return "", path


def _file_sources(paths: Sequence[Path], issues: list[Issue]) -> Iterator[tuple[str, str]]:
    for path in paths:
        if path.is_dir():
            files = sorted(
                file
                for file in path.rglob("*")
                if _is_playbook_file(file.name)
                and file.is_file()
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
            )
        elif path.exists():
            files = [path]
        else:
            issues.append(Issue(str(path), 1, "no such file or directory"))
            continue
        for file in files:
            try:
                yield str(file), file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                issues.append(Issue(str(file), 1, f"cannot read: {reason}"))


def _is_playbook_file(name: str) -> bool:
    return name.endswith(PLAYBOOK_SUFFIXES) and not name.endswith(TEST_SUFFIXES)


def _pack_sources() -> Iterator[tuple[str, str]]:
    pack: Traversable = resources.files("clampdown.playbooks") / "pack"
    for entry in sorted(pack.iterdir(), key=lambda e: e.name):
        name = entry.name
        if _is_playbook_file(name) and entry.is_file():
            yield f"{PACK_LABEL}/{entry.name}", entry.read_text(encoding="utf-8")


def _load_document(
    document: Document, label: str
) -> tuple[Playbook | VariableSet | None, list[Issue]]:
    data = document.data
    if data is None:
        return None, []
    name = _name_of(data)
    variables = isinstance(data, dict) and data.get("kind") == "Variables"
    kind = "variables" if variables else "playbook"
    issues = [
        Issue(
            label,
            line,
            f"duplicate key {path[-1]!r}, first at line {first}",
            playbook=name,
            kind=kind,
        )
        for path, line, first in document.duplicates
    ]
    if not isinstance(data, dict):
        issues.append(Issue(label, document.line, "a playbook must be a mapping"))
        return None, issues
    if variables:
        return _load_variables(document, label, name, issues)
    try:
        parsed = PlaybookDocument.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issue(error, document, label, name) for error in exc.errors())
        # Checks across fields run only once every field is valid; this one is worth
        # reporting in the same round.
        spec = data.get("spec")
        steps = spec.get("steps") if isinstance(spec, dict) else None
        for problem in duplicate_step_ids(steps):
            path = ("spec", *problem.path)
            step, shown = _step_of(data, path)
            issue = Issue(label, document.line_of(path), f"{_dotted(shown)}: {problem}", name, step)
            issues.append(issue)
        return None, sorted(issues, key=lambda i: i.line)
    issues.extend(_step_reference_issues(parsed, document, label))
    if issues:
        return None, issues
    return _compile(parsed, document, label), issues


def _step_reference_issues(parsed: PlaybookDocument, document: Document, label: str) -> list[Issue]:
    """A step reads only the steps before it: `steps.<id>` of a later or unknown step is refused."""
    ids = [step.id for step in parsed.spec.steps]
    issues: list[Issue] = []
    for index, step in enumerate(parsed.spec.steps):
        sources: list[tuple[ValuePath, str]] = []
        if step.if_ is not None:
            sources.append((("if",), step.if_.source))
        sources.extend(
            (("with", *at), expression.source)
            for at, template in templates_in(step.with_.compiled)
            for expression in template.expressions
        )
        for at, source in sources:
            for name in step_references(source):
                if name in ids[:index]:
                    continue
                if name in ids:
                    message = f"reads steps.{name}, a later step"
                    hint = "a step sees only the steps before it"
                else:
                    message = f"reads steps.{name}, but no step has that id"
                    hint = _earlier_hint(name, ids[:index])
                path = ("spec", "steps", index, *at)
                where = _dotted(at)
                issues.append(
                    Issue(
                        label,
                        document.line_of(path),
                        f"{where}: {message}",
                        parsed.metadata.name,
                        step.id,
                        hint,
                    )
                )
    return issues


def _earlier_hint(name: str, earlier: list[str]) -> str:
    close = difflib.get_close_matches(name, earlier, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"earlier steps: {', '.join(earlier)}" if earlier else "this is the first step"


def _load_variables(
    document: Document, label: str, name: str, issues: list[Issue]
) -> tuple[VariableSet | None, list[Issue]]:
    try:
        parsed = VariablesDocument.model_validate(document.data)
    except ValidationError as exc:
        issues.extend(
            _issue(error, document, label, name, VARIABLES_SECTIONS, kind="variables")
            for error in exc.errors()
        )
        return None, sorted(issues, key=lambda i: i.line)
    if issues:
        return None, issues
    lines = {key: document.line_of(("spec", "vars", key)) for key in parsed.spec.vars if key}
    return VariableSet(parsed.metadata.name, parsed.spec.vars, label, document.line, lines), []


def _name_of(data: Any) -> str:
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _issue(
    error: ErrorDetails,
    document: Document,
    label: str,
    name: str,
    sections: Mapping[tuple[str, ...], type[Any]] = SECTIONS,
    *,
    kind: str = "playbook",
) -> Issue:
    cause = error.get("ctx", {}).get("error")
    problem = cause if isinstance(cause, SchemaProblem) else None
    path = _data_path(document.data, tuple(error["loc"])) + (problem.path if problem else ())
    line = document.line_of(path)
    compile_error = problem.compile_error if problem else None
    scalar = document.scalars.get(path)
    if compile_error is not None and scalar is not None:
        # Block scalars (| and >) start on the line after their indicator.
        offset = compile_error.line if scalar.style in ("|", ">") else compile_error.line - 1
        line = scalar.line + offset
    step, shown = _step_of(document.data, path)
    hint = ""
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
        hint = _suggest(str(path[-1]), _allowed_at(path[:-1], sections)) if path else ""
    elif error["type"] == "literal_error" and path == ("kind",):
        message = f"must be {' or '.join(KINDS)}"
    elif error["type"] == "string_pattern_mismatch" and path and path[-1] in _PATTERN_HELP:
        message = _PATTERN_HELP[str(path[-1])]
    elif problem is not None:
        message = str(problem)
    else:
        message = error["msg"].removeprefix("Value error, ")
    where = _dotted(shown)
    text = f"{where}: {message}" if where else message
    return Issue(label, line, text, name, step, hint, kind)


def _data_path(data: Any, loc: tuple[str | int, ...]) -> ValuePath:
    """The part of a pydantic location that names real keys and indexes of the data."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            # A missing key is still worth naming; validator tags like "function-before[...]" not.
            if index == len(loc) - 1 and isinstance(node, dict):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


def _step_of(data: Any, path: ValuePath) -> tuple[str, ValuePath]:
    """The step a path falls in (its id, or its position), and the path relative to it."""
    if len(path) < 3 or path[:2] != ("spec", "steps") or not isinstance(path[2], int):
        return "", path
    step = data["spec"]["steps"][path[2]]
    step_id = step.get("id") if isinstance(step, dict) else None
    return (step_id if isinstance(step_id, str) else f"#{path[2] + 1}"), path[3:]


def _dotted(path: ValuePath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_at(path: ValuePath, sections: Mapping[tuple[str, ...], type[Any]]) -> list[str]:
    shape = tuple("*" if isinstance(part, int) else part for part in path)
    model = sections.get(shape)
    return allowed_keys(model) if model is not None else []


def _suggest(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"allowed: {', '.join(choices)}" if choices else ""


def _compile(document: PlaybookDocument, source: Document, label: str) -> Playbook:
    """The runnable form of a validated document; expressions learn their file:line."""

    def where(*path: str | int) -> str:
        return f"{label}:{source.line_of(path)}"

    spec = document.spec
    match = spec.match
    steps = []
    for index, step in enumerate(spec.steps):
        at = ("spec", "steps", index)
        compiled_with = relocate_value(step.with_.compiled, where(*at, "with"))
        if_ = step.if_.at(where(*at, "if")) if step.if_ is not None else None
        needs = needs_of_value(compiled_with) | (if_.needs if if_ is not None else Needs())
        steps.append(
            Step(
                id=step.id,
                uses=step.uses,
                with_=step.with_.raw,
                compiled_with=compiled_with,
                if_=if_,
                expires=step.expires,
                line=source.line_of(at),
                needs=needs,
                retries=step.retries,
                timeout=step.timeout,
                on_failure=step.on_failure,
            )
        )
    digest = hashlib.sha256(json.dumps(source.data, default=str).encode())
    return Playbook(
        name=document.metadata.name,
        owner=document.metadata.owner,
        description=document.metadata.description,
        priority=spec.priority,
        exclusive=spec.exclusive,
        approval=spec.approval,
        ladder=spec.ladder,
        mode=spec.mode,
        match=Match(
            types=tuple(match.types),
            kinds=frozenset(match.kinds) if match.kinds is not None else None,
            sources=tuple(match.sources) if match.sources is not None else None,
            severity=match.severity,
            when=match.when.at(where("spec", "match", "when")) if match.when else None,
        ),
        group_by=spec.group.by.at(where("spec", "group", "by")),
        group_window=spec.group.window,
        steps=tuple(steps),
        path=label,
        line=source.line,
        revision=digest.hexdigest()[:16],
        locations=dict(source.lines),
    )
