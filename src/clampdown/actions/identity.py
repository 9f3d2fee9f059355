"""identity.* verbs: revoke sessions, disable accounts, confirm users compromised.

Identities live in a directory (Microsoft Entra ID, through a `graph` target). User ids and
user principal names usually come from an alert: the driver checks them strictly before
they reach a URL.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from clampdown.actions.contract import Action, ActionContext, ActionResult, Params
from clampdown.targets.driver import Principal


class UserParams(Params):
    """One user, by object id or user principal name."""

    user: str = Field(min_length=1, max_length=256, description="object id or user principal name")


class DisableParams(Params):
    """A user or a service principal: exactly one of the two."""

    user: str | None = Field(
        default=None, min_length=1, max_length=256, description="object id or user principal name"
    )
    service_principal: str | None = Field(
        default=None, min_length=1, max_length=64, description="the service principal's object id"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DisableParams:
        if (self.user is None) == (self.service_principal is None):
            raise ValueError("give either user or service_principal")
        return self

    def principal(self) -> Principal:
        """The identity these parameters name."""
        if self.user is not None:
            return Principal(self.user, "user")
        assert self.service_principal is not None
        return Principal(self.service_principal, "service_principal")


class UsersParams(Params):
    """Users, by object id or user principal name."""

    users: list[str] = Field(
        min_length=1, max_length=500, description="object ids or user principal names"
    )


def _describe(principal: Principal) -> str:
    kind = "service principal" if principal.kind == "service_principal" else "user"
    return f"{kind} {principal.id}"


class RevokeSessions(Action):
    name = "identity.revoke_sessions"
    summary = (
        "Revoke a user's sign-in sessions and refresh tokens: every app asks to sign in again."
    )
    target_types = ("graph",)
    params = UserParams
    # Revoking twice only moves the cut-off time: retrying is safe.
    idempotent = True
    example: ClassVar[dict[str, object]] = {"target": "entra", "user": "${{ finding.users[0] }}"}

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, UserParams)
        await ctx.target_driver.revoke_sessions(params.user)
        return ActionResult(
            output={"user": params.user}, summary=f"sign-in sessions of {params.user} revoked"
        )


class Disable(Action):
    name = "identity.disable"
    summary = (
        "Disable a user or a service principal (it can no longer sign in); undo enables it "
        "again, unless it was already disabled."
    )
    target_types = ("graph",)
    params = DisableParams
    idempotent = True
    reversible = True
    verifiable = True
    example: ClassVar[dict[str, object]] = {"target": "entra", "user": "${{ finding.users[0] }}"}

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, DisableParams)
        principal = params.principal()
        driver = ctx.target_driver
        # Noted before acting: a retry after a lost answer must not take "already disabled"
        # (by the first attempt) for the state the account was in.
        was_enabled = await ctx.remember("was_enabled", await driver.account_enabled(principal))
        await driver.set_enabled(principal, False)
        was_enabled = was_enabled is True
        what = _describe(principal)
        return ActionResult(
            output={"principal": principal.id, "kind": principal.kind, "was_enabled": was_enabled},
            undo={"was_enabled": was_enabled},
            summary=f"{what} disabled" if was_enabled else f"{what} was already disabled",
        )

    async def undo(self, params: Params, result: ActionResult, ctx: ActionContext) -> None:
        assert isinstance(params, DisableParams)
        if (result.undo or {}).get("was_enabled") is not True:
            return  # disabled before Clampdown came: not Clampdown's to enable
        await ctx.target_driver.set_enabled(params.principal(), True)

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        assert isinstance(params, DisableParams)
        return not await ctx.target_driver.account_enabled(params.principal())


class ConfirmCompromised(Action):
    name = "identity.confirm_compromised"
    summary = (
        "Mark users as confirmed compromised in Identity Protection (their risk becomes high)."
    )
    target_types = ("graph",)
    params = UsersParams
    # A second confirmation leaves the risk where the first put it.
    idempotent = True
    example: ClassVar[dict[str, object]] = {"target": "entra", "users": "${{ finding.users }}"}

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, UsersParams)
        await ctx.target_driver.confirm_compromised(list(params.users))
        count = len(params.users)
        return ActionResult(
            output={"users": list(params.users)},
            summary=f"{count} user{'s' if count != 1 else ''} confirmed compromised",
        )
