"""The `sources:` list of the config file: where and how often to pull from the detector.

Each entry names a source, its type (`defender-alerts`, `graph-alerts`,
`defender-assessments`), the Microsoft Entra application it signs in as (client credentials,
the secret by reference: the same `AzureIdentity` the Azure targets use), what to read, how
often, and how far each pull reaches back before the last checkpoint.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from clampdown.durations import parse_duration
from clampdown.targets.settings import AzureIdentity

DEFENDER_FOR_APIS_ALERT_TYPES: tuple[str, ...] = (
    "API_PopulationSpikeInAPITraffic",
    "API_SpikeInAPITraffic",
    "API_SpikeInPayload",
    "API_SpikeInLatency",
    "API_SprayInRequests",
    "API_ParameterEnumeration",
    "API_DistributedParameterEnumeration",
    "API_UnseenParamType",
    "API_UnseenParam",
    "API_AccessFromTorExitNode",
    "API_AccessFromSuspiciousIP",
    "API_AccessFromSuspiciousUserAgent",
)
"""The Defender for APIs alert types (CONTRACTS.md, section 1): what `defender-alerts` keeps."""

APIM_DETECTION_SOURCE = "microsoftDefenderForApiManagement"
MANAGEMENT_URL = "https://management.azure.com"
GRAPH_URL = "https://graph.microsoft.com"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GROUP = re.compile(r"[A-Za-z0-9_.()-]{0,89}[A-Za-z0-9_()-]")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration written as 30s, 5m, 1h30m, or whole seconds."""


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a base URL has no query or fragment")
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_base_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmScope(_Strict):
    """Where ARM sources read: a subscription, optionally one resource group of it."""

    subscription_id: str
    resource_group: str | None = None

    @field_validator("subscription_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not _GUID.fullmatch(value):
            raise ValueError(f"{value!r} is not a subscription id (a GUID)")
        return value

    @field_validator("resource_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (".." in value or not _GROUP.fullmatch(value)):
            raise ValueError(f"{value!r} is not a resource group name")
        return value

    def path(self, *, group: bool = True) -> str:
        """`/subscriptions/{sub}` and, with `group` and one configured, `/resourceGroups/{rg}`."""
        path = f"/subscriptions/{self.subscription_id}"
        if group and self.resource_group:
            path += f"/resourceGroups/{self.resource_group}"
        return path


class _Source(_Strict):
    name: str = Field(description="how the CLI, the API and the metrics name this source")
    enabled: bool = Field(
        default=True, description="pulled by `serve` (a manual pull works anyway)"
    )
    identity: AzureIdentity = Field(description="the application that signs in")
    interval: Duration = Field(default=timedelta(minutes=5), description="time between pulls")
    overlap: Duration = Field(
        default=timedelta(minutes=10),
        description="how far before the checkpoint each pull starts again",
    )
    lookback: Duration = Field(
        default=timedelta(days=1), description="how far back the first pull reaches"
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="tries per page request (429 and 5xx are retried)"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: letters, digits, '_', '.' and '-', starting with a letter or digit"
                " (at most 100)"
            )
        return value

    @model_validator(mode="after")
    def _sensible_times(self) -> _Source:
        if self.interval < timedelta(seconds=1):
            raise ValueError("interval: at least 1s")
        return self

    def base_url(self) -> str:
        """The service this source reads (ARM or Graph)."""
        raise NotImplementedError

    def origins(self) -> list[str]:
        """The addresses this source's calls may reach: its service and the login endpoint."""
        return [self.base_url(), self.identity.login_url]


class DefenderAlertsSource(_Source):
    """Defender for Cloud alerts over ARM, kept to the Defender for APIs alert types."""

    type: Literal["defender-alerts"]
    scope: ArmScope
    alert_types: list[str] = Field(
        default_factory=lambda: list(DEFENDER_FOR_APIS_ALERT_TYPES),
        min_length=1,
        description="alert types kept (globs allowed, e.g. API_*)",
    )
    management_url: BaseUrl = MANAGEMENT_URL
    api_version: str = "2022-01-01"

    def base_url(self) -> str:
        return self.management_url


class GraphAlertsSource(_Source):
    """Microsoft Graph security alerts_v2 of the Defender for API Management detection source."""

    type: Literal["graph-alerts"]
    graph_url: BaseUrl = GRAPH_URL
    detection_source: str = Field(
        default=APIM_DETECTION_SOURCE,
        pattern=r"^[A-Za-z]{1,100}$",
        description="the detectionSource of the alerts kept",
    )

    def base_url(self) -> str:
        return self.graph_url


class DefenderAssessmentsSource(_Source):
    """Defender for Cloud assessments (recommendations) of API Management resources, over ARM."""

    type: Literal["defender-assessments"]
    scope: ArmScope
    management_url: BaseUrl = MANAGEMENT_URL
    api_version: str = "2021-06-01"

    def base_url(self) -> str:
        return self.management_url


SourceSettings = DefenderAlertsSource | GraphAlertsSource | DefenderAssessmentsSource
SOURCE_TYPES: tuple[str, ...] = ("defender-alerts", "graph-alerts", "defender-assessments")


def _unique_names(sources: list[SourceSettings]) -> list[SourceSettings]:
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ValueError(f"two sources are named {source.name!r}")
        seen.add(source.name)
    return sources


Sources = Annotated[
    list[Annotated[SourceSettings, Field(discriminator="type")]],
    AfterValidator(_unique_names),
]
"""The config file's `sources:` list (names unique)."""


def name_sources(loc: list[int | str], data: Any) -> list[int | str]:
    """An error location with `sources.N.<type>` read as `sources[name]`, for messages."""
    if len(loc) < 2 or loc[0] != "sources" or not isinstance(loc[1], int):
        return loc
    entries = data.get("sources") if isinstance(data, dict) else None
    entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    rest = loc[2:]
    if rest and rest[0] in SOURCE_TYPES:
        rest = rest[1:]
    head: int | str = f"sources[{name}]" if isinstance(name, str) and name else f"sources[{loc[1]}]"
    return [head, *rest]
