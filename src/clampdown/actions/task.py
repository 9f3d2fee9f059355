"""task.create: a guided manual remediation task, tracked to completion like any step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, field_validator

from clampdown.actions.contract import Action, ActionContext, ActionResult, Params, TaskSpec
from clampdown.durations import parse_duration


class TaskParams(Params):
    """What the person should do and why."""

    title: str = Field(min_length=1, max_length=500)
    why: str = ""
    steps: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    owner: str = ""
    due: str | None = Field(default=None, description="how long the owner has, e.g. '3d'")
    evidence: list[str] = Field(default_factory=list, description="what to attach when done")

    @field_validator("due")
    @classmethod
    def _due(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class TaskCreate(Action):
    name = "task.create"
    summary = "Hand a person a guided task; the step completes when they mark it done."
    target_types = ("builtin",)
    params = TaskParams
    idempotent = True
    example: ClassVar[dict[str, object]] = {
        "target": "builtin",
        "title": "Require authentication on ${{ finding.endpoint }}",
        "steps": ["Add validate-jwt to the inbound policy", "Re-run the assessment"],
        "owner": "api-platform@example.com",
        "due": "3d",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, TaskParams)
        due_at = datetime.now(UTC) + parse_duration(params.due) if params.due else None
        spec = TaskSpec(
            title=params.title,
            why=params.why,
            steps=params.steps,
            links=params.links,
            owner=params.owner,
            due_at=due_at,
            evidence=params.evidence,
        )
        task_id = await ctx.tasks.create(spec, key=ctx.idempotency_key)
        return ActionResult(output={"task_id": task_id}, summary="task opened", waiting=True)
