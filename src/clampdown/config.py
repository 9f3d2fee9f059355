"""Settings: the YAML config file and its defaults; the only place environment is read."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clampdown.collectors.settings import Sources, name_sources
from clampdown.durations import parse_duration
from clampdown.errors import ConfigError
from clampdown.links import LinksConfig
from clampdown.ownership.settings import ContextConfig, OwnershipRule, channel_problems
from clampdown.secrets import SecretRef
from clampdown.targets.settings import TARGET_SETTINGS, BuiltinTarget, TargetConfig, type_name

DATABASE_URL_ENV = "CLAMPDOWN_DATABASE_URL"
CONFIG_ENV = "CLAMPDOWN_CONFIG"
DEFAULT_DATABASE_URL = "sqlite:///clampdown.db"
TARGET_TYPES = frozenset(type_name(settings) for settings in TARGET_SETTINGS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(StrEnum):
    """What an API token may do; admin implies every other scope."""

    INGEST = "ingest"
    READ = "read"
    APPROVE = "approve"
    ADMIN = "admin"


class TokenConfig(_Strict):
    """One API token: its name (recorded as the actor), its secret and its scopes."""

    name: str
    secret: SecretRef | None = None
    sha256: str | None = Field(default=None, description="hex SHA-256 of the token")
    scopes: list[Scope]

    @model_validator(mode="after")
    def _one_secret(self) -> TokenConfig:
        if (self.secret is None) == (self.sha256 is None):
            raise ValueError("a token gives exactly one of 'secret' or 'sha256'")
        return self

    def digest(self) -> str:
        """The token's SHA-256, from the hash given or the secret resolved."""
        if self.sha256 is not None:
            return self.sha256.lower()
        assert self.secret is not None
        return hashlib.sha256(self.secret.resolve().encode()).hexdigest()

    def allows(self, scope: Scope) -> bool:
        """True when this token carries `scope` (or admin)."""
        return scope in self.scopes or Scope.ADMIN in self.scopes


class EngineConfig(_Strict):
    """Retry and scheduling knobs of the durable engine."""

    max_attempts: int = Field(default=6, ge=1, le=100)
    backoff_initial: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=0.5, gt=0, le=60)
    lease_seconds: float = Field(default=60.0, gt=0)
    concurrency: int = Field(default=64, ge=1, le=1024)


class LimitsConfig(_Strict):
    """Request limits of the HTTP API."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class ProtectedConfig(_Strict):
    """Assets no playbook may contain, whatever it says."""

    ips: list[str] = Field(default_factory=list, description="addresses and CIDR ranges")
    apis: list[str] = Field(
        default_factory=list, description="API ids or scopes, globs allowed ('payments*')"
    )
    identities: list[str] = Field(
        default_factory=list,
        description="users, clients, subscriptions, keys, service principals (exact, any case)",
    )

    @model_validator(mode="after")
    def _valid_networks(self) -> ProtectedConfig:
        for value in self.ips:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"protected.ips: {value!r} is not an address or range") from exc
        return self


class BudgetConfig(_Strict):
    """How many containments automation may make in a window before a person must approve."""

    window: str = Field(default="10m", description="a duration such as 10m or 1h")
    per_target: int | None = Field(
        default=None, ge=1, description="containments per target (none: no limit)"
    )
    per_playbook: int | None = Field(default=None, ge=1, description="containments per playbook")

    @model_validator(mode="after")
    def _valid_window(self) -> BudgetConfig:
        parse_duration(self.window)
        return self


class SafetyConfig(_Strict):
    """Safety rails the engine enforces for every playbook."""

    protected: ProtectedConfig = Field(default_factory=ProtectedConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    announce: str | None = Field(
        default=None, description="a target to tell when automatic containment pauses"
    )


class ConsoleConfig(_Strict):
    """The web console's sessions (docs/console.md)."""

    session_secret: SecretRef | None = Field(
        default=None,
        description="signs session cookies; none: a random key per process (restarts log out)",
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)


class ClosingConfig(_Strict):
    """What a later report of the detector does (docs/sources.md, Closing the loop)."""

    undo_on: list[Literal["resolved", "dismissed"]] = Field(
        default_factory=list,
        description="alert statuses at the source that undo the remediation's containments "
        "early; none: the report is only recorded",
    )


class Config(_Strict):
    """The whole configuration file."""

    database_url: str | None = None
    playbooks: Path | None = Field(default=None, description="a directory of playbook YAML files")
    default_pack: bool = Field(default=True, description="load the shipped default pack too")
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    tokens: list[TokenConfig] = Field(default_factory=list)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    links: LinksConfig | None = Field(
        default=None, description="signed approve / reject links in messages"
    )
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    closing: ClosingConfig = Field(default_factory=ClosingConfig)
    sources: Sources = Field(
        default_factory=list, description="where to pull findings from (docs/sources.md)"
    )
    ownership: list[OwnershipRule] = Field(
        default_factory=list, description="who owns which API; the first matching rule wins"
    )
    context: ContextConfig | None = Field(
        default=None, description="API facts read in the background (APIM tags, Defender)"
    )

    # Validators run in this order: the built-in target exists before the lease is checked.
    @model_validator(mode="after")
    def _builtin_target(self) -> Config:
        if "builtin" not in self.targets:
            targets = {"builtin": BuiltinTarget(), **self.targets}
            object.__setattr__(self, "targets", targets)
        return self

    @model_validator(mode="after")
    def _lease_outlasts_calls(self) -> Config:
        slowest = max((t.timeout for t in self.targets.values()), default=0.0)
        if self.engine.lease_seconds < slowest + 5:
            raise ValueError(
                f"engine.lease_seconds ({self.engine.lease_seconds:g}) must exceed the slowest "
                f"target timeout ({slowest:g}) by at least 5 s, or a running call could be "
                "taken up again by another worker"
            )
        return self

    @model_validator(mode="after")
    def _announce_target_exists(self) -> Config:
        announce = self.safety.announce
        if announce is not None and announce not in self.targets:
            raise ValueError(f"safety.announce names no configured target: {announce!r}")
        return self

    @model_validator(mode="after")
    def _ownership_channels_exist(self) -> Config:
        problems = channel_problems(self.ownership, self.targets)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def effective_database_url(self, override: str | None = None) -> str:
        """--database-url, then CLAMPDOWN_DATABASE_URL, then the file, then the default."""
        return (
            override
            or os.environ.get(DATABASE_URL_ENV)
            or self.database_url
            or DEFAULT_DATABASE_URL
        )


def load_config(path: Path | None = None) -> Config:
    """Read the config file named, or by CLAMPDOWN_CONFIG, or return the defaults."""
    if path is None and (env_path := os.environ.get(CONFIG_ENV)):
        path = Path(env_path)
    if path is None:
        return Config()
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}: {_where(tuple(name_sources(list(err['loc']), data)))}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from exc
    if config.playbooks is not None and not config.playbooks.is_absolute():
        object.__setattr__(config, "playbooks", path.parent / config.playbooks)
    return config


def _where(loc: tuple[int | str, ...]) -> str:
    """A dotted key path; the target type pydantic puts after a target's name is dropped."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "targets" and parts[2] in TARGET_TYPES:
        del parts[2]
    return ".".join(str(p) for p in parts) or "(top)"
