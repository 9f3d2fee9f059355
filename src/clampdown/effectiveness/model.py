"""What effectiveness measurement produces: figures per playbook, target, alert type and period.

Every duration is in seconds; every rate is a share between 0 and 1, or None when nothing
was there to divide by (a rate of 0 out of 0 would read as a result).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Durations(BaseModel):
    """A distribution of durations in seconds (nearest-rank percentiles)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None


class Figures(BaseModel):
    """The measurements of one set of remediations."""

    remediations: int = Field(0, description="Remediations opened in the period (dry runs too)")
    open: int = Field(0, description="Of those, not yet ended")
    outcomes: dict[str, int] = Field(
        default_factory=dict, description="Remediations by state (ended and open)"
    )
    ended: int = Field(0, description="Ended for real: succeeded, expired, failed, rolled back")
    automatic: int = Field(0, description="Ended without any person taking part")
    automatic_share: float | None = None
    success_rate: float | None = Field(None, description="(succeeded + expired) / ended")
    failure_rate: float | None = Field(None, description="failed / ended")
    verification_failure_rate: float | None = Field(
        None, description="failed because verification found an effect missing / ended"
    )
    time_to_acknowledge: Durations = Field(default_factory=Durations)
    time_to_contain: Durations = Field(default_factory=Durations)
    time_to_close: Durations = Field(default_factory=Durations)
    contained: int = Field(0, description="Remediations with a containment that took effect")
    overridden: int = Field(
        0, description="Contained, then undone early by a person (or for a dismissal at the source)"
    )
    override_rate: float | None = Field(None, description="overridden / contained")
    closed: int = Field(0, description="Ended, so recurrence can be watched")
    recurred: int = Field(0, description="Closed, then the same fingerprint was seen again")
    recurrence_rate: float | None = Field(None, description="recurred / closed")
    time_to_recur: Durations = Field(default_factory=Durations)
    contained_closed: int = Field(0, description="Closed after containing (blocks that ended)")
    contained_recurred: int = Field(0, description="Of those, the threat was seen again")
    contained_recurrence_rate: float | None = Field(
        None, description="contained_recurred / contained_closed: blocks that did not last"
    )
    approvals: int = Field(0, description="Remediations that waited for approval")
    approvals_slow: int = Field(0, description="Waited longer than the limit (or still do)")
    approvals_timed_out: int = Field(0, description="Decided by the approval timeout")
    approval_wait: Durations = Field(default_factory=Durations)


class Group(BaseModel):
    """Figures of the remediations sharing one playbook, target or alert type."""

    key: str
    figures: Figures


class Bucket(BaseModel):
    """Figures of the remediations opened in one period: a UTC day, or an hour for short spans.

    The first and last buckets may be partly outside [since, until): only remediations
    inside it are counted.
    """

    start: datetime
    figures: Figures


class Recurring(BaseModel):
    """A threat seen again after its remediation closed."""

    fingerprint: str
    type: str
    title: str
    playbook: str
    recurrences: int = Field(description="Findings of this fingerprint after a closed remediation")
    first_after_seconds: float = Field(description="How soon after the close it came back")
    last_seen: datetime


class Collateral(BaseModel):
    """Decision traffic of one API (as the gateway names it) with both allowed and refused calls."""

    api: str
    allowed: int
    denied: int
    throttled: int
    refused_share: float = Field(description="(denied + throttled) / all decisions")


class Effectiveness(BaseModel):
    """The effectiveness of remediation over one period."""

    since: datetime
    until: datetime
    generated_at: datetime
    approval_wait_limit_seconds: float
    playbooks: list[str] = Field(description="Every playbook loaded, including those never fired")
    modes: dict[str, str] = Field(
        default_factory=dict, description="Each loaded playbook's mode (automatic, approval...)"
    )
    overall: Figures
    by_playbook: list[Group]
    by_target: list[Group]
    by_alert_type: list[Group]
    timeline: list[Bucket]
    bucket_seconds: int
    recurring: list[Recurring] = Field(description="Most recurrences first")
    collateral: list[Collateral] = Field(description="Highest refused share first")
