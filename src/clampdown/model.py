"""Plain typed data shared by every layer: findings, remediations, steps, containments.

Nothing here talks to a database, the network or the web framework.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JSON = Any
"""A JSON-compatible value (dict, list, str, int, float, bool or None)."""


class Kind(StrEnum):
    """What a finding is: an active threat or a posture weakness."""

    ALERT = "alert"
    RECOMMENDATION = "recommendation"


class Severity(StrEnum):
    """Severity, ordered from least to most severe (see `rank`)."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for informational up to 4 for critical."""
        return _SEVERITY_ORDER.index(self)

    @classmethod
    def parse(cls, value: str) -> Severity:
        """Read a severity in any casing; `info` and `informational` are the same."""
        text = value.strip().lower()
        if text == "info":
            text = "informational"
        return cls(text)


_SEVERITY_ORDER = list(Severity)


class ApiRef(BaseModel):
    """An API or operation a finding points at, usually an Azure Resource Manager id."""

    model_config = ConfigDict(frozen=True)

    id: str
    service: str | None = None
    api: str | None = None
    operation: str | None = None


Sensitivity = Literal["", "low", "medium", "high", "critical"]
"""How sensitive an API is; "" when nothing says."""


class ApiCollection(BaseModel):
    """Defender for APIs' counters of one API (its API collection)."""

    model_config = ConfigDict(frozen=True)

    endpoints: int = 0
    unauthenticated: int = 0
    inactive: int = Field(default=0, description="endpoints without traffic for 30 days")
    external: int = Field(default=0, description="endpoints called from the internet")
    sensitive_data: int = Field(default=0, description="endpoints exposing sensitive data")
    sensitivity_label: str = Field(default="", description="the highest Purview label seen")


class FindingContext(BaseModel):
    """Who owns the API a finding is about, how sensitive it is, and what is known of it.

    Set by Clampdown at ingest from the operator's ownership rules and fetched API facts,
    never read from the alert.
    """

    model_config = ConfigDict(frozen=True)

    owner: str = ""
    channel: str = Field(default="", description="a configured notify target, or ''")
    sensitivity: Sensitivity = ""
    tags: list[str] = Field(default_factory=list)
    rule: str = Field(default="", description="the ownership rule that matched, or ''")
    collection: ApiCollection | None = Field(
        default=None, description="Defender for APIs' counters, when known"
    )

    def expression_view(self) -> dict[str, JSON]:
        """The context as playbook expressions see it (`finding.context.*`)."""
        c = self.collection
        collection: dict[str, JSON] = (
            dict(_UNKNOWN_COLLECTION)
            if c is None
            else {
                "known": True,
                "endpoints": c.endpoints,
                "unauthenticated": c.unauthenticated,
                "inactive": c.inactive,
                "external": c.external,
                "sensitive_data": c.sensitive_data,
                "sensitivity_label": c.sensitivity_label,
            }
        )
        return {
            "owner": self.owner,
            "channel": self.channel,
            "sensitivity": self.sensitivity,
            "tags": list(self.tags),
            "rule": self.rule,
            "collection": collection,
        }


_UNKNOWN_COLLECTION: dict[str, JSON] = {
    "known": False,
    **{name: field.default for name, field in ApiCollection.model_fields.items()},
}


class Finding(BaseModel):
    """One alert or recommendation, normalized from any delivery shape.

    Every string that came from the alert is attacker-controlled data.
    """

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="Which detector or product family produced it, e.g. defender")
    source_id: str = Field(description="The detector's own id; (source, source_id) is unique")
    shape: str = Field(description="The delivery shape it arrived in, e.g. defender-rest")
    kind: Kind
    type: str = Field(description="Alert type or recommendation type, e.g. API_SpikeInAPITraffic")
    title: str
    description: str = ""
    severity: Severity
    status: str = "active"
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    reported_at: datetime | None = None
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list, description="Validated IPv4/IPv6, main first")
    apis: list[ApiRef] = Field(default_factory=list, description="Most specific first")
    endpoint: str | None = Field(default=None, description="e.g. 'GET /orders/{orderId}'")
    credentials: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    user_agent: str | None = None
    url: str | None = Field(default=None, description="Link to the alert in its product")
    remediation_steps: list[str] = Field(default_factory=list)
    properties: dict[str, str] = Field(default_factory=dict)
    raw: dict[str, JSON] = Field(default_factory=dict, description="The payload as received")
    context: FindingContext = Field(
        default_factory=FindingContext, description="Ownership and API facts, set at ingest"
    )

    @property
    def fingerprint(self) -> str:
        """Type plus main entities: repeats of the same threat share it."""
        parts = [self.type, self.ips[0] if self.ips else "", self.apis[0].id if self.apis else ""]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def expression_view(self) -> dict[str, JSON]:
        """The finding as playbook expressions see it (`finding.*`)."""
        api = self.apis[0] if self.apis else None
        return {
            "source": self.source,
            "source_id": self.source_id,
            "shape": self.shape,
            "kind": self.kind.value,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "severity": self.severity.value,
            "severity_rank": self.severity.rank,
            "status": self.status,
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
            "ips": list(self.ips),
            "ip": self.ips[0] if self.ips else "",
            "api": api.model_dump()
            if api
            else {"id": "", "service": "", "api": "", "operation": ""},
            "apis": [a.model_dump() for a in self.apis],
            "endpoint": self.endpoint or "",
            "credentials": list(self.credentials),
            "users": list(self.users),
            "user_agent": self.user_agent or "",
            "url": self.url or "",
            "properties": dict(self.properties),
            "fingerprint": self.fingerprint,
            "owner": self.context.owner,
            "channel": self.context.channel,
            "sensitivity": self.context.sensitivity,
            "context": self.context.expression_view(),
        }


class RemediationState(StrEnum):
    """The remediation state machine (DESIGN.md, Concepts)."""

    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    EXPIRED = "expired"
    DRY_RUN = "dry_run"

    @property
    def final(self) -> bool:
        """True once nothing more will happen (expiry undo may still follow success)."""
        return self in _FINAL_STATES


_FINAL_STATES = frozenset(
    {
        RemediationState.SUCCEEDED,
        RemediationState.FAILED,
        RemediationState.REJECTED,
        RemediationState.ROLLED_BACK,
        RemediationState.EXPIRED,
        RemediationState.DRY_RUN,
    }
)


class StepState(StrEnum):
    """Where one step stands."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # a guided task a person must complete
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDONE = "undone"

    @property
    def final(self) -> bool:
        """True when the step will not run again."""
        return self not in (StepState.PENDING, StepState.RUNNING, StepState.WAITING)


class Mode(StrEnum):
    """How a playbook acts."""

    AUTOMATIC = "automatic"
    APPROVAL = "approval"
    GUIDED = "guided"
    DRY_RUN = "dry_run"


class ContainmentKind(StrEnum):
    """What a containment does to matching traffic."""

    BLOCK = "block"
    THROTTLE = "throttle"
    DISABLE = "disable"


class SubjectType(StrEnum):
    """What a containment applies to."""

    IP = "ip"
    CIDR = "cidr"
    API_KEY = "api_key"
    SUBSCRIPTION = "subscription"
    CLIENT_ID = "client_id"
    USER = "user"
    ENDPOINT = "endpoint"


class Decision(StrEnum):
    """The decision API's answer for one request."""

    ALLOW = "allow"
    DENY = "deny"
    THROTTLE = "throttle"
