"""When a remediation counts as over, for closing tickets and pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clampdown.engine.closing import ended, to_close
from clampdown.secrets import SecretRef
from clampdown.targets.settings import BuiltinTarget, PagerDutyTarget, WebhookTarget

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def step(state: str, action: str = "gateway.block", **extra: Any) -> dict[str, Any]:
    return {
        "key": action,
        "state": state,
        "action": action,
        "params": {"target": extra.pop("target", "builtin")},
        "result": extra.pop("result", {}),
        "expires_at": extra.pop("expires_at", None),
    }


@pytest.mark.parametrize(
    ("state", "expires", "over"),
    [
        ("failed", None, True),
        ("expired", None, True),
        ("succeeded", None, True),
        ("succeeded", NOW + timedelta(hours=1), False),
        ("succeeded", NOW - timedelta(seconds=1), True),
        ("running", None, False),
        ("awaiting_approval", None, False),
    ],
)
def test_over_when_nothing_is_held_any_more(
    state: str, expires: datetime | None, over: bool
) -> None:
    assert ended(state, [step("succeeded", expires_at=expires)], NOW) is over


def test_only_opened_and_unclosed_steps_close() -> None:
    targets = {
        "builtin": BuiltinTarget(),
        "pager": PagerDutyTarget(routing_key=SecretRef(env="PD")),
        "hook": WebhookTarget(url="http://127.0.0.1:9/x"),
    }
    page = step("succeeded", "notify.send", target="pager")
    closed = step("succeeded", "notify.send", target="pager", result={"closed": True})
    hook = step("succeeded", "notify.send", target="hook")
    failed = step("failed", "notify.send", target="pager")
    assert to_close([page, closed, hook, failed, step("succeeded")], targets) == [page]
