"""The playbook document as typed models: what YAML may say, checked field by field.

Expressions and templates are compiled during validation, so a document that validates is
ready to run. Problems found across fields raise `SchemaProblem`, which carries the path of
the offending value so that the loader can point at its line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from clampdown.durations import parse_duration
from clampdown.model import Kind, Mode, Severity
from clampdown.playbooks.expressions import (
    MATCH_VARIABLES,
    VARIABLES,
    Expression,
    ExpressionCompileError,
    ExpressionEvaluationError,
    Path,
    Template,
    compile_value,
)

API_VERSION = "clampdown/v1"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
STEP_ID_PATTERN = r"^[a-z0-9_-]+$"
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
DEFAULT_GROUP_BY = "${{ finding.fingerprint }}"


class SchemaProblem(ValueError):
    """A validation problem located at `path` below the value being validated."""

    def __init__(
        self, message: str, *, path: Path = (), compile_error: ExpressionCompileError | None = None
    ) -> None:
        self.path = path
        self.compile_error = compile_error
        super().__init__(message)


# Durations -----------------------------------------------------------------------------


def _positive_duration(value: object) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("must be longer than zero")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration)]


# Severity thresholds -------------------------------------------------------------------

_THRESHOLD = re.compile(r"\s*(>=|<=|==|>|<)?\s*([A-Za-z]+)\s*")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True, slots=True)
class SeverityThreshold:
    """A condition on severity such as ">= medium"; a bare severity means ">=" it."""

    op: str
    severity: Severity

    @classmethod
    def parse(cls, text: str) -> SeverityThreshold:
        """Read ">= medium", "== high", "low", ..."""
        found = _THRESHOLD.fullmatch(text)
        if found is None:
            raise ValueError(f"not a severity condition: {text!r} (use for example '>= medium')")
        try:
            severity = Severity.parse(found.group(2))
        except ValueError:
            names = ", ".join(s.value for s in Severity)
            raise ValueError(f"unknown severity {found.group(2)!r} (one of {names})") from None
        return cls(found.group(1) or ">=", severity)

    @property
    def ranks(self) -> frozenset[int]:
        """The severity ranks (0..4) that satisfy the condition; empty when none can."""
        compare = _COMPARE[self.op]
        return frozenset(s.rank for s in Severity if compare(s.rank, self.severity.rank))

    def admits(self, severity: Severity) -> bool:
        """True when `severity` satisfies the condition."""
        return severity.rank in self.ranks

    def __str__(self) -> str:
        return f"{self.op} {self.severity.value}"


def _threshold(value: object) -> SeverityThreshold:
    if isinstance(value, SeverityThreshold):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string such as '>= medium'")
    return SeverityThreshold.parse(value)


# Expressions ---------------------------------------------------------------------------


def _source_text(value: object) -> str:
    # YAML reads `when: true` as a boolean; CEL spells it the same way.
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        raise ValueError("must be a CEL expression (a string)")
    return value


def _condition(allowed: frozenset[str]) -> Any:
    def validate(value: object) -> Expression:
        if isinstance(value, Expression):
            return value
        source = _source_text(value)
        try:
            expression = Expression(source, allowed=allowed)
        except ExpressionCompileError as exc:
            raise SchemaProblem(str(exc), compile_error=exc) from exc
        if expression.is_constant:
            # A constant condition is evaluated now: a certain failure is a load error.
            try:
                result = expression.evaluate({})
            except ExpressionEvaluationError as exc:
                error = ExpressionCompileError(source, f"always fails: {exc.reason}")
                raise SchemaProblem(str(error), compile_error=error) from exc
            if not isinstance(result, bool):
                error = ExpressionCompileError(
                    source, f"must give true or false, gives {type(result).__name__}"
                )
                raise SchemaProblem(str(error), compile_error=error)
        return expression

    return BeforeValidator(validate)


def _template(allowed: frozenset[str]) -> Any:
    def validate(value: object) -> Template:
        if isinstance(value, Template):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a string")
        try:
            return Template(value, allowed=allowed)
        except ExpressionCompileError as exc:
            raise SchemaProblem(str(exc), compile_error=exc) from exc

    return BeforeValidator(validate)


MatchCondition = Annotated[Expression, _condition(MATCH_VARIABLES)]
StepCondition = Annotated[Expression, _condition(VARIABLES)]
GroupTemplate = Annotated[Template, _template(MATCH_VARIABLES)]


class WithBlock:
    """A step's `with` mapping: the raw YAML values and their compiled form."""

    __slots__ = ("compiled", "raw")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.compiled: dict[str, Any] = compile_value(raw)

    def __repr__(self) -> str:
        return f"WithBlock({self.raw!r})"


def _with_block(value: object) -> WithBlock:
    if isinstance(value, WithBlock):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of parameter names to values")
    for key in value:
        if not isinstance(key, str):
            raise SchemaProblem(f"parameter names must be strings, not {key!r}", path=(str(key),))
    try:
        return WithBlock(value)
    except ExpressionCompileError as exc:
        raise SchemaProblem(str(exc), path=exc.path, compile_error=exc) from exc


def _listify(value: object) -> object:
    # A single pattern is accepted where a list is expected: `types: API_Spike*`.
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_listify)]


# Models --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Metadata(_Strict):
    """Who the playbook is and who owns it."""

    name: str = Field(pattern=NAME_PATTERN)
    owner: str = ""
    description: str = ""


class MatchSpec(_Strict):
    """Which findings the playbook handles; every condition given must hold."""

    types: StrList = Field(default_factory=lambda: ["*"])
    kinds: Annotated[list[Kind], BeforeValidator(_listify)] | None = None
    sources: StrList | None = None
    severity: Annotated[SeverityThreshold, BeforeValidator(_threshold)] | None = None
    when: MatchCondition | None = None


class GroupSpec(_Strict):
    """How findings are folded into one remediation."""

    by: GroupTemplate = Field(default_factory=lambda: Template(DEFAULT_GROUP_BY))
    window: Duration = timedelta(0)


class StepSpec(_Strict):
    """One action call."""

    id: str = Field(pattern=STEP_ID_PATTERN)
    uses: str = Field(pattern=ACTION_PATTERN)
    with_: Annotated[WithBlock, BeforeValidator(_with_block)] = Field(
        default_factory=lambda: WithBlock({}), alias="with"
    )
    if_: StepCondition | None = Field(default=None, alias="if")
    expires: PositiveDuration | None = None


CONTAINMENT_ACTIONS = frozenset({"gateway.block", "gateway.throttle", "gateway.disable_endpoint"})
"""Actions whose effect stays in force until undone."""


class Spec(_Strict):
    """What the playbook matches and does."""

    priority: int = Field(default=0, strict=True)
    match: MatchSpec
    group: GroupSpec = Field(default_factory=GroupSpec)
    mode: Mode
    steps: list[StepSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_step_ids(self) -> Spec:
        for problem in duplicate_step_ids([{"id": step.id} for step in self.steps]):
            raise problem
        return self

    @model_validator(mode="after")
    def _unattended_containment_expires(self) -> Spec:
        # A safety rail: a containment nobody approved must lift itself.
        if self.mode is Mode.APPROVAL:
            return self
        for index, step in enumerate(self.steps):
            if step.uses in CONTAINMENT_ACTIONS and step.expires is None:
                raise SchemaProblem(
                    f"{step.uses} runs without approval, so it must expire: add `expires`, "
                    "or use mode: approval",
                    path=("steps", index, "expires"),
                )
        return self


def duplicate_step_ids(steps: object) -> list[SchemaProblem]:
    """A problem for each step whose id an earlier step already has (raw or parsed steps)."""
    problems = []
    seen: dict[str, int] = {}
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        step_id = step.get("id") if isinstance(step, dict) else None
        if not isinstance(step_id, str):
            continue
        if step_id in seen:
            message = f"duplicate step id {step_id!r}, also steps[{seen[step_id]}]"
            problems.append(SchemaProblem(message, path=("steps", index, "id")))
        else:
            seen[step_id] = index
    return problems


class PlaybookDocument(_Strict):
    """One YAML document of kind Playbook."""

    api_version: Literal["clampdown/v1"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    spec: Spec


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys a model accepts."""
    return [field.alias or name for name, field in model.model_fields.items()]


SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): PlaybookDocument,
    ("metadata",): Metadata,
    ("spec",): Spec,
    ("spec", "match"): MatchSpec,
    ("spec", "group"): GroupSpec,
    ("spec", "steps", "*"): StepSpec,
}
"""Which model reads which part of the document (list indexes written as "*")."""
