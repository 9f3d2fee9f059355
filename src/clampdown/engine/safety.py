"""Safety rails the engine enforces whatever a playbook says.

- Protected assets (addresses and ranges, APIs, identities in `safety.protected`) are never
  contained: the step is skipped, and the attempt recorded and logged.
- A blast-radius budget: when automation has made `per_target` containments on one target (or
  `per_playbook` for one playbook) within `window`, further automatic containment pauses: the
  remediation waits for a person's approval instead, and the pause is announced. It resumes by
  itself once the window has room again; a person's approval always goes through.
- A containment without expiry needs a person's approval.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from clampdown.actions.contract import Params
from clampdown.config import BudgetConfig, ProtectedConfig, SafetyConfig
from clampdown.durations import parse_duration
from clampdown.model import Mode
from clampdown.playbooks.schema import CONTAINMENT_ACTIONS
from clampdown.store import remediations

# Actions that take something away from a client, a credential or an identity.
CONTAINING = CONTAINMENT_ACTIONS | {
    "credential.suspend",
    "credential.rotate",
    "credential.revoke",
    "identity.disable",
    "identity.revoke_sessions",
    "identity.confirm_compromised",
}
_ADDRESSES = ("ip", "cidr")
_IDENTITIES = (
    "api_key",
    "subscription",
    "client_id",
    "user",
    "service_principal",
    "consumer",
    "users",
)
_APIS = ("scope", "endpoint")


@dataclass(frozen=True)
class Verdict:
    """What a rail decided about one step: skip it, or wait for a person."""

    skip: str | None = None
    wait: str | None = None


class Protected:
    """The protected assets of the config, ready to test parameters against."""

    def __init__(self, config: ProtectedConfig) -> None:
        self._networks = [ipaddress.ip_network(v.strip(), strict=False) for v in config.ips]
        self._apis = [pattern.strip() for pattern in config.apis]
        self._identities = {value.strip().casefold() for value in config.identities}

    def hit(self, params: dict[str, Any]) -> str | None:
        """The protected asset the parameters would contain, described; None if none."""
        for name in _ADDRESSES:
            value = params.get(name)
            if isinstance(value, str) and (network := self._network_hit(value)) is not None:
                return f"{name} {value} is protected (safety.protected.ips {network})"
        for name in _IDENTITIES:
            value = params.get(name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item.strip().casefold() in self._identities:
                    return f"{name} {item} is protected (safety.protected.identities)"
        for name in _APIS:
            value = params.get(name)
            if isinstance(value, str) and (pattern := self._api_hit(value)) is not None:
                return f"{name} {value} is protected (safety.protected.apis {pattern})"
        return None

    def _network_hit(self, value: str) -> str | None:
        try:
            asked = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            return None
        for network in self._networks:
            if asked.version == network.version and asked.overlaps(network):
                return str(network)
        return None

    def _api_hit(self, value: str) -> str | None:
        text = value.strip()
        for pattern in self._apis:
            if fnmatch.fnmatchcase(text, pattern) or text.rstrip("/").endswith("/" + pattern):
                return pattern
        return None


class Rails:
    """The rails of one config, applied by the executor before a step starts."""

    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self.protected = Protected(config.protected)
        self.window = parse_duration(config.budget.window)

    def check(
        self,
        conn: Connection,
        *,
        remediation: dict[str, Any],
        action: str,
        params: Params,
        target: str,
        expires: bool,
        now: datetime,
    ) -> Verdict:
        """Skip, wait, or go (an empty Verdict) for a step about to start."""
        if action not in CONTAINING:
            return Verdict()
        hit = self.protected.hit(params.model_dump())
        if hit is not None:
            return Verdict(skip=f"refused by a safety rail: {hit}")
        if action not in CONTAINMENT_ACTIONS:
            return Verdict()
        budget = self.config.budget
        if expires and budget.per_target is None and budget.per_playbook is None:
            return Verdict()  # the common case decides without reading anything
        if remediation["mode"] == Mode.APPROVAL.value or remediations.approved_by_person(
            conn, remediation["id"]
        ):
            return Verdict()
        if not expires:
            return Verdict(wait="a containment without expiry needs a person's approval")
        over = over_budget(conn, budget, self.window, target, remediation, now)
        return Verdict(wait=over) if over else Verdict()


def over_budget(
    conn: Connection,
    budget: BudgetConfig,
    window: timedelta,
    target: str,
    remediation: dict[str, Any],
    now: datetime,
) -> str | None:
    """Why one more automatic containment would exceed the budget; None when it fits."""
    recent = remediations.containing_since(conn, now - window, CONTAINMENT_ACTIONS)
    playbook = remediation["playbook"]
    limits = (
        ("target", target, budget.per_target, sum(1 for t, _ in recent if t == target)),
        ("playbook", playbook, budget.per_playbook, sum(1 for _, p in recent if p == playbook)),
    )
    for what, name, limit, made in limits:
        if limit is not None and made >= limit:
            return (
                f"blast-radius budget reached: {made} containments on {what} {name} in "
                f"{budget.window} (safety.budget.per_{what} {limit}); automatic containment "
                "is paused, approve to go ahead"
            )
    return None


class BudgetCounter:
    """The budget over a replay, in memory (for `playbooks simulate`)."""

    def __init__(self, budget: BudgetConfig) -> None:
        self.budget = budget
        self.window = parse_duration(budget.window)
        self._by_target: dict[str, deque[datetime]] = {}
        self._by_playbook: dict[str, deque[datetime]] = {}

    def admit(self, target: str, playbook: str, at: datetime) -> bool:
        """Count one automatic containment at `at`; False when the budget was already full."""
        checks = (
            (self._by_target.setdefault(target, deque()), self.budget.per_target),
            (self._by_playbook.setdefault(playbook, deque()), self.budget.per_playbook),
        )
        for times, limit in checks:
            while times and times[0] <= at - self.window:
                times.popleft()
            if limit is not None and len(times) >= limit:
                return False
        for times, _ in checks:
            times.append(at)
        return True
