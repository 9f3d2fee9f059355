"""Fixtures for playbook tests: findings, playbook files, and a fake action catalog."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, model_validator

from clampdown.actions.contract import Action, Params
from clampdown.model import ApiRef, Finding, Kind, Severity
from clampdown.targets.settings import BuiltinTarget, TargetConfig, WebhookTarget

API_ID = (
    "/subscriptions/0000/resourceGroups/rg/providers"
    "/Microsoft.ApiManagement/service/apim1/apis/orders"
)


def _make_finding(**fields: Any) -> Finding:
    """A Defender alert with sensible defaults; keyword arguments override them."""
    values: dict[str, Any] = {
        "source": "defender",
        "source_id": "alert-1",
        "shape": "defender-rest",
        "kind": Kind.ALERT,
        "type": "API_AccessFromSuspiciousIP",
        "title": "Access from a suspicious IP",
        "severity": Severity.HIGH,
        "ips": ["203.0.113.7"],
        "apis": [ApiRef(id=API_ID)],
        "url": "https://portal.azure.com/#alert-1",
    }
    values.update(fields)
    return Finding(**values)


@pytest.fixture
def make_finding() -> Callable[..., Finding]:
    """Build a Defender alert with sensible defaults; keyword arguments override them."""
    return _make_finding


@pytest.fixture
def finding() -> Finding:
    """A single-IP Defender alert."""
    return _make_finding()


PLAYBOOK = """\
apiVersion: clampdown/v1
kind: Playbook
metadata: {{name: {name}, owner: secops@example.com}}
spec:
  priority: {priority}
  match:
{match}
  mode: {mode}
  steps:
{steps}
"""

BLOCK_STEP = """\
- id: block
  uses: gateway.block
  with: {target: builtin, ip: "${{ finding.ip }}", scope: "*", reason: test}
  expires: 1h
"""


def _playbook_yaml(
    name: str = "pb",
    *,
    match: str = "types: ['*']",
    mode: str = "automatic",
    priority: int = 0,
    steps: str = BLOCK_STEP,
) -> str:
    """One playbook document; `match` and `steps` are YAML bodies, indented here."""
    return PLAYBOOK.format(
        name=name,
        priority=priority,
        match=textwrap.indent(match, "    "),
        mode=mode,
        steps=textwrap.indent(steps, "    "),
    )


@pytest.fixture
def playbook_yaml() -> Callable[..., str]:
    """Build one playbook document: playbook_yaml(name, match=..., mode=..., steps=...)."""
    return _playbook_yaml


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a file below tmp_path (text dedented) and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


# A fake catalog with the real actions' names and parameters --------------------------------

_SUBJECTS = ("ip", "cidr", "api_key", "subscription", "client_id", "user")


class SubjectParams(Params):
    ip: str | None = None
    cidr: str | None = None
    api_key: str | None = None
    subscription: str | None = None
    client_id: str | None = None
    user: str | None = None
    scope: str = "*"
    reason: str = ""

    @model_validator(mode="after")
    def _one_subject(self) -> SubjectParams:
        if sum(getattr(self, s) is not None for s in _SUBJECTS) != 1:
            raise ValueError("give exactly one subject: " + ", ".join(_SUBJECTS))
        return self


class ThrottleParams(SubjectParams):
    rate: int = Field(gt=0)
    period: str | int = 60


class DisableParams(Params):
    endpoint: str
    reason: str = ""


class TaskParams(Params):
    title: str
    why: str = ""
    steps: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    owner: str = ""
    due: str | int | None = None


class NotifyParams(Params):
    text: str
    title: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class FlowParams(Params):
    body: dict[str, Any] = Field(default_factory=dict)


def _action(
    name: str, params: type[Params], *, targets: tuple[str, ...] = ("builtin",), reversible: bool
) -> type[Action]:
    attrs: dict[str, Any] = {
        "name": name,
        "summary": name,
        "target_types": targets,
        "params": params,
        "reversible": reversible,
    }
    return type(name.replace(".", "_"), (Action,), attrs)


FAKE_ACTIONS: dict[str, type[Action]] = {
    a.name: a
    for a in (
        _action("gateway.block", SubjectParams, reversible=True),
        _action("gateway.unblock", SubjectParams, reversible=False),
        _action("gateway.throttle", ThrottleParams, reversible=True),
        _action("gateway.disable_endpoint", DisableParams, reversible=True),
        _action("gateway.enable_endpoint", DisableParams, reversible=False),
        _action("task.create", TaskParams, reversible=False),
        _action("notify.send", NotifyParams, targets=("webhook",), reversible=False),
        _action("flow.trigger", FlowParams, targets=("flow",), reversible=False),
        _action("credential.revoke", SubjectParams, reversible=False),
    )
}


@pytest.fixture
def actions() -> dict[str, type[Action]]:
    """The fake action catalog."""
    return dict(FAKE_ACTIONS)


@pytest.fixture
def targets() -> dict[str, TargetConfig]:
    """The default config's targets (only builtin) plus a webhook."""
    return {
        "builtin": BuiltinTarget(),
        "hook": WebhookTarget(url="https://hooks.example.com/x"),
    }
