"""notify.send to people (webhook, Teams, Slack, email, PagerDuty), and flow.trigger."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import Field

from clampdown.actions.contract import (
    Action,
    ActionContext,
    ActionResult,
    Briefing,
    Closing,
    Params,
)
from clampdown.actions.http import check_status
from clampdown.messages.model import Message, compose
from clampdown.model import JSON
from clampdown.targets.settings import WebhookTarget


class NotifyParams(Params):
    """A message for people: plain text, never markup from a finding."""

    text: str = Field(min_length=1, max_length=20_000)
    title: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class FlowParams(Params):
    """The JSON body handed to the flow."""

    body: dict[str, Any] = Field(default_factory=dict)


async def _post(ctx: ActionContext, body: dict[str, Any]) -> tuple[int, bytes]:
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
    return status, resp_body


class NotifySend(Action):
    name = "notify.send"
    summary = (
        "Tell people: a webhook (JSON), a Teams card, a Slack message, an email, or a "
        "PagerDuty page (resolved when the remediation ends)."
    )
    target_types = ("webhook", "teams", "slack", "smtp", "pagerduty")
    params = NotifyParams
    example: ClassVar[dict[str, object]] = {
        "target": "ops-webhook",
        "text": "Blocked ${{ finding.ip }}: ${{ finding.title }}",
    }

    @classmethod
    def idempotent_on(cls, target_type: str) -> bool:
        # PagerDuty de-duplicates on the dedup key; the other channels would repeat.
        return target_type == "pagerduty"

    @classmethod
    def closes_on(cls, target_type: str) -> bool:
        return target_type == "pagerduty"

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, NotifyParams)
        if ctx.driver is not None:
            sent = await ctx.driver.send(self.message(params, ctx), key=ctx.idempotency_key)
            return ActionResult(output=sent, summary=f"sent to {ctx.target_name}")
        body = {
            "title": params.title,
            "text": params.text,
            "data": params.data,
            "remediation_id": ctx.remediation_id,
            "step": ctx.step_id,
        }
        status, _ = await _post(ctx, body)
        return ActionResult(output={"status": status}, summary=f"delivered ({status})")

    async def close(
        self, params: Params, result: ActionResult, ctx: ActionContext, closing: Closing
    ) -> None:
        assert isinstance(params, NotifyParams)
        if ctx.driver is not None:
            await ctx.driver.resolve(self.message(params, ctx), result.output)

    @staticmethod
    def message(params: NotifyParams, ctx: ActionContext) -> Message:
        """The message of this step: its title and text, and the remediation's briefing."""
        briefing = ctx.briefing or Briefing(
            remediation_id=ctx.remediation_id, playbook="", state="", finding={}
        )
        return compose(params.title, params.text, briefing)


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
        status, answer = await _post(ctx, params.body)
        # A flow with a Response action answers what it likes; later steps may read it.
        output: dict[str, JSON] = {"status": status, "answer": _answer(answer)}
        return ActionResult(output=output, summary=f"flow answered {status}")


def _answer(body: bytes) -> JSON:
    """The flow's answer: JSON when it is JSON, else text (at most 10,000 characters)."""
    if not body:
        return None
    try:
        value: JSON = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:10_000].decode("utf-8", "replace")
    return value if len(body) <= 100_000 else None
