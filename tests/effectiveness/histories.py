"""Constructed remediation histories: rows shaped like the store's, at exact times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


@dataclass
class Story:
    """One remediation's rows, written as it happens."""

    id: str
    playbook: str = "block-ip"
    alert_type: str = "API_AccessFromSuspiciousIP"
    fingerprint: str = "fp-1"
    title: str = "Access from a suspicious IP"
    received: float = 0.0
    first_seen: float | None = None
    created: float | None = None
    state: str = "planned"
    steps: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def move(self, seconds: float, to: str, *, actor: str = "engine", reason: str = "") -> Story:
        """A remediation-level transition."""
        self.history.append(
            {
                "step_key": None,
                "at": at(seconds),
                "from_state": self.state if self.history else None,
                "to_state": to,
                "reason": reason,
                "actor": actor,
            }
        )
        self.state = to
        return self

    def step(
        self,
        key: str,
        action: str,
        *,
        finished: float | None,
        state: str = "succeeded",
        target: str | None = "builtin",
    ) -> Story:
        """A step as stored at the end."""
        self.steps.append(
            {
                "key": key,
                "action": action,
                "state": state,
                "target": target,
                "finished_at": at(finished) if finished is not None else None,
            }
        )
        return self

    def step_event(self, seconds: float, key: str, to: str, *, actor: str = "engine") -> Story:
        """A step-level history entry."""
        self.history.append(
            {
                "step_key": key,
                "at": at(seconds),
                "from_state": "succeeded",
                "to_state": to,
                "reason": "",
                "actor": actor,
            }
        )
        return self

    def rows(self) -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]:
        """(remediation, finding, steps, history) as `case_of` reads them."""
        created = at(self.created if self.created is not None else self.received)
        remediation = {
            "id": self.id,
            "playbook": self.playbook,
            "state": self.state,
            "created_at": created,
        }
        finding = {
            "type": self.alert_type,
            "fingerprint": self.fingerprint,
            "title": self.title,
            "received_at": at(self.received),
            "first_seen": at(self.first_seen) if self.first_seen is not None else None,
        }
        return remediation, finding, self.steps, self.history


def automatic_block(rid: str = "r1", **kw: Any) -> Story:
    """Detected at 0 s, received at 30 s, running at 31 s, blocked at 32 s, verified at 33 s."""
    story = Story(rid, received=30, first_seen=0, **kw)
    story.move(30, "planned", actor="system").move(31, "running")
    story.step("block", "gateway.block", finished=32)
    return story.move(32.5, "verifying").move(33, "succeeded", reason="verified")
