"""finding.update: write a finding's state back to the detector that raised it.

The finding is the remediation's own: a Graph security alert goes back through a `graph`
target, a Defender for Cloud alert through a `defender` target (see each target's page for
how the alert is found and how the states map).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clampdown.actions.contract import Action, ActionContext, ActionResult, Params
from clampdown.errors import PreconditionError

FindingState = Literal["in_progress", "resolved", "dismissed", "active"]


class UpdateParams(Params):
    """The state to set, and a comment where the source keeps one."""

    state: FindingState
    comment: str = Field(
        default="",
        max_length=5000,
        description="added to the alert where the source keeps comments (Graph); may hold "
        "finding values, sent as JSON text",
    )


class FindingUpdate(Action):
    name = "finding.update"
    summary = (
        "Set the alert's state at its source (in progress, resolved, dismissed, active): "
        "Microsoft Graph security alerts or Defender for Cloud alerts."
    )
    target_types = ("graph", "defender")
    params = UpdateParams
    # Setting a state twice leaves it set; a comment already on the alert is not added again.
    idempotent = True
    example: ClassVar[dict[str, object]] = {
        "target": "defender",
        "state": "resolved",
        "comment": "Source IP ${{ finding.ip }} blocked at the gateway by Clampdown",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, UpdateParams)
        finding = ctx.briefing.finding if ctx.briefing is not None else {}
        if not finding:
            raise PreconditionError("finding.update needs the remediation's finding")
        if ctx.driver is None:
            raise AssertionError("finding.update only runs on targets with a driver")
        await ctx.driver.update_finding(finding, params.state, params.comment)
        alert = str(finding.get("source_id", ""))
        summary = f"alert {alert} set to {params.state} at {ctx.target_name}"
        if params.comment and ctx.target.type == "defender":
            summary += " (Defender for Cloud keeps no comment)"
        return ActionResult(output={"alert": alert, "state": params.state}, summary=summary)
