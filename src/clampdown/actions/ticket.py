"""ticket.* verbs: open, update and resolve a ServiceNow incident or a Jira issue.

A ticket is de-duplicated by a correlation id (by default the alert's id at its source): an
open ticket with the same id is reused rather than another opened, which also makes a retry
after a crash find the ticket it had made. The ticket `ticket.create` opened is resolved when
the remediation ends, whether it succeeded, failed or expired.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from clampdown.actions.contract import (
    Action,
    ActionContext,
    ActionResult,
    Briefing,
    Closing,
    Params,
)
from clampdown.messages.model import compose
from clampdown.targets.driver import Ticket, TicketRef

TARGET_TYPES = ("servicenow", "jira")
_TICKET = "the ticket_id a ticket.create step output (a number or key works too)"


class CreateParams(Params):
    """What the ticket says, how urgent it is, and what de-duplicates it."""

    title: str = Field(min_length=1, max_length=500, description="the ticket's title")
    text: str = Field(default="", max_length=20_000, description="what people should know")
    urgency: int = Field(default=2, ge=1, le=3, description="1 (high) to 3 (low)")
    correlation: str = Field(
        default="",
        max_length=1000,
        description="de-duplicates tickets (empty: the alert's id, else the remediation id)",
    )


class NoteParams(Params):
    """A ticket, by the `ticket_id` ticket.create output, and text to add to it."""

    ticket: str = Field(min_length=1, max_length=200, description=_TICKET)
    text: str = Field(min_length=1, max_length=20_000, description="the note to add")


class ResolveParams(Params):
    """A ticket, and the resolution text (empty: what the remediation did so far)."""

    ticket: str = Field(min_length=1, max_length=200, description=_TICKET)
    text: str = Field(
        default="", max_length=20_000, description="the resolution (empty: what was done)"
    )


def _briefing(ctx: ActionContext) -> Briefing:
    return ctx.briefing or Briefing(
        remediation_id=ctx.remediation_id, playbook="", state="", finding={}
    )


def correlation(params: CreateParams, ctx: ActionContext) -> str:
    """The step's correlation id: given, else the finding's id at its source, else the
    remediation id."""
    source_id = str(_briefing(ctx).finding.get("source_id") or "")
    return params.correlation or source_id or ctx.remediation_id


def ending(closing: Closing) -> str:
    """The resolution text of a remediation that ended: how, why, and what was done."""
    briefing = closing.briefing
    lines = [
        f"Clampdown remediation {briefing.remediation_id} ({briefing.playbook}) ended: "
        f"{closing.state}."
    ]
    if closing.reason and closing.reason != closing.state:
        lines.append(f"Reason: {closing.reason}")
    if briefing.done:
        lines += ["", "Done:"] + [f"- {item}" for item in briefing.done]
    else:
        lines += ["", "Nothing took effect."]
    return "\n".join(lines)


def _ref(ticket: str) -> TicketRef:
    return TicketRef(id=ticket, number=ticket, url="")


class TicketCreate(Action):
    name = "ticket.create"
    summary = (
        "Open a ticket (ServiceNow incident, Jira issue), or reuse the open one with the same "
        "correlation id; it is resolved when the remediation ends."
    )
    target_types = TARGET_TYPES
    params = CreateParams
    # The look-up by correlation id before creating finds a ticket an earlier attempt made.
    idempotent = True
    closes = True
    example: ClassVar[dict[str, object]] = {
        "target": "servicenow-prod",
        "title": "Suspicious access from ${{ finding.ip }} to ${{ finding.api.api }}",
        "text": "Clampdown is containing the client; see the remediation for details.",
        "urgency": 2,
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, CreateParams)
        message = compose(params.title, params.text, _briefing(ctx))
        ticket = Ticket(params.title, message, correlation(params, ctx), params.urgency)
        ref = await ctx.target_driver.open_ticket(ticket)
        return ActionResult(
            output={
                "ticket_id": ref.id,
                "number": ref.number,
                "url": ref.url,
                "reused": ref.reused,
            },
            summary=f"{'reused open ticket' if ref.reused else 'opened'} {ref.number}",
        )

    async def close(
        self, params: Params, result: ActionResult, ctx: ActionContext, closing: Closing
    ) -> None:
        output = result.output
        ref = TicketRef(
            id=str(output["ticket_id"]),
            number=str(output.get("number") or ""),
            url=str(output.get("url") or ""),
            reused=bool(output.get("reused")),
        )
        await ctx.target_driver.resolve_ticket(ref, ending(closing))


class TicketUpdate(Action):
    name = "ticket.update"
    summary = "Add a work note (ServiceNow) or a comment (Jira) to a ticket."
    target_types = TARGET_TYPES
    params = NoteParams
    example: ClassVar[dict[str, object]] = {
        "target": "servicenow-prod",
        "ticket": "${{ steps.ticket.output.ticket_id }}",
        "text": "Blocked ${{ finding.ip }} at the gateway for 1 hour.",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, NoteParams)
        await ctx.target_driver.update_ticket(_ref(params.ticket), params.text)
        return ActionResult(
            output={"ticket_id": params.ticket}, summary=f"noted on {params.ticket}"
        )


class TicketResolve(Action):
    name = "ticket.resolve"
    summary = "Resolve a ticket now, with a resolution text (a resolved ticket stays resolved)."
    target_types = TARGET_TYPES
    params = ResolveParams
    idempotent = True
    example: ClassVar[dict[str, object]] = {
        "target": "servicenow-prod",
        "ticket": "${{ steps.ticket.output.ticket_id }}",
        "text": "Contained: ${{ finding.ip }} is blocked.",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, ResolveParams)
        briefing = _briefing(ctx)
        text = params.text or "\n".join(
            [f"Resolved by Clampdown remediation {briefing.remediation_id}."]
            + [f"- {item}" for item in briefing.done]
        )
        await ctx.target_driver.resolve_ticket(_ref(params.ticket), text)
        return ActionResult(
            output={"ticket_id": params.ticket}, summary=f"resolved {params.ticket}"
        )
