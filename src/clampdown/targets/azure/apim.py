"""The `azure-apim` target: containment through Azure API Management policies, over ARM.

Scopes: `*` (the service-level policy, every API), `<apiId>` (one API's policy) and
`<apiId>/<operationId>` (one operation's policy); the ARM id of the service, of one of its
APIs or of one of its operations names the same scope. Names are letters, digits and `. _ -`.

Clampdown owns one marked region in the inbound section of each policy it edits (see
`clampdown.targets.azure.policy`): the owner's policy around it stays byte for byte, the region
holds every containment active at the scope, and when the last one is lifted the region goes,
leaving the policy as it was (or deleting the policy, when Clampdown created it).
- block: an `ip-filter action="forbid"` listing every blocked ip and cidr of the scope;
- throttle: `rate-limit-by-key` for an ip or a subscription (renewal period at most 300 s,
  the rate scaled to it); the strictest limit wins when several apply to one subject;
- disable_endpoint: the operation `<apiId>/<operationId>` answers 403 (`return-response`);
- credential.suspend / reactivate: the subscription's state, with a comment saying why;
- credential.rotate: regenerates the subscription's primary or secondary key.
Every write sends the ETag read (If-Match): when someone else changed the policy meanwhile ARM
answers 412, and the policy is read again and the region applied to the new text.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar
from urllib.parse import quote

from clampdown.actions.contract import ContainmentSpec, HttpPort
from clampdown.errors import ActionError, ConfigError, PermanentError, TransientError
from clampdown.model import ContainmentKind, SubjectType
from clampdown.targets.azure.arm import ArmClient, ArmError, Resource
from clampdown.targets.azure.policy import apply_owned, enforced, read_owned, render_owned
from clampdown.targets.azure.token import Identity, TokenCache
from clampdown.targets.driver import Check, Credential, Driver, Wanted
from clampdown.targets.settings import AzureApimTarget

MAX_ATTEMPTS = 5
"""Reads and writes of one policy or subscription before a conflict is left to the engine."""

_NAME = re.compile(r"[A-Za-z0-9._-]{1,256}")
_ARM_ID = re.compile(
    r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ApiManagement"
    r"/service/([^/]+)((?:/[^/]+/[^/]+)*)",
    re.IGNORECASE,
)
_LEVELS = ("apis", "operations")
_CONTAINED = {
    (ContainmentKind.BLOCK, SubjectType.IP),
    (ContainmentKind.BLOCK, SubjectType.CIDR),
    (ContainmentKind.THROTTLE, SubjectType.IP),
    (ContainmentKind.THROTTLE, SubjectType.SUBSCRIPTION),
}
_RAW = {"format": "rawxml"}


def valid_name(value: str, what: str) -> str:
    """An API, operation or subscription id safe to use as one ARM path segment."""
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise PermanentError(
            f"{value[:100]!r} is not a valid {what} (1 to 256 letters, digits, '.', '_', '-')"
        )
    return value


def policy_path(parts: tuple[str, ...]) -> str:
    """The ARM path of the policy at a scope: () service, (api,) or (api, operation)."""
    prefix = "".join(
        f"/{level}/{quote(name, safe='')}" for level, name in zip(_LEVELS, parts, strict=False)
    )
    return prefix + "/policies/policy"


def describe(parts: tuple[str, ...]) -> str:
    """A scope in words, for messages."""
    if not parts:
        return "the service"
    return ("API " if len(parts) == 1 else "operation ") + "/".join(parts)


class ApimDriver(Driver):
    """Policies, subscription states and keys of one API Management service, over ARM."""

    type: ClassVar[str] = "azure-apim"
    settings: AzureApimTarget

    def __init__(self, name: str, settings: AzureApimTarget, http: HttpPort) -> None:
        super().__init__(name, settings, http)
        identity = Identity.of(name, settings)
        self.tokens = TokenCache(identity, http, timeout=self.timeout)
        self.arm = ArmClient(
            name,
            settings.service_url(),
            settings.api_version,
            self.tokens,
            http,
            timeout=self.timeout,
        )

    # -- scopes --------------------------------------------------------------------------

    def parse_scope(self, scope: str) -> tuple[str, ...]:
        """() for `*`, (api,) or (api, operation); ARM ids of this service are read too."""
        text = scope.strip()
        if text == "*":
            return ()
        if text.startswith("/"):
            return self._from_arm_id(text)
        parts = text.split("/")
        if len(parts) > 2:
            raise PermanentError(
                f"target {self.name}: scope {text[:100]!r} is not '*', '<apiId>' or "
                "'<apiId>/<operationId>'"
            )
        names = zip(parts, ("API id", "operation id"), strict=False)
        return tuple(valid_name(part, what) for part, what in names)

    def _from_arm_id(self, rid: str) -> tuple[str, ...]:
        match = _ARM_ID.fullmatch(rid) if len(rid) <= 2000 else None
        if match is None:
            raise PermanentError(
                f"target {self.name}: {rid[:200]!r} is not the ARM id of an API Management "
                "service, API or operation"
            )
        subscription, group, service, rest = match.groups()
        ours = self.settings
        if (subscription.casefold(), group.casefold(), service.casefold()) != (
            ours.subscription_id.casefold(),
            ours.resource_group.casefold(),
            ours.service_name.casefold(),
        ):
            raise PermanentError(
                f"target {self.name}: {rid[:200]!r} belongs to another API Management service "
                f"than {ours.service_name} in {ours.resource_group}"
            )
        segments = rest.split("/")[1:]
        levels = tuple(level.lower() for level in segments[::2])
        if levels != _LEVELS[: len(levels)]:
            raise PermanentError(
                f"target {self.name}: {rid[:200]!r} names no API or operation of the service"
            )
        return tuple(
            valid_name(name, what)
            for name, what in zip(segments[1::2], ("API id", "operation id"), strict=False)
        )

    # -- gateway -------------------------------------------------------------------------

    def accept(self, spec: ContainmentSpec) -> ContainmentSpec:
        kind, subject_type = spec.kind, spec.subject_type
        if kind is ContainmentKind.DISABLE and subject_type is SubjectType.ENDPOINT:
            try:
                parts = self.parse_scope(spec.subject)
            except PermanentError:
                parts = ()
            if len(parts) != 2:
                raise PermanentError(
                    f"target {self.name}: API Management disables one operation: give the "
                    f"endpoint as '<apiId>/<operationId>' or its ARM id, not {spec.subject[:100]!r}"
                )
            operation = "/".join(parts)
            spec = spec.model_copy(update={"subject": operation, "scope": operation})
        elif (kind, subject_type) in _CONTAINED:
            scope = "/".join(self.parse_scope(spec.scope)) or "*"
            spec = spec.model_copy(update={"scope": scope})
        else:
            refusal = str(self.unsupported(f"{kind.value} a {subject_type.value}"))
            if subject_type is SubjectType.SUBSCRIPTION:
                refusal += " (suspend the subscription with credential.suspend)"
            raise PermanentError(refusal)
        try:
            render_owned([spec])
        except ValueError as exc:
            raise PermanentError(f"target {self.name}: {exc}") from None
        return spec

    async def reconcile(self, scope: str | None, wanted: Wanted) -> None:
        assert scope is not None, "every APIM containment has a scope"
        parts = self.parse_scope(scope)
        path = policy_path(parts)
        for _ in range(MAX_ATTEMPTS):
            # The policy first, then what is wanted: a containment committed in between is
            # then in `wanted`, never lost.
            current = await self.arm.get(path, _RAW)
            text = self._policy_text(current, parts)
            specs = await wanted(scope)
            try:
                new = apply_owned(text, render_owned(specs))
            except ValueError as exc:
                raise PermanentError(
                    f"target {self.name}: cannot edit the policy of {describe(parts)}: {exc}"
                ) from None
            if new == text:
                return
            try:
                await self._write_policy(path, current, new)
                return
            except ArmError as exc:
                if not _conflict(exc, current):
                    raise
        raise TransientError(
            f"target {self.name}: the policy of {describe(parts)} changed {MAX_ATTEMPTS} times "
            "while Clampdown edited it",
            retry_after=1.0,
        )

    async def _write_policy(self, path: str, current: Resource | None, new: str | None) -> None:
        # A policy read without an ETag (never seen from APIM) is written unconditionally.
        if new is None:
            assert current is not None
            try:
                await self.arm.write("DELETE", path, if_match=current.etag or "*")
            except ArmError as exc:
                if exc.status != 404:
                    raise
            return
        body = {"properties": {"format": "rawxml", "value": new}}
        if_match = None if current is None else current.etag or "*"
        await self.arm.write("PUT", path, body, if_match=if_match)

    async def enforces(self, spec: ContainmentSpec) -> bool:
        parts = self.parse_scope(spec.scope)
        current = await self.arm.get(policy_path(parts), _RAW)
        try:
            return _held(spec) in enforced(self._policy_text(current, parts))
        except ValueError:
            return False

    async def probe(self, spec: ContainmentSpec) -> str | None:
        # A throttle lets the first request through, and a probe URL may serve another API
        # than the one a scoped block covers: only service-wide blocks are probed.
        if spec.kind is not ContainmentKind.BLOCK or spec.scope != "*":
            return None
        return await super().probe(spec)

    def _policy_text(self, current: Resource | None, parts: tuple[str, ...]) -> str | None:
        if current is None:
            return None
        value = current.properties.get("value")
        if not isinstance(value, str):
            raise PermanentError(
                f"target {self.name}: ARM returned the policy of {describe(parts)} without text"
            )
        return value

    # -- credentials ---------------------------------------------------------------------

    async def suspend(self, credential: Credential, comment: str) -> dict[str, Any]:
        path, sid = self._subscription(credential)
        for _ in range(MAX_ATTEMPTS):
            found = await self._read_subscription(path, sid)
            state = found.properties.get("state")
            before = {
                "previous_state": state,
                "previous_comment": found.properties.get("stateComment"),
            }
            if state == "suspended" or await self._set_state(path, found, "suspended", comment):
                return before
        raise self._busy(sid)

    async def reactivate(self, credential: Credential, comment: str) -> None:
        path, sid = self._subscription(credential)
        for _ in range(MAX_ATTEMPTS):
            found = await self._read_subscription(path, sid)
            if found.properties.get("state") != "suspended":
                return
            if await self._set_state(path, found, "active", comment):
                return
        raise self._busy(sid)

    async def rotate(self, credential: Credential) -> None:
        path, sid = self._subscription(credential)
        if credential.which not in ("primary", "secondary"):
            raise PermanentError(
                f"target {self.name}: key {credential.which!r} is not 'primary' or 'secondary'"
            )
        action = f"{path}/regenerate{credential.which.capitalize()}Key"
        try:
            await self.arm.write("POST", action)
        except ArmError as exc:
            if exc.status == 404:
                raise self._unknown(sid) from exc
            raise

    async def credential_state(self, credential: Credential) -> str:
        path, sid = self._subscription(credential)
        found = await self._read_subscription(path, sid)
        return str(found.properties.get("state") or "unknown")

    def _subscription(self, credential: Credential) -> tuple[str, str]:
        sid = credential.subscription
        if not sid:
            raise PermanentError(f"target {self.name}: the credential names no subscription")
        return f"/subscriptions/{quote(valid_name(sid, 'subscription id'), safe='')}", sid

    async def _read_subscription(self, path: str, sid: str) -> Resource:
        found = await self.arm.get(path)
        if found is None:
            raise self._unknown(sid)
        return found

    async def _set_state(self, path: str, found: Resource, state: str, comment: str) -> bool:
        """False when someone changed the subscription since it was read (412)."""
        body = {"properties": {"state": state, "stateComment": comment}}
        try:
            await self.arm.write("PATCH", path, body, if_match=found.etag or "*")
        except ArmError as exc:
            if exc.status == 412:
                return False
            raise
        return True

    def _unknown(self, sid: str) -> PermanentError:
        return PermanentError(
            f"target {self.name}: no subscription {sid!r} in service {self.settings.service_name}"
        )

    def _busy(self, sid: str) -> TransientError:
        return TransientError(
            f"target {self.name}: subscription {sid!r} changed {MAX_ATTEMPTS} times while "
            "Clampdown updated it",
            retry_after=1.0,
        )

    # -- operations ----------------------------------------------------------------------

    async def check(self) -> list[Check]:
        ours = self.settings
        try:
            await self.tokens.get()
        except (ActionError, ConfigError) as exc:
            return [Check("sign-in", False, str(exc))]
        checks = [Check("sign-in", True, f"{ours.client_id} in tenant {ours.tenant_id}")]
        for name, step in (
            ("service", self._check_service),
            ("read apis", self._check_apis),
            ("service policy", self._check_policy),
        ):
            try:
                checks.append(Check(name, True, await step()))
            except (ActionError, ConfigError) as exc:
                checks.append(Check(name, False, str(exc)))
                if name == "service":
                    break
        return checks

    async def _check_service(self) -> str:
        ours = self.settings
        found = await self.arm.get("")
        if found is None:
            raise PermanentError(
                f"no API Management service {ours.service_name} in resource group "
                f"{ours.resource_group} of subscription {ours.subscription_id}"
            )
        sku = found.body.get("sku")
        tier = sku.get("name") if isinstance(sku, dict) else None
        return f"{ours.service_name}" + (f" ({tier})" if tier else "")

    async def _check_apis(self) -> str:
        found = await self.arm.get("/apis", {"$top": "1"})
        if found is None:
            raise PermanentError("the list of APIs is not there (404)")
        count = found.body.get("count")
        return "APIs readable" + (f" ({count})" if isinstance(count, int) else "")

    async def _check_policy(self) -> str:
        current = await self.arm.get(policy_path(()), _RAW)
        text = self._policy_text(current, ())
        if text is None:
            return "no service policy yet (writes are not tried)"
        try:
            owned = read_owned(text)
        except ValueError as exc:
            raise PermanentError(f"service policy readable, but not editable: {exc}") from None
        region = ", Clampdown region present" if owned.strip() else ""
        return f"readable{region} (writes are not tried)"


def _conflict(exc: ArmError, current: Resource | None) -> bool:
    """The write lost a race: the policy changed (412) or appeared since it was read."""
    if exc.status == 412:
        return True
    return current is None and exc.status in (400, 409) and "if-match" in str(exc).lower()


def _held(spec: ContainmentSpec) -> tuple[str, str, str]:
    """How `enforced` reports the containment `spec` (ValueError for a malformed subject)."""
    subject = spec.subject
    if spec.kind is ContainmentKind.DISABLE:
        subject = "*"
    elif spec.subject_type is SubjectType.IP:
        subject = str(ipaddress.ip_address(subject))
    elif spec.subject_type is SubjectType.CIDR:
        subject = str(ipaddress.ip_network(subject, strict=False))
    return spec.kind.value, spec.subject_type.value, subject
