"""notify.send through a generic webhook, and flow.trigger (Power Automate / Logic Apps)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from clampdown.actions.contract import Action, ActionContext, ActionResult, Params
from clampdown.actions.http import check_status
from clampdown.targets.settings import WebhookTarget


class NotifyParams(Params):
    """A message for people: plain text, never markup from a finding."""

    text: str = Field(min_length=1, max_length=20_000)
    title: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class FlowParams(Params):
    """The JSON body handed to the flow."""

    body: dict[str, Any] = Field(default_factory=dict)


async def _post(ctx: ActionContext, body: dict[str, Any]) -> int:
    target = ctx.target
    assert isinstance(target, WebhookTarget)  # flow targets are webhooks too
    url = target.resolve_url()
    headers = {
        **target.headers,
        "Idempotency-Key": ctx.idempotency_key,
        "X-Clampdown-Remediation": ctx.remediation_id,
    }
    status, resp_headers, resp_body = await ctx.http.post_json(
        url, body, headers=headers, timeout=ctx.target.timeout
    )
    check_status(ctx.target_name, status, resp_headers, resp_body)
    return status


class NotifySend(Action):
    name = "notify.send"
    summary = "Send a message to a webhook (JSON with text, title, data and the remediation id)."
    target_types = ("webhook",)
    params = NotifyParams
    example: ClassVar[dict[str, object]] = {
        "target": "ops-webhook",
        "text": "Blocked ${{ finding.ip }}: ${{ finding.title }}",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, NotifyParams)
        body = {
            "title": params.title,
            "text": params.text,
            "data": params.data,
            "remediation_id": ctx.remediation_id,
            "step": ctx.step_id,
        }
        status = await _post(ctx, body)
        return ActionResult(output={"status": status}, summary=f"delivered ({status})")


class FlowTrigger(Action):
    name = "flow.trigger"
    summary = "Start a Power Automate or Logic Apps flow through its HTTP trigger URL (a secret)."
    target_types = ("flow",)
    params = FlowParams
    example: ClassVar[dict[str, object]] = {
        "target": "remediation-flow",
        "body": {"alert": "${{ finding.source_id }}", "ip": "${{ finding.ip }}"},
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, FlowParams)
        status = await _post(ctx, params.body)
        return ActionResult(output={"status": status}, summary=f"flow accepted ({status})")
