"""The `ownership:` and `context:` sections of the config file.

`ownership` maps APIs (by ARM id, name or tags) to an owner, a notify channel and a
sensitivity; the first rule that matches wins. `context` names the API Management services
whose API tags and Defender for APIs counters are read in the background (refresher.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from clampdown.durations import parse_duration
from clampdown.targets.settings import AzureIdentity

NOTIFY_TARGET_TYPES: tuple[str, ...] = ("webhook", "teams", "slack", "smtp", "pagerduty")
"""Target types `notify.send` can use: the only ones a channel may name."""

MANAGEMENT_URL = "https://management.azure.com"
APIM_API_VERSION = "2022-08-01"
COLLECTIONS_API_VERSION = "2023-11-15"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SEGMENT = re.compile(r"[A-Za-z0-9_.()-]{1,90}")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _listify(value: object) -> object:
    # One pattern where a list is expected: `ids: "/subscriptions/*/...orders*"`.
    return [value] if isinstance(value, str) else value


Patterns = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listify)]


class OwnershipMatch(_Strict):
    """Which APIs a rule covers; every selector given must hold."""

    ids: Patterns = Field(
        default_factory=list,
        description="ARM ids of APIs or operations, exact or glob (*, ?, [..]), any case",
    )
    names: Patterns = Field(
        default_factory=list,
        description="API names (the {api} segment of the ARM id), exact or glob, any case",
    )
    tags: Patterns = Field(
        default_factory=list, description="tags the API must all carry (APIM tags), any case"
    )

    @model_validator(mode="after")
    def _something(self) -> OwnershipMatch:
        if not (self.ids or self.names or self.tags):
            raise ValueError("give at least one of ids, names or tags")
        return self


class OwnershipRule(_Strict):
    """Who owns the APIs a rule matches, where to tell them, and how sensitive they are."""

    name: str = Field(default="", description="a label, shown in errors and in finding.context")
    match: OwnershipMatch
    owner: str = Field(min_length=1, description="a person or team")
    channel: str | None = Field(
        default=None, description="a configured notify target (teams, slack, smtp, ...)"
    )
    sensitivity: Literal["low", "medium", "high", "critical"] | None = None
    tags: Patterns = Field(default_factory=list, description="tags added to the finding")

    def label(self, index: int) -> str:
        """How errors and findings name this rule: `ownership[2] (payments)`."""
        return f"ownership[{index}]" + (f" ({self.name})" if self.name else "")


class _Typed(Protocol):
    @property
    def type(self) -> str: ...


def channel_problems(rules: list[OwnershipRule], targets: Mapping[str, _Typed]) -> list[str]:
    """Why a rule's channel cannot be used: no such target, or one notify.send cannot use."""
    notify = sorted(name for name, t in targets.items() if t.type in NOTIFY_TARGET_TYPES)
    problems = []
    for index, rule in enumerate(rules):
        if rule.channel is None:
            continue
        target = targets.get(rule.channel)
        if target is None:
            known = ", ".join(notify) or "none"
            problems.append(
                f"{rule.label(index)}: channel {rule.channel!r} names no configured target "
                f"(notify targets: {known})"
            )
        elif target.type not in NOTIFY_TARGET_TYPES:
            kinds = ", ".join(NOTIFY_TARGET_TYPES)
            problems.append(
                f"{rule.label(index)}: channel {rule.channel!r} is a target of type {target.type}; "
                f"a channel must be a notify target ({kinds})"
            )
    return problems


class ApimContext(_Strict):
    """One API Management service whose API tags and Defender counters are read."""

    name: str = Field(default="", description="a label for logs; the service name by default")
    identity: AzureIdentity = Field(description="the application that signs in (read access)")
    subscription_id: str
    resource_group: str
    service: str
    management_url: str = MANAGEMENT_URL
    api_version: str = APIM_API_VERSION
    collections: bool = Field(default=True, description="read Defender for APIs collections")
    collections_api_version: str = COLLECTIONS_API_VERSION

    @field_validator("subscription_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not _GUID.fullmatch(value):
            raise ValueError(f"{value!r} is not a subscription id (a GUID)")
        return value

    @field_validator("resource_group", "service")
    @classmethod
    def _segment(cls, value: str) -> str:
        if ".." in value or not _SEGMENT.fullmatch(value):
            raise ValueError(f"{value!r} is not a resource name")
        return value

    @property
    def label(self) -> str:
        """The name logs use."""
        return self.name or self.service

    def service_path(self) -> str:
        """The service's ARM id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.service}"
        )

    def origins(self) -> list[str]:
        """The addresses the refresher may reach for this service."""
        return [self.management_url, self.identity.login_url]


class ContextConfig(_Strict):
    """API facts read in the background and used at ingest."""

    apim: list[ApimContext] = Field(default_factory=list)
    interval: Duration = Field(default=timedelta(minutes=15), description="time between reads")

    @model_validator(mode="after")
    def _sensible(self) -> ContextConfig:
        if self.interval < timedelta(seconds=1):
            raise ValueError("interval: at least 1s")
        labels = [source.label for source in self.apim]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"apim: two services are named {label!r}; give each a name")
        return self
