"""Microsoft identity platform tokens for a service principal (OAuth 2.0 client credentials).

One `TokenCache` per target and resource: a token is fetched when first needed, reused until
shortly before it expires, and fetched again at most once at a time however many steps ask.
A 401 from the resource makes the caller `invalidate` the token it used and ask again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.secrets import SecretRef
from clampdown.targets.settings import AzureIdentity, require_secret

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

EARLY_SECONDS = 300.0
"""A token is renewed this long before it expires (or after 90% of a shorter lifetime)."""

# The setting to fix for each identity-platform error that retrying cannot cure.
_SETTING = {
    "invalid_client": "client_secret",
    "unauthorized_client": "client_id",
    "invalid_resource": "management_url",
    "invalid_scope": "management_url",
    "unsupported_grant_type": "client_id",
}
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class Identity:
    """Who signs in, where, and for which resource."""

    target: str
    login_url: str
    tenant_id: str
    client_id: str
    client_secret: SecretRef
    scope: str = MANAGEMENT_SCOPE

    @classmethod
    def of(cls, target: str, settings: AzureIdentity, scope: str = MANAGEMENT_SCOPE) -> Identity:
        """The identity a target's settings name, for `scope`."""
        return cls(
            target=target,
            login_url=settings.login_url,
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            scope=scope,
        )


class TokenCache:
    """Bearer tokens of one service principal for one resource, cached until near expiry."""

    def __init__(
        self,
        identity: Identity,
        http: HttpPort,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.http = http
        self.timeout = timeout
        self.clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The tenant's token endpoint."""
        who = self.identity
        return f"{who.login_url.rstrip('/')}/{quote(who.tenant_id, safe='')}/oauth2/v2.0/token"

    async def get(self) -> str:
        """A token valid for a while yet; fetched when there is none."""
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock may have fetched one meanwhile.
            token = self._fresh()
            if token is None:
                token = await self._fetch()
            return token

    def invalidate(self, token: str) -> None:
        """Forget `token` (the resource refused it); a newer one is kept."""
        if self._token == token:
            self._token = None

    def _fresh(self) -> str | None:
        if self._token is not None and self.clock() < self._renew_at:
            return self._token
        return None

    async def _fetch(self) -> str:
        who = self.identity
        secret = require_secret(who.client_secret, f"target {who.target} client_secret")
        form = {
            "client_id": who.client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": who.scope,
        }
        started = self.clock()
        reply = await self.http.request(
            "POST",
            self.url,
            form=form,
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        body = reply.json()
        if reply.status != 200:
            raise self._error(reply, secret)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(
                f"target {who.target}: the token endpoint answered without an access_token "
                "(check login_url)"
            )
        try:
            lifetime = float(body.get("expires_in", 0))
        except (TypeError, ValueError):
            lifetime = 0.0
        self._token = token
        self._renew_at = started + lifetime - min(EARLY_SECONDS, lifetime / 10)
        return token

    def _error(self, reply: Reply, secret: str) -> Exception:
        who = self.identity
        body = reply.json()
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str):
            text = reply.body[:200].decode("utf-8", "replace").strip()
            error, description = f"HTTP {reply.status}", text
        else:
            raw = body.get("error_description") if isinstance(body, dict) else None
            # Trace and correlation ids follow the message; the message is what helps.
            description = str(raw or "").split(" Trace ID:")[0].strip()
        if len(secret) >= 4:
            description = description.replace(secret, "***")
        message = f"target {who.target}: sign-in as {who.client_id} refused: {error}" + (
            f" ({description})" if description else ""
        )
        if reply.status == 429 or reply.status >= 500 or error in _TRANSIENT:
            return TransientError(message, retry_after=retry_after(reply.headers))
        setting = _SETTING.get(error)
        if setting is None and "tenant" in description.lower():
            setting = "tenant_id"
        if setting is None and error.startswith("HTTP "):
            setting = "login_url and tenant_id"
        hint = f"; check the target's {setting}" if setting else ""
        return PermanentError(message + hint)
