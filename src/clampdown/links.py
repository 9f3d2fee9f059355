"""Signed, expiring links that let a person approve or reject from a message.

A link carries the remediation, the verb and an expiry, signed with HMAC-SHA256 under a
secret from the config. Opening it shows a confirmation page; only the page's POST acts, so a
mail scanner that fetches every link cannot approve anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from pydantic import BaseModel, ConfigDict, Field

from clampdown.durations import parse_duration
from clampdown.errors import InputError
from clampdown.secrets import SecretRef

VERBS = ("approve", "reject")


class LinksConfig(BaseModel):
    """Where people open links, and the secret that signs them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="Clampdown's address as people reach it")
    secret: SecretRef
    ttl: str = Field(default="24h", description="how long a link works")


@dataclass(frozen=True)
class LinkRequest:
    """What a valid link asks for."""

    remediation_id: str
    verb: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Links:
    """Makes and reads signed links; without a config it makes none."""

    def __init__(self, base_url: str, secret: bytes, ttl: timedelta) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self.ttl = ttl

    @classmethod
    def from_config(cls, config: LinksConfig | None) -> Links | None:
        """The signer of a config, or None when links are not configured."""
        if config is None:
            return None
        secret = config.secret.resolve().encode()
        return cls(config.base_url, secret, parse_duration(config.ttl))

    def make(self, remediation_id: str, verb: str, *, now: datetime | None = None) -> str:
        """A link for one verb on one remediation."""
        assert verb in VERBS
        expires = int(((now or datetime.now(UTC)) + self.ttl).timestamp())
        body = _b64(orjson.dumps({"r": remediation_id, "v": verb, "e": expires}))
        return f"{self.base_url}/v1/links/{body}.{self._sign(body)}"

    def read(self, token: str, *, now: datetime | None = None) -> LinkRequest:
        """What a link's token asks for; InputError when forged, damaged or expired."""
        body, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise InputError("this link is not valid")
        try:
            claims = orjson.loads(_unb64(body))
            action = LinkRequest(
                str(claims["r"]), str(claims["v"]), datetime.fromtimestamp(claims["e"], UTC)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError("this link is not valid") from exc
        if action.verb not in VERBS:
            raise InputError("this link is not valid")
        if action.expires_at <= (now or datetime.now(UTC)):
            raise InputError("this link has expired")
        return action

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest()[:24])
