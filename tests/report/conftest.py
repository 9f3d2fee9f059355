"""Effectiveness figures built by hand, for the report's charts, suggestions and renderers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clampdown.effectiveness.model import (
    Bucket,
    Collateral,
    Durations,
    Effectiveness,
    Figures,
    Group,
    Recurring,
)

SINCE = datetime(2026, 11, 20, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=7)
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def effectiveness(**changes: Any) -> Effectiveness:
    """An empty week, with `changes` applied to its fields."""
    data: dict[str, Any] = {
        "since": SINCE,
        "until": UNTIL,
        "generated_at": UNTIL,
        "approval_wait_limit_seconds": 1800.0,
        "playbooks": [],
        "overall": Figures(),
        "by_playbook": [],
        "by_target": [],
        "by_alert_type": [],
        "timeline": [],
        "bucket_seconds": 86400,
        "recurring": [],
        "collateral": [],
    }
    return Effectiveness.model_validate({**data, **changes})


def playbook(name: str, **figures: Any) -> Effectiveness:
    """A week in which the only loaded playbook, `name`, has these figures."""
    return effectiveness(
        playbooks=[name], by_playbook=[Group(key=name, figures=Figures(**figures))]
    )


def contain(p50: float, p90: float) -> Durations:
    return Durations(count=4, mean=(p50 + p90) / 2, p50=p50, p90=p90, max=p90)


def busy_week(
    title: str = "Suspicious IP", playbook_name: str = "block-suspicious-ip"
) -> Effectiveness:
    """A week with remediations every day, a recurring threat and collateral."""
    figures = Figures(
        remediations=20,
        open=2,
        outcomes={"succeeded": 12, "expired": 2, "failed": 4, "awaiting_approval": 2},
        ended=18,
        automatic=15,
        automatic_share=15 / 18,
        success_rate=14 / 18,
        failure_rate=4 / 18,
        verification_failure_rate=1 / 18,
        time_to_contain=contain(0.4, 2.5),
        contained=14,
        overridden=1,
        override_rate=1 / 14,
        closed=18,
        recurred=3,
        recurrence_rate=3 / 18,
        approvals=2,
        approvals_slow=0,
    )
    timeline = [
        Bucket(
            start=SINCE + timedelta(days=day),
            figures=Figures(
                remediations=3,
                outcomes={"succeeded": 2, "failed": 1} if day % 2 else {"succeeded": 3},
                time_to_contain=contain(0.3 + day / 10, 2.0 + day) if day != 3 else Durations(),
            ),
        )
        for day in range(7)
    ]
    return effectiveness(
        playbooks=[playbook_name, "retire-unused-endpoint"],
        overall=figures,
        by_playbook=[Group(key=playbook_name, figures=figures)],
        by_target=[Group(key="builtin", figures=figures)],
        by_alert_type=[Group(key="API_AccessFromSuspiciousIP", figures=figures)],
        timeline=timeline,
        recurring=[
            Recurring(
                fingerprint="API_AccessFromSuspiciousIP/203.0.113.7/orders",
                type="API_AccessFromSuspiciousIP",
                title=title,
                playbook=playbook_name,
                recurrences=3,
                first_after_seconds=5400.0,
                last_seen=UNTIL - timedelta(hours=3),
            )
        ],
        collateral=[
            Collateral(api="orders", allowed=80, denied=15, throttled=5, refused_share=0.2)
        ],
    )


@pytest.fixture
def week() -> Effectiveness:
    """A busy week."""
    return busy_week()
