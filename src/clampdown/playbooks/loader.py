"""Read playbook files into compiled, ready-to-run `Playbook` objects.

Every problem in every file is collected before anything is refused, and each one names the
file, the line, the playbook and the step.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clampdown.errors import PlaybookError
from clampdown.model import JSON, Finding, Kind, Mode
from clampdown.playbooks._yaml import Document, LineLoader
from clampdown.playbooks.expressions import (
    Expression,
    Needs,
    Template,
    needs_of_value,
    relocate_value,
    render_value,
    to_text,
)
from clampdown.playbooks.expressions import Path as ValuePath
from clampdown.playbooks.schema import (
    SECTIONS,
    PlaybookDocument,
    SchemaProblem,
    SeverityThreshold,
    allowed_keys,
    duplicate_step_ids,
)

PLAYBOOK_SUFFIXES = (".yaml", ".yml")
_PATTERN_HELP = {
    "name": "use a-z, 0-9, '.', '_' and '-', starting and ending with a letter or digit",
    "id": "use a-z, 0-9, '_' and '-'",
    "uses": "not an action name such as gateway.block",
}
PACK_LABEL = "clampdown/playbooks/pack"


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
        """The variables expressions see: finding, steps (id -> status, output) and playbook."""
        view = finding.expression_view() if isinstance(finding, Finding) else finding
        return {"finding": view, "steps": dict(steps or {}), "playbook": {"name": self.name}}

    def group_key(self, finding: Finding | Mapping[str, JSON]) -> str:
        """The rendered `group.by` for a finding; findings with equal keys are grouped."""
        return to_text(self.group_by.render(self.context(finding)))


@dataclass(frozen=True, slots=True)
class Issue:
    """One loading problem, located."""

    path: str
    line: int
    message: str
    playbook: str = ""
    step: str = ""
    hint: str = ""

    @property
    def subject(self) -> str:
        """The message with the playbook and step it concerns."""
        where = ", ".join(
            part
            for part in (
                f"playbook {self.playbook}" if self.playbook else "",
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
    issues: list[Issue] = []
    sources = [*(_pack_sources() if default_pack else []), *_file_sources(paths, issues)]
    for label, text in sources:
        loaded, found = load_text(text, label)
        playbooks.extend(loaded)
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
    return list(unique.values()), issues


def load_text(text: str, label: str) -> tuple[list[Playbook], list[Issue]]:
    """Load the playbooks in one YAML text; `label` names it in messages."""
    playbooks: list[Playbook] = []
    issues: list[Issue] = []
    try:
        for document in LineLoader(text).documents():
            playbook, found = _load_document(document, label)
            issues.extend(found)
            if playbook is not None:
                playbooks.append(playbook)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(Issue(label, line, f"not valid YAML: {problem}"))
    return playbooks, issues


def _file_sources(paths: Sequence[Path], issues: list[Issue]) -> Iterator[tuple[str, str]]:
    for path in paths:
        if path.is_dir():
            files = sorted(
                file
                for file in path.rglob("*")
                if file.suffix in PLAYBOOK_SUFFIXES
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


def _pack_sources() -> Iterator[tuple[str, str]]:
    pack: Traversable = resources.files("clampdown.playbooks") / "pack"
    for entry in sorted(pack.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(PLAYBOOK_SUFFIXES) and entry.is_file():
            yield f"{PACK_LABEL}/{entry.name}", entry.read_text(encoding="utf-8")


def _load_document(document: Document, label: str) -> tuple[Playbook | None, list[Issue]]:
    data = document.data
    if data is None:
        return None, []
    name = _name_of(data)
    issues = [
        Issue(label, line, f"duplicate key {path[-1]!r}, first at line {first}", playbook=name)
        for path, line, first in document.duplicates
    ]
    if not isinstance(data, dict):
        issues.append(Issue(label, document.line, "a playbook must be a mapping"))
        return None, issues
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
    if issues:
        return None, issues
    return _compile(parsed, document, label), issues


def _name_of(data: Any) -> str:
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _issue(error: ErrorDetails, document: Document, label: str, name: str) -> Issue:
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
        hint = _suggest(str(path[-1]), _allowed_at(path[:-1])) if path else ""
    elif error["type"] == "string_pattern_mismatch" and path and path[-1] in _PATTERN_HELP:
        message = _PATTERN_HELP[str(path[-1])]
    elif problem is not None:
        message = str(problem)
    else:
        message = error["msg"].removeprefix("Value error, ")
    where = _dotted(shown)
    return Issue(label, line, f"{where}: {message}" if where else message, name, step, hint)


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


def _allowed_at(path: ValuePath) -> list[str]:
    shape = tuple("*" if isinstance(part, int) else part for part in path)
    model = SECTIONS.get(shape)
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
            )
        )
    digest = hashlib.sha256(json.dumps(source.data, default=str).encode())
    return Playbook(
        name=document.metadata.name,
        owner=document.metadata.owner,
        description=document.metadata.description,
        priority=spec.priority,
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
