"""An in-memory stand-in for the store's view of what a target should enforce."""

from __future__ import annotations

from clampdown.actions.contract import ContainmentSpec
from clampdown.model import ContainmentKind, SubjectType


class Wanted:
    """The containments active on one target; `await wanted(scope)` as drivers call it."""

    def __init__(self) -> None:
        self.specs: list[ContainmentSpec] = []
        self.reads = 0

    async def __call__(self, scope: str | None) -> list[ContainmentSpec]:
        self.reads += 1
        return [s for s in self.specs if scope is None or s.scope == scope]

    def add(self, spec: ContainmentSpec) -> ContainmentSpec:
        self.specs.append(spec)
        return spec

    def remove(self, spec: ContainmentSpec) -> None:
        self.specs.remove(spec)


def block(ip: str, scope: str = "*", subject_type: str = "ip") -> ContainmentSpec:
    """A block of one address or range."""
    return ContainmentSpec(
        kind=ContainmentKind.BLOCK, subject_type=SubjectType(subject_type), subject=ip, scope=scope
    )


def throttle(
    subject: str, rate: int, period: int, scope: str = "*", subject_type: str = "ip"
) -> ContainmentSpec:
    """A throttle of one subject."""
    return ContainmentSpec(
        kind=ContainmentKind.THROTTLE,
        subject_type=SubjectType(subject_type),
        subject=subject,
        scope=scope,
        rate=rate,
        period_seconds=period,
    )


def disable(endpoint: str) -> ContainmentSpec:
    """An endpoint refused to everyone."""
    return ContainmentSpec(
        kind=ContainmentKind.DISABLE,
        subject_type=SubjectType.ENDPOINT,
        subject=endpoint,
        scope=endpoint,
    )
