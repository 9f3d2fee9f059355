"""The settings of each target type, as written in the config file.

Credentials are always references (`{env: NAME}` or `{file: PATH}`), never inline values.
Each type names the addresses its calls may reach (`origins`): outbound HTTP from a step is
refused anywhere else, whatever a playbook or a finding says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clampdown.errors import ConfigError
from clampdown.secrets import SecretRef


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per call")

    def origins(self) -> list[str]:
        """URLs whose origin (scheme, host, port) this target's calls may reach."""
        return []


class Probe(BaseModel):
    """A request sent after a containment to see the gateway refuse the contained client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="a URL served through the gateway")
    ip_header: str = Field(
        default="X-Forwarded-For",
        description="header that carries the contained IP (the gateway must trust it)",
    )
    expect: int = Field(default=403, ge=400, le=599)


class BuiltinTarget(_Target):
    """The built-in containment list, enforced through the decision API."""

    type: Literal["builtin"] = "builtin"


class WebhookTarget(_Target):
    """A generic HTTP endpoint that receives JSON."""

    type: Literal["webhook"] = "webhook"
    url: str | SecretRef
    headers: dict[str, str] = Field(default_factory=dict)

    def resolve_url(self) -> str:
        """The URL to call, reading a secret reference if it is one."""
        return self.url.resolve() if isinstance(self.url, SecretRef) else self.url

    def origins(self) -> list[str]:
        return [self.resolve_url()]


class FlowTarget(WebhookTarget):
    """A Power Automate / Logic Apps HTTP trigger; its URL carries a signature."""

    type: Literal["flow"] = "flow"  # type: ignore[assignment]

    @field_validator("url")
    @classmethod
    def _by_reference(cls, value: str | SecretRef) -> str | SecretRef:
        if isinstance(value, str):
            raise ValueError(
                "a flow URL carries its signature: give it as {env: ...} or {file: ...}"
            )
        return value


class AzureApimTarget(_Target):
    """An Azure API Management instance, managed over ARM with client credentials."""

    type: Literal["azure-apim"] = "azure-apim"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    service_name: str = Field(min_length=1)
    api_version: str = "2022-08-01"
    management_url: str = "https://management.azure.com"
    login_url: str = "https://login.microsoftonline.com"
    probe: Probe | None = None
    timeout: float = Field(default=30.0, gt=0, le=300)

    def origins(self) -> list[str]:
        return [self.management_url, self.login_url] + ([self.probe.url] if self.probe else [])

    def service_url(self) -> str:
        """The ARM URL of the API Management service."""
        return (
            f"{self.management_url.rstrip('/')}/subscriptions/{self.subscription_id}"
            f"/resourceGroups/{self.resource_group}/providers/Microsoft.ApiManagement"
            f"/service/{self.service_name}"
        )


class KongTarget(_Target):
    """A Kong Gateway, through its Admin API."""

    type: Literal["kong"] = "kong"
    admin_url: str = "http://127.0.0.1:8001"
    admin_token: SecretRef | None = Field(
        default=None, description="sent as Kong-Admin-Token (Kong Enterprise)"
    )
    probe: Probe | None = None

    def origins(self) -> list[str]:
        return [self.admin_url] + ([self.probe.url] if self.probe else [])


class NginxTarget(_Target):
    """An nginx that includes the files Clampdown renders, validated and reloaded on change."""

    type: Literal["nginx"] = "nginx"
    directory: Path = Field(description="where the rendered include files are written")
    test_command: list[str] = Field(default_factory=lambda: ["nginx", "-t", "-q"], min_length=1)
    reload_command: list[str] = Field(
        default_factory=lambda: ["nginx", "-s", "reload"], min_length=1
    )
    probe: Probe | None = None

    def origins(self) -> list[str]:
        return [self.probe.url] if self.probe else []


class OAuthRevocationTarget(_Target):
    """An OAuth 2.0 authorization server's token revocation endpoint (RFC 7009)."""

    type: Literal["oauth-revocation"] = "oauth-revocation"
    revocation_url: str
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    client_auth: Literal["basic", "post"] = Field(
        default="basic", description="client_secret_basic or client_secret_post"
    )

    def origins(self) -> list[str]:
        return [self.revocation_url]


TargetConfig = Annotated[
    BuiltinTarget
    | WebhookTarget
    | FlowTarget
    | AzureApimTarget
    | KongTarget
    | NginxTarget
    | OAuthRevocationTarget,
    Field(discriminator="type"),
]

TARGET_SETTINGS: tuple[type[_Target], ...] = (
    BuiltinTarget,
    WebhookTarget,
    FlowTarget,
    AzureApimTarget,
    KongTarget,
    NginxTarget,
    OAuthRevocationTarget,
)


def type_name(settings: type[_Target]) -> str:
    """The `type:` a settings class is selected by."""
    default = settings.model_fields["type"].default
    assert isinstance(default, str)
    return default


def require_secret(ref: SecretRef, what: str) -> str:
    """Resolve a credential, naming the setting when it is missing."""
    try:
        return ref.resolve()
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
