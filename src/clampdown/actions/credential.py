"""credential.* verbs: suspend, reactivate, rotate and revoke keys, subscriptions and tokens.

What a credential is depends on the target: an API Management subscription, a Kong key-auth
key of a consumer, or an OAuth token at its authorization server. The driver of the step's
target does the work; these actions give the verbs one shape for playbooks.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clampdown.actions.contract import Action, ActionContext, ActionResult, Params
from clampdown.secrets import fingerprint
from clampdown.targets.driver import Credential


class SubscriptionParams(Params):
    """An API Management subscription, by its id."""

    subscription: str = Field(min_length=1, max_length=256)
    reason: str = ""


class RotateParams(SubscriptionParams):
    """Which of the subscription's two keys to regenerate."""

    key: Literal["primary", "secondary"] = "primary"


class RevokeParams(Params):
    """A Kong consumer's key (consumer + key), or an OAuth token (token + hint)."""

    consumer: str | None = None
    key: str | None = Field(default=None, description="the key itself or its id")
    token: str | None = Field(
        default=None,
        description="the token to revoke (RFC 7009); shown only as a fingerprint",
        json_schema_extra={"secret": True},
    )
    token_type_hint: Literal["access_token", "refresh_token"] | None = None


class Suspend(Action):
    name = "credential.suspend"
    summary = "Suspend a subscription (its keys stop working); undo reactivates it."
    target_types = ("azure-apim",)
    params = SubscriptionParams
    idempotent = True
    reversible = True
    verifiable = True
    example: ClassVar[dict[str, object]] = {
        "target": "apim-prod",
        "subscription": "${{ finding.credentials[0] }}",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, SubscriptionParams)
        comment = f"Suspended by Clampdown, remediation {ctx.remediation_id}"
        if params.reason:
            comment += f": {params.reason}"
        credential = Credential(subscription=params.subscription)
        driver = ctx.target_driver
        # Noted before acting, so that a retry after a lost answer still knows the state the
        # subscription was in before the first attempt suspended it.
        state = await ctx.remember("previous_state", await driver.credential_state(credential))
        before = await driver.suspend(credential, comment)
        before["previous_state"] = state
        return ActionResult(
            output={"subscription": params.subscription},
            undo=before,
            summary=f"subscription {params.subscription} suspended",
        )

    async def undo(self, params: Params, result: ActionResult, ctx: ActionContext) -> None:
        assert isinstance(params, SubscriptionParams)
        if (result.undo or {}).get("previous_state") == "suspended":
            return  # suspended before Clampdown came: that is not Clampdown's to lift
        comment = f"Reactivated by Clampdown: undo of remediation {ctx.remediation_id}"
        await ctx.target_driver.reactivate(Credential(subscription=params.subscription), comment)

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        assert isinstance(params, SubscriptionParams)
        state = await ctx.target_driver.credential_state(
            Credential(subscription=params.subscription)
        )
        return state == "suspended"


class Reactivate(Action):
    name = "credential.reactivate"
    summary = "Reactivate a suspended subscription."
    target_types = ("azure-apim",)
    params = SubscriptionParams
    idempotent = True
    verifiable = True
    example: ClassVar[dict[str, object]] = {"target": "apim-prod", "subscription": "sub-123"}

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, SubscriptionParams)
        comment = f"Reactivated by Clampdown, remediation {ctx.remediation_id}"
        await ctx.target_driver.reactivate(Credential(subscription=params.subscription), comment)
        return ActionResult(summary=f"subscription {params.subscription} active")

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        assert isinstance(params, SubscriptionParams)
        state = await ctx.target_driver.credential_state(
            Credential(subscription=params.subscription)
        )
        return state == "active"


class Rotate(Action):
    name = "credential.rotate"
    summary = "Regenerate a subscription key: the leaked key stops working at once."
    target_types = ("azure-apim",)
    params = RotateParams
    # A second regeneration leaves the leaked key just as dead: retrying is safe.
    idempotent = True
    example: ClassVar[dict[str, object]] = {
        "target": "apim-prod",
        "subscription": "${{ finding.credentials[0] }}",
        "key": "primary",
    }

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, RotateParams)
        await ctx.target_driver.rotate(
            Credential(subscription=params.subscription, which=params.key)
        )
        return ActionResult(summary=f"{params.key} key of {params.subscription} regenerated")


class Revoke(Action):
    name = "credential.revoke"
    summary = "Revoke a credential for good: a Kong key-auth key, or an OAuth token (RFC 7009)."
    target_types = ("kong", "oauth-revocation")
    params = RevokeParams
    # Deleting a deleted key and revoking a revoked token both succeed: retrying is safe.
    idempotent = True
    verifiable = True
    example: ClassVar[dict[str, object]] = {
        "target": "kong-edge",
        "consumer": "${{ finding.users[0] }}",
        "key": "${{ finding.credentials[0] }}",
    }

    @staticmethod
    def credential(params: Params) -> Credential:
        assert isinstance(params, RevokeParams)
        return Credential(
            consumer=params.consumer,
            key=params.key,
            token=params.token,
            token_type_hint=params.token_type_hint,
        )

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        assert isinstance(params, RevokeParams)
        await ctx.target_driver.revoke(self.credential(params))
        secret = params.token or params.key or ""
        # Results are shown and stored: name the credential by its fingerprint only.
        return ActionResult(
            output={"credential": fingerprint(secret)},
            summary=f"credential {fingerprint(secret)} revoked",
        )

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        # "revoked" read back, or "confirmed" where the protocol's answer is the proof
        # (RFC 7009 offers no read-back; its 200 says the token is no longer valid).
        state = await ctx.target_driver.credential_state(self.credential(params))
        return state in {"revoked", "confirmed"}
