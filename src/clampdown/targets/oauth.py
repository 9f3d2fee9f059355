"""The `oauth-revocation` target: OAuth 2.0 token revocation (RFC 7009)."""

from __future__ import annotations

import base64
import secrets
from typing import ClassVar
from urllib.parse import quote

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, TransientError
from clampdown.targets.driver import Check, Credential, Driver
from clampdown.targets.settings import OAuthRevocationTarget, require_secret


class RevocationDriver(Driver):
    """Revokes access and refresh tokens at an authorization server."""

    type: ClassVar[str] = "oauth-revocation"
    settings: OAuthRevocationTarget

    async def revoke(self, credential: Credential) -> None:
        if not credential.token:
            raise PermanentError(f"target {self.name}: credential.revoke needs `token` here")
        reply = await self._post(credential.token, credential.token_type_hint)
        if reply.status == 200:
            return
        if reply.status == 503 or reply.status == 429 or reply.status >= 500:
            # RFC 7009 2.2.1: after a 503 the token must be assumed still valid: retry.
            raise TransientError(
                f"target {self.name}: revocation answered {reply.status}; the token is still valid",
                retry_after=retry_after(reply.headers),
            )
        raise PermanentError(f"target {self.name}: revocation refused: {_oauth_error(reply)}")

    async def credential_state(self, credential: Credential) -> str:
        # No read-back exists; a 200 from the revocation endpoint is the confirmation.
        return "confirmed"

    async def check(self) -> list[Check]:
        # Revoking a token nobody holds changes nothing, and the answer shows whether the
        # server is reachable and accepts our client authentication.
        reply = await self._post("clampdown-check-" + secrets.token_hex(8), "access_token")
        if reply.status == 200:
            return [Check("revocation endpoint", True, "client authentication accepted")]
        return [Check("revocation endpoint", False, f"{reply.status}: {_oauth_error(reply)}")]

    async def _post(self, token: str, hint: str | None) -> Reply:
        settings = self.settings
        secret = require_secret(settings.client_secret, f"target {self.name} client_secret")
        form = {"token": token}
        if hint:
            form["token_type_hint"] = hint
        headers = {"Accept": "application/json"}
        if settings.client_auth == "basic":
            # RFC 6749 2.3.1: id and secret are form-encoded before the Basic encoding.
            pair = f"{quote(settings.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=settings.client_id, client_secret=secret)
        return await self.http.request(
            "POST", settings.revocation_url, form=form, headers=headers, timeout=self.timeout
        )


def _oauth_error(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error: str = body["error"]
        described = body.get("error_description")
        return error + (f" ({described})" if isinstance(described, str) else "")
    return reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
