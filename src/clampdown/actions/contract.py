"""The action contract every connector implements.

An action is a class with typed `Params`, metadata, and one required coroutine, `run`.
`undo` and `verify` are optional. The engine owns retries, timeouts, idempotency keys
and rate limits; an action only raises TransientError, PermanentError or PreconditionError.
Actions reach the outside world only through the `ActionContext` the engine hands them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from clampdown.actions.http import Reply
from clampdown.targets.settings import TargetConfig

if TYPE_CHECKING:
    from clampdown.targets.driver import Driver
from clampdown.model import JSON, ContainmentKind, SubjectType


class Params(BaseModel):
    """Base of every action's parameters; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(description="name of a configured target")


class ActionResult(BaseModel):
    """What a successful call did: outputs for later steps, and what undo needs."""

    output: dict[str, JSON] = Field(default_factory=dict)
    undo: dict[str, JSON] | None = None
    summary: str = ""
    waiting: bool = Field(default=False, description="a person must finish it (guided task)")
    closed: bool = Field(default=False, description="closed when the remediation ended")


class ContainmentSpec(BaseModel):
    """A containment an action asks the built-in list to enforce."""

    model_config = ConfigDict(frozen=True)

    kind: ContainmentKind
    subject_type: SubjectType
    subject: str
    scope: str = Field(default="*", description="'*' for the whole gateway, or an API/operation id")
    rate: int | None = None
    period_seconds: int | None = None
    reason: str = ""


class TaskSpec(BaseModel):
    """A guided remediation task for a person."""

    model_config = ConfigDict(frozen=True)

    title: str
    why: str = ""
    steps: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    owner: str = ""
    due_at: datetime | None = None
    evidence: list[str] = Field(default_factory=list)


class ContainmentPort(Protocol):
    """The containments of the step's target, as actions see it (the store records them all)."""

    async def add(self, spec: ContainmentSpec, *, key: str, expires_at: datetime | None) -> str:
        """Enforce `spec`; the same `key` twice returns the first containment's id."""
        ...

    async def remove(self, containment_id: str, *, reason: str) -> bool:
        """Stop enforcing; False when it was not active."""
        ...

    async def remove_matching(self, spec: ContainmentSpec, *, reason: str) -> list[str]:
        """Lift every active containment of the same kind, subject and scope; returns their ids."""
        ...

    async def is_active(self, containment_id: str) -> bool:
        """True while the containment is enforced."""
        ...

    async def wanted(self, scope: str | None) -> list[ContainmentSpec]:
        """What this target should enforce at `scope` (None: every scope) now."""
        ...


class TaskPort(Protocol):
    """Where guided tasks are kept."""

    async def create(self, spec: TaskSpec, *, key: str) -> str:
        """Open a task; the same `key` twice returns the first task's id."""
        ...


class MemoPort(Protocol):
    """Notes a step keeps across its attempts (the state before it acted, say)."""

    async def first(self, name: str, value: JSON) -> JSON:
        """Keep `value` under `name` unless an earlier attempt kept one; return the kept one."""
        ...


class HttpPort(Protocol):
    """Outbound HTTP limited to the step's configured target."""

    async def post_json(
        self, url: str, body: JSON, *, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """POST JSON; returns status, headers and body, or raises TransientError."""
        ...

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: JSON | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """Any call; returns the reply whatever its status, or raises TransientError."""
        ...


@dataclass(frozen=True)
class Briefing:
    """What a message or ticket tells people: the finding, the playbook, what was done."""

    remediation_id: str
    playbook: str
    state: str
    finding: dict[str, Any]
    """The finding as expressions see it (attacker-controlled values: escape them)."""
    done: tuple[str, ...] = ()
    """Summaries of the steps that took effect so far, in order."""
    links: dict[str, str] = field(default_factory=dict)
    """Signed, expiring links for people (approve, reject, undo), when configured."""


@dataclass(frozen=True)
class Closing:
    """How a remediation ended, handed to actions that close what they opened."""

    state: str
    reason: str
    briefing: Briefing


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may use for one call."""

    remediation_id: str
    step_id: str
    idempotency_key: str
    target_name: str
    target: TargetConfig
    expires_at: datetime | None
    containments: ContainmentPort
    tasks: TaskPort
    http: HttpPort
    driver: Driver | None = None
    briefing: Briefing | None = None
    memo: MemoPort | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def remember(self, name: str, value: JSON) -> JSON:
        """What the first attempt of this step noted under `name` (this value, on the first)."""
        if self.memo is None:
            return value
        return await self.memo.first(name, value)

    @property
    def target_driver(self) -> Driver:
        """The driver of the step's target, for actions whose target types all have one."""
        if self.driver is None:
            raise AssertionError(f"target {self.target_name} has no driver")
        return self.driver


class Action:
    """Base class of actions. Subclasses set the metadata and implement `run`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    target_types: ClassVar[tuple[str, ...]]
    params: ClassVar[type[Params]]
    idempotent: ClassVar[bool] = False
    reversible: ClassVar[bool] = False
    verifiable: ClassVar[bool] = False
    closes: ClassVar[bool] = False
    """It opened something (a ticket, a page) to close when the remediation ends."""
    example: ClassVar[dict[str, JSON]] = {}

    @classmethod
    def idempotent_on(cls, target_type: str) -> bool:
        """Whether a repeat is harmless on this target type (a page with a dedup key is)."""
        return cls.idempotent

    @classmethod
    def closes_on(cls, target_type: str) -> bool:
        """Whether it opens something to close on this target type (`close`)."""
        return cls.closes

    async def run(self, params: Params, ctx: ActionContext) -> ActionResult:
        """Take effect once; raise an ActionError subclass when it did not."""
        raise NotImplementedError

    async def undo(self, params: Params, result: ActionResult, ctx: ActionContext) -> None:
        """Reverse a successful `run` (only when `reversible`)."""
        raise NotImplementedError

    async def verify(self, params: Params, result: ActionResult, ctx: ActionContext) -> bool:
        """True when the effect of `run` is observably in place (only when `verifiable`)."""
        raise NotImplementedError

    async def close(
        self, params: Params, result: ActionResult, ctx: ActionContext, closing: Closing
    ) -> None:
        """Close what a successful `run` opened, now that the remediation ended (`closes`)."""
        raise NotImplementedError
