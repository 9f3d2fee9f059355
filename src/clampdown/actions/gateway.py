"""gateway.* verbs: on the built-in list (the decision API enforces it) or a real gateway."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Self

from pydantic import Field, field_validator, model_validator

from clampdown.actions.contract import Action, ActionContext, ActionResult, ContainmentSpec, Params
from clampdown.durations import parse_duration
from clampdown.errors import PermanentError, PreconditionError, VerificationError
from clampdown.model import ContainmentKind, SubjectType

_SUBJECTS = ("ip", "cidr", "api_key", "subscription", "client_id", "user")


class SubjectParams(Params):
    """Exactly one subject to contain, and where."""

    ip: str | None = None
    cidr: str | None = None
    api_key: str | None = None
    subscription: str | None = None
    client_id: str | None = None
    user: str | None = None
    scope: str = Field(default="*", description="'*', a path like '/orders/*', or an API id")
    reason: str = ""

    @field_validator("ip")
    @classmethod
    def _valid_ip(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_address(value.strip()))

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value.strip(), strict=False))

    @field_validator("scope")
    @classmethod
    def _scope_given(cls, value: str) -> str:
        return value.strip() or "*"

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        given = [name for name in _SUBJECTS if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SUBJECTS)} (got {len(given)})")
        return self

    def subject(self) -> tuple[SubjectType, str]:
        """The one subject given."""
        for name in _SUBJECTS:
            value = getattr(self, name)
            if value:
                return SubjectType(name), str(value)
        raise AssertionError("validated to have one subject")

    def containment(self, kind: ContainmentKind) -> ContainmentSpec:
        """What the built-in list should enforce for these parameters."""
        subject_type, subject = self.subject()
        return ContainmentSpec(
            kind=kind,
            subject_type=subject_type,
            subject=subject,
            scope=self.scope,
            reason=self.reason,
        )


class ThrottleParams(SubjectParams):
    """A subject to slow down to `rate` requests per `period` seconds."""

    rate: int = Field(gt=0)
    period: int = Field(default=60, gt=0, le=86_400, description="seconds, or text like '1m'")

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: object) -> object:
        if isinstance(value, str):
            return int(parse_duration(value).total_seconds())
        return value

    def containment(self, kind: ContainmentKind) -> ContainmentSpec:
        """The subject's containment, with its rate."""
        spec = super().containment(kind)
        return spec.model_copy(update={"rate": self.rate, "period_seconds": self.period})


class EndpointParams(Params):
    """An endpoint: a path pattern such as 'GET /orders/*', or an API/operation id."""

    endpoint: str = Field(min_length=1)
    reason: str = ""

    def containment(self, kind: ContainmentKind) -> ContainmentSpec:
        """The endpoint refused whoever calls it."""
        return ContainmentSpec(
            kind=kind,
            subject_type=SubjectType.ENDPOINT,
            subject=self.endpoint,
            scope=self.endpoint,
            reason=self.reason,
        )


GATEWAYS = ("builtin", "azure-apim", "kong", "nginx")


class _Containing(Action):
    """An action about containments of one kind, on the built-in list or a gateway.

    The store records every containment with its target; a gateway's driver then makes the
    scope's enforcement match what is active there (the built-in list needs no driver).
    """

    target_types = GATEWAYS
    idempotent = True
    kind: ClassVar[ContainmentKind]

    def spec(self, params: Params, ctx: ActionContext) -> ContainmentSpec:
        assert isinstance(params, SubjectParams | EndpointParams)
        spec = params.containment(self.kind)
        return ctx.driver.accept(spec) if ctx.driver else spec

    @staticmethod
    async def reconcile(spec: ContainmentSpec, ctx: ActionContext) -> None:
        if ctx.driver:
            unit = ctx.driver.unit(spec)
            async with ctx.driver.serialized(unit):
                await ctx.driver.reconcile(unit, ctx.containments.wanted)


class _Contain(_Containing):
    """Adds one containment; undo lifts it; verify checks it is enforced."""

    reversible = True
    verifiable = True

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        spec = self.spec(params, ctx)
        cid = await ctx.containments.add(spec, key=ctx.idempotency_key, expires_at=ctx.expires_at)
        try:
            await self.reconcile(spec, ctx)
        except (PermanentError, PreconditionError):
            # Not enforced and not retried: the record must not claim otherwise.
            await ctx.containments.remove(cid, reason="the target refused it")
            raise
        return ActionResult(
            output={"containment_id": cid},
            undo={"containment_id": cid},
            summary=f"{spec.kind.value} {spec.subject_type.value} {spec.subject} on {spec.scope}"
            + (f" at {ctx.target_name}" if ctx.driver else ""),
        )

    async def undo(self, params: Params, result: ActionResult, ctx: ActionContext) -> None:
        cid = (result.undo or {}).get("containment_id")
        if not isinstance(cid, str):
            raise PreconditionError("no containment recorded to lift")
        await ctx.containments.remove(cid, reason=f"undo of {ctx.remediation_id}/{ctx.step_id}")
        # Reconciled even when already lifted: an earlier undo may have stopped half way.
        await self.reconcile(self.spec(params, ctx), ctx)

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        cid = result.output.get("containment_id")
        if not (isinstance(cid, str) and await ctx.containments.is_active(cid)):
            return False
        if ctx.driver is None:
            return True
        spec = self.spec(params, ctx)
        if not await ctx.driver.enforces(spec):
            raise VerificationError(f"target {ctx.target_name} does not hold the {spec.kind}")
        refusal = await ctx.driver.probe(spec)
        if refusal is not None:
            raise VerificationError(refusal)
        return True


class Block(_Contain):
    name = "gateway.block"
    kind = ContainmentKind.BLOCK
    summary = "Deny every request from a client (IP, range, key, subscription, client, user)."
    params = SubjectParams
    example: ClassVar[dict[str, object]] = {
        "target": "builtin",
        "ip": "${{ finding.ip }}",
        "scope": "*",
    }


class Throttle(_Contain):
    name = "gateway.throttle"
    kind = ContainmentKind.THROTTLE
    summary = "Limit a client to `rate` requests per `period` seconds."
    params = ThrottleParams
    example: ClassVar[dict[str, object]] = {
        "target": "builtin",
        "ip": "${{ finding.ip }}",
        "rate": 60,
        "period": 60,
    }


class DisableEndpoint(_Contain):
    name = "gateway.disable_endpoint"
    kind = ContainmentKind.DISABLE
    summary = "Refuse every request to an endpoint."
    params = EndpointParams
    example: ClassVar[dict[str, object]] = {
        "target": "builtin",
        "endpoint": "GET /legacy/invoices",
    }


class _Lift(_Containing):
    """Lifts active containments that match; not reversible (the opposite verb re-adds)."""

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        spec = self.spec(params, ctx)
        lifted = await ctx.containments.remove_matching(
            spec, reason=f"{self.name} by {ctx.remediation_id}/{ctx.step_id}"
        )
        await self.reconcile(spec, ctx)
        return ActionResult(output={"lifted": lifted}, summary=f"lifted {len(lifted)}")


class Unblock(_Lift):
    name = "gateway.unblock"
    kind = ContainmentKind.BLOCK
    summary = "Lift blocks on a client."
    params = SubjectParams
    example: ClassVar[dict[str, object]] = {"target": "builtin", "ip": "203.0.113.7"}


class EnableEndpoint(_Lift):
    name = "gateway.enable_endpoint"
    kind = ContainmentKind.DISABLE
    summary = "Serve an endpoint disabled earlier again."
    params = EndpointParams
    example: ClassVar[dict[str, object]] = {
        "target": "builtin",
        "endpoint": "GET /legacy/invoices",
    }
