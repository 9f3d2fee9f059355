"""What a target type implements, and the pool that keeps one driver per configured target.

A gateway driver never tracks containments itself: the store holds every containment with
the target that enforces it, and `reconcile` makes one scope of the gateway match the
containments active there. Merging (several containments on one scope), unmerging on undo,
repeats and recovery after a crash all follow from that one operation.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from clampdown.errors import PermanentError

if TYPE_CHECKING:
    from clampdown.actions.contract import ContainmentSpec, HttpPort
    from clampdown.messages.model import Message
    from clampdown.targets.settings import Probe

# Reads the containments active on this target at one scope (None: every scope).
Wanted = Callable[[str | None], Awaitable[list["ContainmentSpec"]]]


def literal_request(endpoint: str) -> tuple[str, str] | None:
    """('GET', '/a/b') for an endpoint 'GET /a/b' without wildcards; None otherwise."""
    method, _, path = endpoint.strip().partition(" ")
    if not path.startswith("/") or "*" in path or not method.isalpha():
        return None
    return method.upper(), path


@dataclass(frozen=True)
class Check:
    """One line of `targets check`: what was tried, whether it worked, and why not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Ticket:
    """A ticket to open: its title, the message it describes, and a correlation id."""

    title: str
    message: Message
    correlation: str
    """De-duplicates: an open ticket with this id is reused instead of opening another."""
    urgency: int = 2
    """1 (high) to 3 (low)."""


@dataclass(frozen=True)
class TicketRef:
    """A ticket as the ticket system names it."""

    id: str
    """The system's own id (ServiceNow sys_id, Jira issue id)."""
    number: str
    """What people call it (INC0010001, SEC-42)."""
    url: str
    reused: bool = False


@dataclass(frozen=True)
class Principal:
    """An identity: a user (id or UPN) or a service principal (object id)."""

    id: str
    kind: str = "user"
    """"user" or "service_principal"."""


@dataclass(frozen=True)
class Credential:
    """A credential to act on; which fields matter depends on the target type."""

    subscription: str | None = None
    consumer: str | None = None
    key: str | None = None
    token: str | None = None
    token_type_hint: str | None = None
    which: str = "primary"


class Driver:
    """Base of target drivers; a subclass overrides what its type supports.

    Which verbs a target type offers is declared once, by the actions (`target_types`).
    """

    type: ClassVar[str]

    def __init__(self, name: str, settings: Any, http: HttpPort) -> None:
        self.name = name
        self.settings = settings
        self.http = http
        self._locks: dict[str | None, asyncio.Lock] = {}

    def serialized(self, unit: str | None) -> asyncio.Lock:
        """The lock that keeps this process's reconciles of one unit from interleaving."""
        return self._locks.setdefault(unit, asyncio.Lock())

    def keyed(self, key: str) -> asyncio.Lock:
        """One of 64 locks for any key (a correlation id, say): the same key always takes the
        same lock, and a long-running worker holds a bounded number of them."""
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 64
        return self.serialized(f"keyed:{bucket}")

    def unsupported(self, what: str) -> PermanentError:
        """The error for a request this target type cannot carry out."""
        return PermanentError(f"target {self.name} ({self.type}) cannot {what}")

    # -- gateway verbs -------------------------------------------------------------------

    def accept(self, spec: ContainmentSpec) -> ContainmentSpec:
        """Check the containment can be enforced here; return it with its scope normalized."""
        raise self.unsupported(f"{spec.kind.value} {spec.subject_type.value}")

    def unit(self, spec: ContainmentSpec) -> str | None:
        """The scope reconciled together with `spec` (None: the whole target at once)."""
        return spec.scope

    async def reconcile(self, scope: str | None, wanted: Wanted) -> None:
        """Make the gateway enforce exactly the containments `wanted` returns for `scope`."""
        raise self.unsupported("contain clients")

    async def enforces(self, spec: ContainmentSpec) -> bool:
        """Read back what the gateway holds: True when `spec` is in force."""
        raise self.unsupported("contain clients")

    async def probe(self, spec: ContainmentSpec) -> str | None:
        """Ask the gateway as the contained client would; the refusal expected, or None."""
        probe: Probe | None = getattr(self.settings, "probe", None)
        if probe is None:
            return None
        headers: dict[str, str] = {}
        url = probe.url
        if spec.subject_type.value == "ip":
            headers[probe.ip_header] = spec.subject
        elif spec.kind.value == "disable" and (literal := literal_request(spec.subject)):
            method, path = literal
            parts = urlsplit(url)
            url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
            return await self._probe_once(method, url, headers, probe.expect)
        else:
            return None
        return await self._probe_once("GET", url, headers, probe.expect)

    async def _probe_once(
        self, method: str, url: str, headers: dict[str, str], expect: int
    ) -> str | None:
        reply = await self.http.request(method, url, headers=headers, timeout=self.timeout)
        if reply.status == expect:
            return None
        return f"probe of target {self.name} got {reply.status}, expected {expect}"

    @property
    def timeout(self) -> float:
        """Seconds allowed per call to this target."""
        return float(self.settings.timeout)

    # -- credential verbs ----------------------------------------------------------------

    async def suspend(self, credential: Credential, comment: str) -> dict[str, Any]:
        """Suspend a credential; returns what reactivation needs."""
        raise self.unsupported("suspend credentials")

    async def reactivate(self, credential: Credential, comment: str) -> None:
        """Reactivate a suspended credential."""
        raise self.unsupported("reactivate credentials")

    async def rotate(self, credential: Credential) -> None:
        """Regenerate a credential's key."""
        raise self.unsupported("rotate credentials")

    async def revoke(self, credential: Credential) -> None:
        """Revoke a credential for good."""
        raise self.unsupported("revoke credentials")

    async def credential_state(self, credential: Credential) -> str:
        """The credential's state as the target reports it (for verification)."""
        raise self.unsupported("read credentials")

    # -- messages ------------------------------------------------------------------------

    async def send(self, message: Message, *, key: str) -> dict[str, Any]:
        """Deliver a message (`key` is the step's idempotency key); returns what `resolve`
        needs later, such as a dedup key."""
        raise self.unsupported("send messages")

    async def resolve(self, message: Message, sent: dict[str, Any]) -> None:
        """Close what `send` opened (a page) once the remediation ended; most channels: no-op."""

    # -- tickets -------------------------------------------------------------------------

    async def open_ticket(self, ticket: Ticket) -> TicketRef:
        """Reuse the open ticket with the same correlation id, or create one."""
        raise self.unsupported("open tickets")

    async def update_ticket(self, ref: TicketRef, note: str) -> None:
        """Add a progress note to a ticket."""
        raise self.unsupported("update tickets")

    async def resolve_ticket(self, ref: TicketRef, summary: str) -> None:
        """Resolve a ticket with a summary of what was done."""
        raise self.unsupported("resolve tickets")

    # -- identities ----------------------------------------------------------------------

    async def revoke_sessions(self, user: str) -> None:
        """Revoke a user's sign-in sessions and refresh tokens."""
        raise self.unsupported("revoke sessions")

    async def set_enabled(self, principal: Principal, enabled: bool) -> bool:
        """Enable or disable an account; returns whether it was enabled before."""
        raise self.unsupported("enable or disable accounts")

    async def account_enabled(self, principal: Principal) -> bool:
        """Whether an account can sign in now (to verify a disable)."""
        raise self.unsupported("read accounts")

    async def confirm_compromised(self, users: list[str]) -> None:
        """Mark users as confirmed compromised (identity protection)."""
        raise self.unsupported("confirm users compromised")

    # -- findings at their source ----------------------------------------------------------

    async def update_finding(self, finding: dict[str, Any], state: str, comment: str) -> None:
        """Write a finding's state back to the detector that raised it."""
        raise self.unsupported("update findings at their source")

    # -- operations ----------------------------------------------------------------------

    async def check(self) -> list[Check]:
        """Test connectivity and permissions without changing anything."""
        return [Check("configuration", True, "nothing to reach")]

    async def close(self) -> None:
        """Release what the driver holds (nothing by default)."""
