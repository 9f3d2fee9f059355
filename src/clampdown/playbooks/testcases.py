"""Playbook unit tests: a finding in, the expected plan out (`clampdown playbooks test`).

Tests live next to the playbooks in `*.test.yaml` files, one or more documents of
`kind: PlaybookTest` each. A case passes when the playbooks matched for its finding, in
order, are exactly the expected ones and every detail the case gives (mode, steps, selected
parameters, containments) agrees with the preview; parameters are compared as a subset.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from clampdown.actions.contract import Action
from clampdown.actions.registry import CATALOG
from clampdown.durations import parse_duration
from clampdown.errors import ClampdownError, InputError
from clampdown.model import ApiCollection, Finding, FindingContext, Mode
from clampdown.playbooks._yaml import Document, LineLoader
from clampdown.playbooks.expressions import Path as DataPath
from clampdown.playbooks.loader import PACK_LABEL, TEST_SUFFIXES, Playbook
from clampdown.playbooks.matcher import Matcher
from clampdown.playbooks.preview import (
    PlaybookPreview,
    Preview,
    StepPreview,
    duration_text,
    preview,
)

_ABSENT = object()


# The format ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CaseMetadata(_Strict):
    """What the case is called."""

    name: str = Field(min_length=1)
    description: str = ""


class CollectionInput(ApiCollection):
    """Defender's counters of the finding's API, as a case gives them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextInput(FindingContext):
    """The context a case gives its finding, as ingest would have set it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: CollectionInput | None = None


class FindingInput(_Strict):
    """The finding: an inline payload in any delivery shape, or a file next to the test."""

    payload: Any = None
    file: str | None = None
    shape: str | None = None
    index: int | None = Field(default=None, ge=0)
    """Which finding, when the payload holds several (a batch)."""
    context: ContextInput | None = None
    """The context ingest would give it (owner, channel, sensitivity, tags, collection)."""

    @model_validator(mode="after")
    def _one_source(self) -> FindingInput:
        if (self.payload is None) == (self.file is None):
            raise ValueError("give exactly one of payload and file")
        return self


class ExpectedContainment(_Strict):
    """Selected fields of what a step contains."""

    kind: str | None = None
    subject_type: str | None = None
    subject: str | None = None
    scope: str | None = None
    rate: int | None = None
    period_seconds: int | None = None


class ExpectedStep(_Strict):
    """Selected facts about one step; only the fields given are checked."""

    id: str | None = None
    uses: str | None = None
    target: str | None = None
    with_: dict[str, Any] | None = Field(default=None, alias="with")
    runs: bool | Literal["unknown"] | None = None
    expires: str | int | None = None
    """A duration, or null for a step that must not expire."""
    contains: ExpectedContainment | None = None
    """Null for a step that must contain nothing."""
    problem: str | None = None
    """Text the step's problem must contain (a step with a problem fails the case otherwise)."""


class ExpectedPlaybook(_Strict):
    """One matched playbook, in order."""

    playbook: str
    mode: Mode | None = None
    needs_approval: bool | None = None
    group_key: str | None = None
    rung: str | None = None
    """The ladder rung the remediation is planned at (see `spec.offense`)."""
    steps: list[ExpectedStep] | None = None
    """Every step of the playbook, in order, when given."""


def _nothing(value: object) -> object:
    return [] if value == "nothing" else value


class CaseSpec(_Strict):
    """The finding and the plan expected for it."""

    finding: FindingInput
    offense: int = Field(default=1, ge=1)
    """Which offense of the finding's identity this is, for playbooks with a ladder: 3 means
    two earlier remediations within the decay period."""
    expect: Annotated[list[ExpectedPlaybook], BeforeValidator(_nothing)]
    """The matched playbooks in order; `nothing` (or []) when none may match."""


class CaseDocument(_Strict):
    """One YAML document of kind PlaybookTest."""

    api_version: Literal["clampdown/v1"] = Field(alias="apiVersion")
    kind: Literal["PlaybookTest"]
    metadata: CaseMetadata
    spec: CaseSpec


# Results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a case's plan is not what it expects, located in the test file."""

    path: str
    line: int
    where: str
    """Where inside the case, e.g. `expect[0].steps[0].with.ip`."""
    message: str
    expected: Any = _ABSENT
    actual: Any = _ABSENT
    lines: tuple[str, ...] = ()
    """A diff of lists, one `-`/`+`/` ` line each, when a plain value pair does not fit."""

    def diff(self) -> list[str]:
        """The difference as `- expected` / `+ actual` lines."""
        if self.lines:
            return list(self.lines)
        out = []
        if self.expected is not _ABSENT:
            out.append(f"- {_shown(self.expected)}")
        if self.actual is not _ABSENT:
            out.append(f"+ {_shown(self.actual)}")
        return out

    def __str__(self) -> str:
        head = f"{self.path}:{self.line}: {self.where}: {self.message}"
        return "\n".join([head, *(f"    {line}" for line in self.diff())])

    def as_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return {
            "path": self.path,
            "line": self.line,
            "where": self.where,
            "message": self.message,
            "expected": None if self.expected is _ABSENT else self.expected,
            "actual": None if self.actual is _ABSENT else self.actual,
            "diff": self.diff(),
        }


@dataclass(frozen=True, slots=True)
class Case:
    """One loaded test case."""

    name: str
    path: str
    line: int
    finding: Finding
    expect: list[ExpectedPlaybook]
    document: Document = field(repr=False)
    offense: int = 1


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one case went; a case that could not be read or run has differences too."""

    name: str
    path: str
    line: int
    differences: tuple[Difference, ...] = ()
    plan: Preview | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """True when the plan is the expected one."""
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return {
            "name": self.name,
            "path": self.path,
            "line": self.line,
            "passed": self.passed,
            "differences": [d.as_json() for d in self.differences],
            "matched": [p.name for p in self.plan.playbooks] if self.plan else None,
        }


# Finding and reading test files ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One test file: a label for messages, its text, and where `file:` paths start."""

    label: str
    text: str
    base: Traversable


def case_sources(paths: Sequence[Path]) -> Iterator[Source]:
    """Every *.test.yaml / *.test.yml file below `paths` (dot files and folders skipped).

    InputError when one cannot be read.
    """
    for path in paths:
        if path.is_dir():
            files = sorted(
                f
                for f in path.rglob("*")
                if is_test_file(f.name)
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
            )
        else:
            files = [path]
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise InputError(f"{file}: cannot read: {reason}") from exc
            yield Source(str(file), text, file.parent)


def pack_case_sources() -> Iterator[Source]:
    """The tests shipped with the default pack."""
    pack: Traversable = resources.files("clampdown.playbooks") / "pack"
    for entry in sorted(pack.iterdir(), key=lambda e: e.name):
        if is_test_file(entry.name) and entry.is_file():
            yield Source(f"{PACK_LABEL}/{entry.name}", entry.read_text(encoding="utf-8"), pack)


def is_test_file(name: str) -> bool:
    """True for a playbook test file name (*.test.yaml, *.test.yml)."""
    return name.endswith(TEST_SUFFIXES)


def load_cases(source: Source) -> tuple[list[Case], list[CaseResult]]:
    """The cases of one test file, and a failed result for each case that cannot be read."""
    cases: list[Case] = []
    broken: list[CaseResult] = []
    try:
        documents = list(LineLoader(source.text).documents())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        broken.append(_broken(source.label, line, "(file)", f"not valid YAML: {problem}"))
        return cases, broken
    for document in documents:
        if document.data is None:
            continue
        case, problem = _load_case(document, source)
        if case is not None:
            cases.append(case)
        if problem is not None:
            broken.append(problem)
    return cases, broken


def _load_case(document: Document, source: Source) -> tuple[Case | None, CaseResult | None]:
    data = document.data
    name = _name_of(data) or f"document at line {document.line}"
    for path, line, first in document.duplicates:
        message = f"duplicate key {path[-1]!r}, first at line {first}"
        return None, _broken(source.label, line, name, message)
    try:
        parsed = CaseDocument.model_validate(_plain(data))
    except ValidationError as exc:
        differences: dict[tuple[int, str], Difference] = {}
        for error in exc.errors():
            path = _data_path(data, tuple(error["loc"]))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "required field is missing"
            elif error["type"] == "extra_forbidden":
                message = "unknown field"
            where = _dotted(path) or "(document)"
            line = document.line_of(path)
            # Each member of a union (`runs: true | unknown`) reports; the first one says enough.
            differences.setdefault((line, where), Difference(source.label, line, where, message))
        return None, CaseResult(name, source.label, document.line, tuple(differences.values()))
    try:
        finding = _finding(parsed.spec.finding, source)
    except (ClampdownError, OSError, ValueError) as exc:
        line = document.line_of(("spec", "finding"))
        return None, _broken(source.label, line, parsed.metadata.name, f"finding: {exc}")
    spec = parsed.spec
    case = Case(
        parsed.metadata.name,
        source.label,
        document.line,
        finding,
        spec.expect,
        document,
        spec.offense,
    )
    return case, None


def _broken(path: str, line: int, name: str, message: str) -> CaseResult:
    return CaseResult(name, path, line, (Difference(path, line, "(case)", message),))


def _name_of(data: Any) -> str:
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _finding(spec: FindingInput, source: Source) -> Finding:
    from clampdown.sources import normalize

    if spec.file is not None:
        payload = json.loads(source.base.joinpath(*Path(spec.file).parts).read_text("utf-8"))
    else:
        payload = spec.payload
    findings = normalize(payload, spec.shape)
    if spec.index is not None:
        if spec.index >= len(findings):
            raise ValueError(f"index {spec.index}, but the payload holds {len(findings)}")
        found = findings[spec.index]
    elif len(findings) != 1:
        raise ValueError(f"the payload holds {len(findings)} findings: say which with `index`")
    else:
        found = findings[0]
    if spec.context is not None:
        context = FindingContext.model_validate(spec.context.model_dump())
        found = found.model_copy(update={"context": context})
    return found


def _plain(value: Any) -> Any:
    """YAML reads unquoted timestamps as datetimes; a delivered payload holds strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _data_path(data: Any, loc: tuple[str | int, ...]) -> DataPath:
    """The part of a pydantic location that names real keys and indexes of the data."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(part, str) and "[" in part:
            continue  # a union member's tag such as "literal['unknown']", not a key
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            if isinstance(node, dict) and isinstance(part, str):
                path.append(part)  # a missing key is still worth naming
            break
        path.append(part)
    return tuple(path)


def _dotted(path: DataPath) -> str:
    text = ""
    for part in path[1:] if path[:1] == ("spec",) else path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# Running ---------------------------------------------------------------------------------


def run_cases(
    cases: Sequence[Case],
    playbooks: Matcher | list[Playbook],
    *,
    actions: Mapping[str, type[Action]] = CATALOG,
) -> list[CaseResult]:
    """Run each case against the playbooks."""
    matcher = playbooks if isinstance(playbooks, Matcher) else Matcher(playbooks)
    return [run_case(case, matcher, actions=actions) for case in cases]


def run_case(
    case: Case, matcher: Matcher, *, actions: Mapping[str, type[Action]] = CATALOG
) -> CaseResult:
    """Compare the preview of a case's finding with what the case expects."""
    plan = preview(case.finding, matcher, actions=actions, climb=partial(_offense, case.offense))
    check = _Checker(case)
    for name, message in plan.errors:
        check.fail(("spec", "expect"), f"playbook {name}: `when` failed to evaluate: {message}")
    expected = [e.playbook for e in case.expect]
    actual = [p.name for p in plan.playbooks]
    if expected != actual:
        check.fail(
            ("spec", "expect"),
            "the matched playbooks differ (- expected, + matched)",
            lines=tuple(
                line for line in difflib.ndiff(expected, actual) if not line.startswith("?")
            )
            or ("- (nothing)", "+ (nothing)"),
        )
    else:
        for index, (want, got) in enumerate(zip(case.expect, plan.playbooks, strict=True)):
            check.playbook(("spec", "expect", index), want, got)
    differences = tuple(sorted(check.differences, key=lambda d: d.line))
    return CaseResult(case.name, case.path, case.line, differences, plan)


class _Checker:
    """Collects the differences of one case, each with the line of the expectation."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.differences: list[Difference] = []

    def fail(
        self,
        path: DataPath,
        message: str,
        *,
        expected: Any = _ABSENT,
        actual: Any = _ABSENT,
        lines: tuple[str, ...] = (),
    ) -> None:
        line = self.case.document.line_of(path)
        self.differences.append(
            Difference(self.case.path, line, _dotted(path), message, expected, actual, lines)
        )

    def same(self, path: DataPath, expected: Any, actual: Any, what: str = "differs") -> None:
        if not _equal(expected, actual):
            self.fail(path, what, expected=expected, actual=actual)

    def playbook(self, path: DataPath, want: ExpectedPlaybook, got: PlaybookPreview) -> None:
        if want.mode is not None:
            self.same((*path, "mode"), want.mode.value, got.mode.value)
        if want.needs_approval is not None:
            self.same((*path, "needs_approval"), want.needs_approval, got.needs_approval)
        if want.group_key is not None:
            self.same((*path, "group_key"), want.group_key, got.group_key)
        if want.rung is not None:
            rung = got.ladder["rung"] if got.ladder is not None else None
            self.same((*path, "rung"), want.rung, rung)
        if got.problem:
            self.fail(path, f"playbook {got.name}: {got.problem}")
        given = want.steps
        if given is None:
            for step in got.steps:
                if step.problem:
                    self.fail(path, f"step {step.id} would fail: {step.problem}")
            return
        if len(given) != len(got.steps):
            self.fail(
                (*path, "steps"),
                f"the playbook has {len(got.steps)} step(s), the case lists {len(given)}",
                expected=[s.id or s.uses for s in given],
                actual=[s.id for s in got.steps],
            )
            return
        for index, (step_want, step_got) in enumerate(zip(given, got.steps, strict=True)):
            self.step((*path, "steps", index), step_want, step_got)

    def step(self, path: DataPath, want: ExpectedStep, got: StepPreview) -> None:
        given = want.model_fields_set
        for name in ("id", "uses", "target"):
            value = getattr(want, name)
            if value is not None:
                self.same((*path, name), value, getattr(got, name))
        if want.runs is not None:
            runs = "unknown" if got.runs is None else got.runs
            self.same((*path, "runs"), want.runs, runs)
        if "expires" in given:
            expires = parse_duration(want.expires) if want.expires is not None else None
            if expires != got.expires:
                self.fail(
                    (*path, "expires"),
                    "differs",
                    expected=want.expires,
                    actual=_duration(got),
                )
        if "contains" in given:
            self.contains((*path, "contains"), want.contains, got)
        if want.with_ is not None:
            self.subset((*path, "with"), want.with_, got.params)
        if want.problem is not None:
            if want.problem not in got.problem:
                self.fail(
                    (*path, "problem"),
                    "the step's problem differs",
                    expected=want.problem,
                    actual=got.problem or None,
                )
        elif got.problem:
            self.fail(path, f"step {got.id} would fail: {got.problem}")

    def contains(self, path: DataPath, want: ExpectedContainment | None, got: StepPreview) -> None:
        if want is None or got.containment is None:
            if want is not None or got.containment is not None:
                actual = got.containment.as_json() if got.containment else None
                expected = want.model_dump(exclude_unset=True) if want else None
                self.fail(path, "differs", expected=expected, actual=actual)
            return
        actual = got.containment.as_json()
        for name in sorted(want.model_fields_set):
            self.same((*path, name), getattr(want, name), actual[name])

    def subset(self, path: DataPath, want: Any, got: Any) -> None:
        if isinstance(want, dict):
            if not isinstance(got, dict):
                self.fail(path, "differs", expected=want, actual=got)
                return
            for key, value in want.items():
                if key not in got:
                    self.fail((*path, key), "no such parameter", expected=value)
                else:
                    self.subset((*path, key), value, got[key])
        elif isinstance(want, list) and isinstance(got, list):
            if len(want) != len(got):
                self.fail(
                    path, f"{len(got)} item(s), expected {len(want)}", expected=want, actual=got
                )
                return
            for index, (item, other) in enumerate(zip(want, got, strict=True)):
                self.subset((*path, index), item, other)
        else:
            self.same(path, _plain(want), got)


def _offense(offense: int, playbook: Playbook, key: str) -> tuple[int, int]:
    """The ladder as the case's `offense`-th offense within the decay period finds it."""
    top = len(playbook.ladder.rungs) - 1 if playbook.ladder is not None else 0
    return min(offense - 1, top), offense


def _equal(expected: Any, actual: Any) -> bool:
    # YAML's 1 and true are different things to an action; Python's == says they are equal.
    if isinstance(expected, bool) != isinstance(actual, bool):
        return False
    return bool(expected == actual)


def _duration(step: StepPreview) -> str | None:
    return duration_text(step.expires) if step.expires is not None else None


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def untested(playbooks: Sequence[Playbook], cases: Sequence[Case]) -> list[str]:
    """Names of playbooks that no case expects to match."""
    covered = {e.playbook for case in cases for e in case.expect}
    return sorted(p.name for p in playbooks if p.name not in covered)
