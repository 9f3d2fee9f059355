"""The settings of each target type, as written in the config file.

Credentials are always references (`{env: NAME}` or `{file: PATH}`), never inline values.
Each type names the addresses its calls may reach (`origins`): outbound HTTP from a step is
refused anywhere else, whatever a playbook or a finding says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clampdown.errors import ConfigError
from clampdown.secrets import SecretRef


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per call")
    rate_limit: float | None = Field(
        default=None,
        gt=0,
        description="calls per second at most; further calls wait their turn (none: no limit)",
    )

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


class AzureIdentity(_Target):
    """A Microsoft Entra application signing in with client credentials."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    login_url: str = "https://login.microsoftonline.com"


class AzureApimTarget(AzureIdentity):
    """An Azure API Management instance, managed over ARM with client credentials."""

    type: Literal["azure-apim"] = "azure-apim"
    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    service_name: str = Field(min_length=1)
    api_version: str = "2022-08-01"
    management_url: str = "https://management.azure.com"
    probe: Probe | None = None
    timeout: float = Field(default=30.0, gt=0, le=300)
    rate_limit: float | None = Field(default=10.0, gt=0, description="ARM write budget")

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


class ServiceNowTarget(_Target):
    """A ServiceNow instance: incidents through the Table API."""

    type: Literal["servicenow"] = "servicenow"
    instance_url: str = Field(description="https://<instance>.service-now.com")
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = Field(default=None, description="an OAuth bearer token instead")
    assignment_group: str = ""
    caller_id: str = ""
    category: str = "security"
    close_code: str = Field(default="Resolved by request", description="close code on resolve")

    @model_validator(mode="after")
    def _one_login(self) -> ServiceNowTarget:
        basic = self.username is not None and self.password is not None
        if basic == (self.token is not None) or (self.username is None) != (self.password is None):
            raise ValueError("give either username and password, or token")
        return self

    def origins(self) -> list[str]:
        return [self.instance_url]


class JiraTarget(_Target):
    """A Jira Cloud site: issues through REST API v3."""

    type: Literal["jira"] = "jira"
    site_url: str = Field(description="https://<site>.atlassian.net")
    email: str = Field(min_length=1)
    api_token: SecretRef
    project_key: str = Field(min_length=1)
    issue_type: str = "Task"
    done_transition: str = Field(default="Done", description="the transition that resolves")

    def origins(self) -> list[str]:
        return [self.site_url]


class PagerDutyTarget(_Target):
    """A PagerDuty service, through Events API v2."""

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretRef
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = "clampdown"

    def origins(self) -> list[str]:
        return [self.events_url]


class TeamsTarget(_Target):
    """A Microsoft Teams channel: an incoming webhook or a Workflows webhook trigger."""

    type: Literal["teams"] = "teams"
    url: SecretRef = Field(description="the webhook URL carries a signature: by reference")
    rate_limit: float | None = Field(default=4.0, gt=0)

    def origins(self) -> list[str]:
        return [self.url.resolve()]


class SlackTarget(_Target):
    """A Slack channel, through an incoming webhook."""

    type: Literal["slack"] = "slack"
    url: SecretRef = Field(description="the webhook URL is a secret: by reference")
    rate_limit: float | None = Field(default=1.0, gt=0)

    def origins(self) -> list[str]:
        return [self.url.resolve()]


class SmtpTarget(_Target):
    """A mail server: messages over SMTP, with STARTTLS and authentication."""

    type: Literal["smtp"] = "smtp"
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretRef | None = None
    sender: str = Field(min_length=3, description="the From address")
    to: list[str] = Field(min_length=1, description="recipients")
    ca_file: Path | None = Field(default=None, description="a CA bundle to trust (private CAs)")


class GraphTarget(AzureIdentity):
    """Microsoft Graph: identities (sessions, accounts, risk) and security alerts."""

    type: Literal["graph"] = "graph"
    graph_url: str = "https://graph.microsoft.com"

    def origins(self) -> list[str]:
        return [self.graph_url, self.login_url]


class DefenderTarget(AzureIdentity):
    """Microsoft Defender for Cloud over ARM: alert state write-back."""

    type: Literal["defender"] = "defender"
    management_url: str = "https://management.azure.com"
    api_version: str = "2022-01-01"
    rate_limit: float | None = Field(default=10.0, gt=0, description="ARM write budget")

    def origins(self) -> list[str]:
        return [self.management_url, self.login_url]


TargetConfig = Annotated[
    BuiltinTarget
    | WebhookTarget
    | FlowTarget
    | AzureApimTarget
    | KongTarget
    | NginxTarget
    | OAuthRevocationTarget
    | ServiceNowTarget
    | JiraTarget
    | PagerDutyTarget
    | TeamsTarget
    | SlackTarget
    | SmtpTarget
    | GraphTarget
    | DefenderTarget,
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
    ServiceNowTarget,
    JiraTarget,
    PagerDutyTarget,
    TeamsTarget,
    SlackTarget,
    SmtpTarget,
    GraphTarget,
    DefenderTarget,
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
