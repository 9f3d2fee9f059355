"""What a set of playbooks would do with a finding, computed without a database or a target.

The matcher picks the playbooks, in the order the planner plans them. Each step's `with` is
rendered with the finding's context as the executor renders it; a value that needs an earlier
step's output cannot be known before the run, so it is shown as its template text and listed
in `StepPreview.unknown`. An `if` is evaluated when it does not read earlier steps. A playbook
with a response ladder is previewed at the rung the `climb` callable gives (by default the
first offense: a preview has no history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from clampdown.actions.contract import Action, ContainmentSpec, Params
from clampdown.actions.registry import CATALOG
from clampdown.errors import ExpressionError
from clampdown.model import JSON, Finding, Mode
from clampdown.playbooks.expressions import Template, render_value
from clampdown.playbooks.loader import Playbook, Step
from clampdown.playbooks.matcher import Matcher
from clampdown.playbooks.schema import CONTAINMENT_ACTIONS

_STEPS = "steps"
_KEY_LIMIT = 500
"""The longest ladder key kept (as the planner keeps it)."""

Climb = Callable[[Playbook, str], tuple[int, int]]
"""One more offense on a playbook's ladder by a key: (rung level, offenses since the reset)."""


def first_offense(playbook: Playbook, key: str) -> tuple[int, int]:
    """The rung of an identity without history: the first."""
    return 0, 1


@dataclass(frozen=True, slots=True)
class ContainmentPreview:
    """What a containing step would hold; None where it cannot be known before the run."""

    kind: str
    subject_type: str | None = None
    subject: str | None = None
    scope: str | None = None
    rate: int | None = None
    period_seconds: int | None = None

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for JSON output."""
        return {
            "kind": self.kind,
            "subject_type": self.subject_type,
            "subject": self.subject,
            "scope": self.scope,
            "rate": self.rate,
            "period_seconds": self.period_seconds,
        }


@dataclass(frozen=True, slots=True)
class StepPreview:
    """One step as it would be called."""

    id: str
    uses: str
    line: int
    params: dict[str, Any]
    """The rendered `with`; values in `unknown` hold their template text instead."""
    unknown: tuple[str, ...]
    """Paths (`body.text`, `steps[0]`) of values that need earlier steps' outputs."""
    condition: str | None
    runs: bool | None
    """False when `if` is false for this finding, None when `if` reads earlier steps."""
    expires: timedelta | None
    containment: ContainmentPreview | None
    problem: str = ""
    """Why the step would fail when it runs (a failing expression, invalid parameters)."""
    on_failure: str = "stop"

    @property
    def target(self) -> str | None:
        """The target named by the rendered parameters."""
        target = self.params.get("target")
        return target if isinstance(target, str) else None

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for JSON output."""
        return {
            "id": self.id,
            "uses": self.uses,
            "line": self.line,
            "target": self.target,
            "with": self.params,
            "unknown": list(self.unknown),
            "if": self.condition,
            "runs": self.runs,
            "expires": duration_text(self.expires) if self.expires else None,
            "containment": self.containment.as_json() if self.containment else None,
            "on_failure": self.on_failure,
            "problem": self.problem or None,
        }


@dataclass(frozen=True, slots=True)
class PlaybookPreview:
    """One matched playbook and what it would do."""

    playbook: Playbook
    group_key: str
    steps: tuple[StepPreview, ...]
    problem: str = ""
    """Set when the group key could not be computed (the planner falls back to the fingerprint)."""
    ladder: dict[str, Any] | None = None
    """The rung reached, as steps see it (`ladder.rung`), for a playbook with a ladder."""

    @property
    def name(self) -> str:
        """The playbook's name."""
        return self.playbook.name

    @property
    def mode(self) -> Mode:
        """The playbook's mode."""
        return self.playbook.mode

    @property
    def needs_approval(self) -> bool:
        """True when a person must approve before any step runs."""
        return self.playbook.mode is Mode.APPROVAL

    @property
    def containments(self) -> list[ContainmentPreview]:
        """What the steps that may run would contain."""
        return [
            s.containment for s in self.steps if s.containment is not None and s.runs is not False
        ]

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for JSON output."""
        return {
            "playbook": self.name,
            "path": self.playbook.path,
            "line": self.playbook.line,
            "priority": self.playbook.priority,
            "mode": self.mode.value,
            "needs_approval": self.needs_approval,
            "group_key": self.group_key,
            "group_window": duration_text(self.playbook.group_window),
            "exclusive": self.playbook.exclusive,
            "approval": _approval_json(self.playbook) if self.needs_approval else None,
            "ladder": self.ladder,
            "steps": [step.as_json() for step in self.steps],
            "problem": self.problem or None,
        }


@dataclass(frozen=True, slots=True)
class Preview:
    """The plan for one finding: matched playbooks best first, and `when` conditions that failed."""

    finding: Finding
    playbooks: tuple[PlaybookPreview, ...]
    errors: tuple[tuple[str, str], ...] = field(default=())
    """(playbook name, message) for each `when` that failed to evaluate (counted as no match)."""

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for JSON output."""
        return {
            "finding": {
                "source": self.finding.source,
                "source_id": self.finding.source_id,
                "kind": self.finding.kind.value,
                "type": self.finding.type,
                "severity": self.finding.severity.value,
            },
            "playbooks": [p.as_json() for p in self.playbooks],
            "errors": [{"playbook": name, "message": msg} for name, msg in self.errors],
        }


def preview(
    finding: Finding,
    playbooks: Matcher | list[Playbook],
    *,
    actions: Mapping[str, type[Action]] = CATALOG,
    climb: Climb = first_offense,
) -> Preview:
    """What `playbooks` would plan and call for `finding`; nothing is stored or sent."""
    matcher = playbooks if isinstance(playbooks, Matcher) else Matcher(playbooks)
    result = matcher.evaluate(finding)
    view = finding.expression_view()
    previews = tuple(preview_playbook(p, finding, view, actions, climb) for p in result.playbooks)
    errors = tuple((p.name, str(exc)) for p, exc in result.errors)
    return Preview(finding, previews, errors)


def preview_playbook(
    playbook: Playbook,
    finding: Finding,
    view: dict[str, JSON] | None = None,
    actions: Mapping[str, type[Action]] = CATALOG,
    climb: Climb = first_offense,
) -> PlaybookPreview:
    """What one playbook would do with `finding` (whether or not it matches)."""
    view = finding.expression_view() if view is None else view
    problem = ""
    try:
        playbook.group_key(view)
    except ExpressionError as exc:
        problem = f"group.by: {exc}; the finding's fingerprint is used instead"
    # The planner's own choice, fallback included, so grouping is simulated as it would run.
    group_key = playbook.group_key_or_fingerprint(view, finding.fingerprint)
    ladder = ladder_context(playbook, view, climb)
    # As the executor sees it: `ladder` is {} for a playbook without one.
    context = {**playbook.context(view), "ladder": ladder or {}}
    steps = tuple(_preview_step(step, context, actions) for step in playbook.steps)
    return PlaybookPreview(playbook, group_key, steps, problem, ladder)


def ladder_context(
    playbook: Playbook, view: Mapping[str, JSON], climb: Climb
) -> dict[str, Any] | None:
    """The rung a new remediation of `playbook` is planned at, as `ladder` sees it.

    None without a ladder. A finding without a key (nobody to keep a history for) is at the
    first rung and is not recorded.
    """
    spec = playbook.ladder
    if spec is None:
        return None
    try:
        key = playbook.ladder_key(view)
    except ExpressionError:
        key = ""
    if not key:
        return {"key": "", "level": 0, "rung": spec.rungs[0], "offenses": 1}
    level, offenses = climb(playbook, key[:_KEY_LIMIT])
    return {"key": key, "level": level, "rung": spec.rungs[level], "offenses": offenses}


def _approval_json(playbook: Playbook) -> dict[str, JSON]:
    policy = playbook.approval
    if policy is None:
        return {"approvers": [], "count": 1, "timeout": None, "on_timeout": "reject"}
    return {
        "approvers": list(policy.approvers),
        "count": policy.count,
        "timeout": duration_text(policy.timeout) if policy.timeout else None,
        "on_timeout": policy.on_timeout,
        "escalate_to": policy.escalate_to,
    }


def _preview_step(
    step: Step, context: dict[str, Any], actions: Mapping[str, type[Action]]
) -> StepPreview:
    problems: list[str] = []
    runs: bool | None = True
    if step.if_ is not None:
        if _STEPS in step.if_.needs.variables:
            runs = None
        else:
            try:
                runs = step.should_run(context)
            except ExpressionError as exc:
                runs = None
                problems.append(f"if: {exc}")
    unknown: list[str] = []
    params: dict[str, Any] = {}
    for key, value in step.compiled_with.items():
        try:
            params[key] = _render_known(value, context, key, unknown)
        except ExpressionError as exc:
            params[key] = step.with_.get(key)
            unknown.append(key)
            problems.append(f"with.{key}: {exc}")
    action = actions.get(step.uses)
    validated: Params | None = None
    if action is None:
        problems.append(f"unknown action {step.uses!r}")
    elif not unknown:
        try:
            validated = action.params.model_validate(params)
        except ValidationError as exc:
            problems.append("parameters: " + _validation_text(exc))
    containment = _containment(step.uses, action, validated)
    return StepPreview(
        id=step.id,
        uses=step.uses,
        line=step.line,
        params=params,
        unknown=tuple(unknown),
        condition=step.if_.source if step.if_ is not None else None,
        runs=runs,
        expires=step.expires,
        containment=containment,
        problem="; ".join(problems) if runs is not False else "",
        on_failure=step.on_failure.value,
    )


def _render_known(compiled: Any, context: dict[str, Any], path: str, unknown: list[str]) -> Any:
    """Render every template that reads only the finding; keep the others' text."""
    if isinstance(compiled, Template):
        if _STEPS in compiled.needs.variables:
            unknown.append(path)
            return compiled.source
        return render_value(compiled, context)
    if isinstance(compiled, Mapping):
        return {k: _render_known(v, context, f"{path}.{k}", unknown) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [_render_known(v, context, f"{path}[{i}]", unknown) for i, v in enumerate(compiled)]
    return compiled


def _containment(
    uses: str, action: type[Action] | None, params: Params | None
) -> ContainmentPreview | None:
    if uses not in CONTAINMENT_ACTIONS:
        return None
    kind = getattr(action, "kind", None)
    build = getattr(params, "containment", None)
    if kind is None:
        return ContainmentPreview(kind=uses.rpartition(".")[2])
    if build is None:
        return ContainmentPreview(kind=str(kind))
    spec: ContainmentSpec = build(kind)
    return ContainmentPreview(
        kind=spec.kind.value,
        subject_type=spec.subject_type.value,
        subject=spec.subject,
        scope=spec.scope,
        rate=spec.rate,
        period_seconds=spec.period_seconds,
    )


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'with'}: {e['msg']}" for e in exc.errors()
    )


def duration_text(value: timedelta) -> str:
    """A duration as playbooks write it: 0, 45s, 1h, 1h30m, 7d."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0"
    text = ""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            text += f"{count}{unit}"
    return text
