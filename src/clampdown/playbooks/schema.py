"""The playbook document as typed models: what YAML may say, checked field by field.

Expressions and templates are compiled during validation, so a document that validates is
ready to run. Problems found across fields raise `SchemaProblem`, which carries the path of
the offending value so that the loader can point at its line.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

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
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
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


_DURATION_PATTERN = r"^\s*(\d+|(?=\d)(\d+[wW])?(\d+[dD])?(\d+[hH])?(\d+[mM])?(\d+[sS])?)\s*$"
_DURATION_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "pattern": _DURATION_PATTERN},
            {"type": "integer", "minimum": 0},
        ],
        "description": "30s, 15m, 1h, 1d, 1h30m, or a whole number of seconds",
    }
)
Duration = Annotated[timedelta, BeforeValidator(parse_duration), _DURATION_SCHEMA]
PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration), _DURATION_SCHEMA]


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


_CONDITION_SCHEMA = WithJsonSchema(
    {"type": ["string", "boolean"], "description": "a CEL condition giving true or false"}
)
MatchCondition = Annotated[Expression, _condition(MATCH_VARIABLES), _CONDITION_SCHEMA]
StepCondition = Annotated[Expression, _condition(VARIABLES), _CONDITION_SCHEMA]
GroupTemplate = Annotated[
    Template,
    _template(MATCH_VARIABLES),
    WithJsonSchema({"type": "string", "description": "text with ${{ expr }} templates"}),
]


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


def _one_or_many(item: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item}]})


StrList = Annotated[list[str], BeforeValidator(_listify), _one_or_many({"type": "string"})]
KindList = Annotated[
    list[Kind],
    BeforeValidator(_listify),
    _one_or_many({"enum": [kind.value for kind in Kind]}),
]
Threshold = Annotated[
    SeverityThreshold,
    BeforeValidator(_threshold),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*(>=|<=|==|>|<)?\s*[A-Za-z]+\s*$",
            "examples": [">= medium", "high", "== critical"],
            "description": "'>=', '>', '==', '<=' or '<' and informational (info), low, "
            "medium, high or critical; a bare severity means '>='",
        }
    ),
]
With = Annotated[
    WithBlock,
    BeforeValidator(_with_block),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"target": {"type": "string", "description": "a configured target"}},
            "description": "the action's parameters; strings may hold ${{ expr }} templates",
        }
    ),
]


# Models --------------------------------------------------------------------------------


class _Strict(BaseModel):
    # Attribute docstrings become descriptions in the published JSON Schema.
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, use_attribute_docstrings=True
    )


class Metadata(_Strict):
    """Who the document is and who owns it."""

    name: str = Field(pattern=NAME_PATTERN)
    """Unique name: a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit."""
    owner: str = ""
    """Who answers for it."""
    description: str = ""
    """Free text."""


class MatchSpec(_Strict):
    """Which findings the playbook handles; every condition given must hold."""

    types: StrList = Field(default_factory=lambda: ["*"])
    """Finding types, as shell-style globs (*, ?, [...]), case-sensitive; '*' by default."""
    kinds: KindList | None = None
    """alert and/or recommendation; any by default."""
    sources: StrList | None = None
    """Globs on the finding's source (defender, ocsf:*, ...); any by default."""
    severity: Threshold | None = None
    """A severity condition such as '>= medium'."""
    when: MatchCondition | None = None
    """A CEL condition on finding, playbook and vars."""


class GroupSpec(_Strict):
    """How findings are folded into one remediation."""

    by: GroupTemplate = Field(default_factory=lambda: Template(DEFAULT_GROUP_BY))
    """A template giving the group key; the finding's fingerprint by default."""
    window: Duration = Field(default=timedelta(0), json_schema_extra={"default": 0})
    """How long after the first finding others with the same key join its remediation."""


class OnFailure(StrEnum):
    """What a failed step does to the rest of the remediation."""

    STOP = "stop"
    """Fail the remediation and skip the steps after it."""
    CONTINUE = "continue"
    """Record the failure and go on with the next step."""
    UNDO_PREVIOUS = "undo_previous"
    """Undo the earlier steps that can be undone, latest first, then fail the remediation."""


class StepSpec(_Strict):
    """One action call."""

    id: str = Field(pattern=STEP_ID_PATTERN)
    """Unique within the playbook: a-z, 0-9, '_', '-'."""
    uses: str = Field(pattern=ACTION_PATTERN)
    """The action, for example gateway.block."""
    with_: With = Field(default_factory=lambda: WithBlock({}), alias="with")
    """The action's parameters; strings may hold ${{ expr }} templates."""
    if_: StepCondition | None = Field(default=None, alias="if")
    """A CEL condition evaluated just before the step runs; false means skipped."""
    expires: PositiveDuration | None = None
    """After this long the step's effect is undone automatically (reversible actions)."""
    retries: int | None = Field(default=None, ge=0, le=99, strict=True)
    """Retries after a transient failure (attempts = retries + 1); engine.max_attempts if unset."""
    timeout: PositiveDuration | None = None
    """The longest one call of this step may take, all its requests included."""
    on_failure: OnFailure = OnFailure.STOP
    """stop: fail the remediation; continue: go on with the next step; undo_previous: undo
    the earlier steps, latest first, then fail."""


CONTAINMENT_ACTIONS = frozenset({"gateway.block", "gateway.throttle", "gateway.disable_endpoint"})
"""Actions whose effect stays in force until undone."""


class LadderSpec(_Strict):
    """A response ladder: repeat offenders climb to stronger rungs; quiet ones start over."""

    key: GroupTemplate
    """Who the history is kept for, e.g. "${{ finding.ip }}"."""
    decay: PositiveDuration
    """Without a new remediation for this long, the next one starts at the first rung."""
    rungs: list[Annotated[str, Field(pattern=STEP_ID_PATTERN)]] = Field(min_length=1)
    """Rung names, weakest first; steps pick theirs with `if: ladder.rung == "..."`."""


class ApprovalSpec(_Strict):
    """Who may approve, how many must, and what happens when nobody does in time."""

    approvers: StrList = Field(default_factory=list)
    """Token or user names allowed to approve (`alice` or `token:alice`); empty: anyone
    whose token has the approve scope."""
    count: int = Field(default=1, ge=1, le=10, strict=True)
    """Distinct approvals needed."""
    timeout: PositiveDuration | None = None
    """How long to wait for the approvals; none: wait forever."""
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    """What happens at the timeout; `escalate` tells `escalate_to`, waits as long again, then
    rejects."""
    escalate_to: str | None = None
    """A `notify.send` target told when the approval times out (for `escalate`)."""

    @model_validator(mode="after")
    def _escalation_has_a_channel(self) -> ApprovalSpec:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise SchemaProblem(
                "on_timeout: escalate needs escalate_to (a target to tell)", path=("escalate_to",)
            )
        if self.on_timeout != "reject" and self.timeout is None:
            raise SchemaProblem(f"on_timeout: {self.on_timeout} needs a timeout", path=("timeout",))
        return self


class Spec(_Strict):
    """What the playbook matches and does."""

    priority: int = Field(default=0, strict=True)
    """Higher comes first when several playbooks match."""
    exclusive: bool = Field(default=False, strict=True)
    """When this playbook matches, playbooks of lower priority do not run for the finding."""
    match: MatchSpec
    """Which findings; {} matches everything."""
    group: GroupSpec = Field(default_factory=GroupSpec)
    """How findings fold into one remediation."""
    mode: Mode
    """automatic, approval, guided or dry_run."""
    steps: list[StepSpec] = Field(min_length=1)
    """The steps, run in order."""
    approval: ApprovalSpec | None = None
    """The approval policy (mode approval): approvers, how many, and the timeout."""
    ladder: LadderSpec | None = None
    """Escalation per identity over repeated remediations (see `ladder` in expressions)."""

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


# Variables -----------------------------------------------------------------------------


def _plain_value(value: object, path: Path = ()) -> None:
    """Refuse what is not a string, number, boolean, null, list or map with string keys."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SchemaProblem("numbers must be finite", path=path)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _plain_value(item, (*path, index))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaProblem(f"map keys must be strings, not {key!r}", path=path)
            _plain_value(item, (*path, key))
        return
    raise SchemaProblem(
        f"must be a string, number, boolean, list or map, not {type(value).__name__} "
        "(quote dates and times)",
        path=path,
    )


class VariablesSpec(_Strict):
    """Named values every playbook reads as `vars.<name>`."""

    vars: dict[str, Any] = Field(
        description="Names (letters, digits, '_') to strings, numbers, booleans, lists or maps.",
        json_schema_extra={
            "propertyNames": {"pattern": VARIABLE_PATTERN},
            "additionalProperties": {
                "type": ["string", "number", "boolean", "array", "object", "null"]
            },
        },
    )

    @field_validator("vars", mode="before")
    @classmethod
    def _names_and_values(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of names to values")
        for name, item in value.items():
            if not isinstance(name, str) or not re.match(VARIABLE_PATTERN, name):
                raise SchemaProblem(
                    f"{name!r} is not usable as vars.{name}: use letters, digits and '_', "
                    "not starting with a digit",
                    path=(str(name),),
                )
            try:
                Expression(f"vars.{name}")
            except ExpressionCompileError:
                raise SchemaProblem(
                    f"{name!r} is a CEL keyword: vars.{name} would not parse", path=(name,)
                ) from None
            _plain_value(item, (name,))
        return value


class VariablesDocument(_Strict):
    """One YAML document of kind Variables."""

    api_version: Literal["clampdown/v1"] = Field(alias="apiVersion")
    kind: Literal["Variables"]
    metadata: Metadata
    spec: VariablesSpec


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys a model accepts."""
    return [field.alias or name for name, field in model.model_fields.items()]


SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): PlaybookDocument,
    ("metadata",): Metadata,
    ("spec",): Spec,
    ("spec", "match"): MatchSpec,
    ("spec", "group"): GroupSpec,
    ("spec", "approval"): ApprovalSpec,
    ("spec", "ladder"): LadderSpec,
    ("spec", "steps", "*"): StepSpec,
}
"""Which model reads which part of a Playbook document (list indexes written as "*")."""

VARIABLES_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): VariablesDocument,
    ("metadata",): Metadata,
    ("spec",): VariablesSpec,
}
"""The same for a Variables document."""
