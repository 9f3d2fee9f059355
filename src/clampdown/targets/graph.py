"""The `graph` target: Microsoft Graph for identities and for Graph security alerts.

- revoke_sessions: `POST /v1.0/users/{id|upn}/revokeSignInSessions`;
- set_enabled: `GET /v1.0/users/{id|upn}` (or `/servicePrincipals/{id}`) with
  `$select=id,accountEnabled`, then `PATCH {"accountEnabled": ...}` only when it differs;
- confirm_compromised: user principal names are resolved to object ids first (the API takes
  ids only), then `POST /v1.0/identityProtection/riskyUsers/confirmCompromised`;
- update_finding: for findings delivered as Graph alerts (shape `graph`): read the alert,
  `PATCH /v1.0/security/alerts_v2/{id}` when its status differs, and add the comment with
  `POST .../comments` unless the alert already holds that exact comment.

Which alert: the Graph normalizer keeps the Defender alert id (`providerAlertId`) as the
finding's source_id; Graph's own id is the last segment of the alert's link (`alertWebUrl`,
`https://security.microsoft.com/alerts/{id}`), tried first, then the source_id.

User ids, user principal names and alert ids come from alerts: each is checked against a
strict character set (and `..` refused) before it becomes one quoted URL path segment.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

import orjson

from clampdown.actions.contract import HttpPort
from clampdown.actions.http import Reply, retry_after
from clampdown.errors import (
    ActionError,
    ConfigError,
    PermanentError,
    PreconditionError,
    TransientError,
)
from clampdown.model import JSON
from clampdown.targets.azure.token import GRAPH_SCOPE, Identity, TokenCache
from clampdown.targets.driver import Check, Driver, Principal
from clampdown.targets.settings import GraphTarget

BATCH = 50
"""User ids per confirmCompromised call (Graph documents no limit: a cautious size)."""

ALERT_CHANGES: dict[str, dict[str, str]] = {
    "in_progress": {"status": "inProgress"},
    "resolved": {"status": "resolved"},
    # alerts_v2 has no dismissed status: a dismissal is a resolution as a false positive.
    "dismissed": {"status": "resolved", "classification": "falsePositive"},
    "active": {"status": "new"},
}
"""Clampdown's finding states -> the alerts_v2 properties that express them."""

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "revoke sessions": ("User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
    "read users": (
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
    "enable and disable users": (
        "User.EnableDisableAccount.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ),
    "enable and disable service principals": (
        "Application.ReadWrite.All",
        "Directory.ReadWrite.All",
    ),
    "confirm users compromised": ("IdentityRiskyUser.ReadWrite.All",),
    "update security alerts": ("SecurityAlert.ReadWrite.All",),
}
"""What the target does -> the application permissions that allow it (least privileged first)."""

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Guest accounts look like jdoe_fabrikam.com#EXT#@contoso.onmicrosoft.com.
_UPN = re.compile(
    r"[A-Za-z0-9_'+#&-](?:[A-Za-z0-9._'+#&-]{0,126}[A-Za-z0-9_'+#&-])?"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))+"
)
_ALERT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")
_ALERT_LINK = re.compile(r"/alerts/([^/]+)/?")
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_MAYBE_DONE = frozenset({500, 502, 504})


def user_segment(value: str) -> str:
    """A user's object id or user principal name, checked, as one quoted path segment."""
    text = value.strip()
    if len(text) > 256 or ".." in text or not (_GUID.fullmatch(text) or _UPN.fullmatch(text)):
        raise PermanentError(f"{value[:100]!r} is not a user object id or user principal name")
    return quote(text, safe="")


def object_id_segment(value: str, what: str) -> str:
    """A directory object id (a GUID), checked, as one quoted path segment."""
    text = value.strip()
    if not _GUID.fullmatch(text):
        raise PermanentError(f"{value[:100]!r} is not a {what} object id (a GUID)")
    return quote(text, safe="")


def alert_segment(value: str) -> str:
    """A Graph security alert id, checked, as one quoted path segment."""
    if ".." in value or not _ALERT_ID.fullmatch(value):
        raise PermanentError(f"{value[:100]!r} is not a Graph security alert id")
    return quote(value, safe="")


def graph_alert_ids(finding: dict[str, Any]) -> list[str]:
    """Graph ids a finding's alert may have, most likely first (valid ones only)."""
    candidates: list[str] = []
    link = finding.get("url")
    if isinstance(link, str) and (m := _ALERT_LINK.search(urlsplit(link).path)):
        candidates.append(m.group(1))
    source_id = finding.get("source_id")
    if isinstance(source_id, str):
        candidates.append(source_id.strip())
    unique: list[str] = []
    for candidate in candidates:
        try:
            alert_segment(candidate)
        except PermanentError:
            continue
        if candidate not in unique:
            unique.append(candidate)
    return unique


def token_roles(token: str) -> list[str] | None:
    """The application permissions (`roles`) a Graph access token carries; None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    roles = claims.get("roles", []) if isinstance(claims, dict) else None
    if not isinstance(roles, list):
        return None
    return [str(role) for role in roles]


def graph_error(reply: Reply) -> tuple[str, str]:
    """The code and message of a Graph error answer (with its request-id, for support)."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = reply.body[:200].decode("utf-8", "replace").strip()
        return f"HTTP{reply.status}", text or "no error body"
    code = str(error.get("code") or "Unknown")
    message = str(error.get("message") or "").strip() or "no message"
    inner = error.get("innerError")
    request_id = inner.get("request-id") if isinstance(inner, dict) else None
    if isinstance(request_id, str) and request_id:
        message += f" (request-id {request_id})"
    return code, message


@dataclass(frozen=True)
class _Account:
    """A user or service principal: its path, its name in messages, the permissions needed."""

    path: str
    what: str
    reads: str
    writes: str


class GraphDriver(Driver):
    """Sessions, accounts and risk of directory identities, and Graph security alerts."""

    type: ClassVar[str] = "graph"
    settings: GraphTarget

    def __init__(self, name: str, settings: GraphTarget, http: HttpPort) -> None:
        super().__init__(name, settings, http)
        identity = Identity.of(name, settings, GRAPH_SCOPE)
        self.tokens = TokenCache(identity, http, timeout=self.timeout)

    # -- identities ----------------------------------------------------------------------

    async def revoke_sessions(self, user: str) -> None:
        reply = await self._send("POST", f"/users/{user_segment(user)}/revokeSignInSessions")
        self._raise_for(reply, f"revoke the sessions of user {user!r}", "revoke sessions")

    async def set_enabled(self, principal: Principal, enabled: bool) -> bool:
        account = self._account(principal)
        before = await self._read_enabled(account)
        if before != enabled:
            verb = "enable" if enabled else "disable"
            reply = await self._send("PATCH", account.path, body={"accountEnabled": enabled})
            self._raise_for(reply, f"{verb} {account.what}", account.writes)
        return before

    async def account_enabled(self, principal: Principal) -> bool:
        """Whether the account can sign in now (`accountEnabled`)."""
        return await self._read_enabled(self._account(principal))

    async def confirm_compromised(self, users: list[str]) -> None:
        ids: list[str] = []
        for user in users:
            oid = await self._object_id(user)
            if oid not in ids:
                ids.append(oid)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            reply = await self._send(
                "POST", "/identityProtection/riskyUsers/confirmCompromised", body={"userIds": chunk}
            )
            self._raise_for(
                reply, f"confirm {len(chunk)} user(s) compromised", "confirm users compromised"
            )

    def _account(self, principal: Principal) -> _Account:
        if principal.kind == "user":
            return _Account(
                f"/users/{user_segment(principal.id)}",
                f"user {principal.id!r}",
                reads="read users",
                writes="enable and disable users",
            )
        if principal.kind == "service_principal":
            # Application.ReadWrite.All reads service principals as well.
            return _Account(
                f"/servicePrincipals/{object_id_segment(principal.id, 'service principal')}",
                f"service principal {principal.id!r}",
                reads="enable and disable service principals",
                writes="enable and disable service principals",
            )
        raise PermanentError(
            f"target {self.name}: {principal.kind!r} is not 'user' or 'service_principal'"
        )

    async def _read_enabled(self, account: _Account) -> bool:
        reply = await self._send("GET", account.path, query={"$select": "id,accountEnabled"})
        self._raise_for(reply, f"read {account.what}", account.reads)
        body = reply.json()
        enabled = body.get("accountEnabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            raise PermanentError(
                f"target {self.name}: Graph returned {account.what} without accountEnabled"
            )
        return enabled

    async def _object_id(self, user: str) -> str:
        text = user.strip()
        if _GUID.fullmatch(text):
            return text.lower()
        reply = await self._send("GET", f"/users/{user_segment(text)}", query={"$select": "id"})
        self._raise_for(reply, f"look up user {user!r}", "read users")
        body = reply.json()
        oid = body.get("id") if isinstance(body, dict) else None
        if not isinstance(oid, str) or not _GUID.fullmatch(oid):
            raise PermanentError(f"target {self.name}: Graph returned user {user!r} without an id")
        return oid.lower()

    # -- findings --------------------------------------------------------------------------

    async def update_finding(self, finding: dict[str, Any], state: str, comment: str) -> None:
        changes = ALERT_CHANGES.get(state)
        if changes is None:
            raise PermanentError(f"target {self.name}: unknown finding state {state!r}")
        shape = finding.get("shape")
        if shape != "graph":
            raise PermanentError(
                f"target {self.name}: a graph target updates Graph security alerts (findings "
                f"delivered as shape 'graph'); this finding came as {shape!r} from "
                f"{finding.get('source')!r} (write Defender for Cloud alerts back with a "
                "defender target)"
            )
        candidates = graph_alert_ids(finding)
        if not candidates:
            raise PermanentError(
                f"target {self.name}: the finding names no Graph alert id (neither its link nor "
                f"its source id {str(finding.get('source_id'))[:100]!r} is one)"
            )
        for alert_id in candidates:
            path = f"/security/alerts_v2/{alert_segment(alert_id)}"
            reply = await self._send("GET", path)
            if reply.status == 404:
                continue
            self._raise_for(reply, f"read alert {alert_id}", "update security alerts")
            alert = reply.json()
            current = alert if isinstance(alert, dict) else {}
            patch: dict[str, JSON] = {k: v for k, v in changes.items() if current.get(k) != v}
            if patch:
                reply = await self._send("PATCH", path, body=patch)
                self._raise_for(reply, f"update alert {alert_id}", "update security alerts")
            if comment.strip() and not _has_comment(current, comment):
                body = {"@odata.type": "microsoft.graph.security.alertComment", "comment": comment}
                reply = await self._send("POST", path + "/comments", body=body)
                self._raise_for(reply, f"comment on alert {alert_id}", "update security alerts")
            return
        raise PermanentError(
            f"target {self.name}: Graph knows no alert {' or '.join(map(repr, candidates))}"
        )

    # -- operations ----------------------------------------------------------------------

    async def check(self) -> list[Check]:
        ours = self.settings
        try:
            token = await self.tokens.get()
        except (ActionError, ConfigError) as exc:
            return [Check("sign-in", False, str(exc))]
        checks = [Check("sign-in", True, f"{ours.client_id} in tenant {ours.tenant_id}")]
        roles = token_roles(token)
        if roles is not None:
            checks.append(_permissions_check(set(roles)))
        reads = (
            ("read users", "/users", {"$top": "1", "$select": "id,accountEnabled"}),
            ("read alerts", "/security/alerts_v2", {"$top": "1"}),
        )
        for name, path, query in reads:
            try:
                reply = await self._send("GET", path, query=query)
                needs = "read users" if name == "read users" else "update security alerts"
                self._raise_for(reply, name, needs)
                checks.append(Check(name, True, "readable (writes are not tried)"))
            except (ActionError, ConfigError) as exc:
                checks.append(Check(name, False, str(exc)))
        return checks

    # -- HTTP ----------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, JSON] | None = None,
    ) -> Reply:
        """One call with a bearer token, sent again with a new token after a 401."""
        url = f"{self.settings.graph_url.rstrip('/')}/v1.0{path}"
        if query:
            url += "?" + urlencode(query, safe="$,")
        token = await self.tokens.get()
        reply = await self._request(method, url, token, body)
        if reply.status == 401:
            # An expired or revoked token: nothing was done, so sending again is safe.
            self.tokens.invalidate(token)
            reply = await self._request(method, url, await self.tokens.get(), body)
        return reply

    async def _request(
        self, method: str, url: str, token: str, body: dict[str, JSON] | None
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return await self.http.request(
            method, url, json=body, headers=headers, timeout=self.timeout
        )

    def _raise_for(self, reply: Reply, what: str, needs: str) -> None:
        """Raise the error a Graph answer stands for; nothing for 2xx."""
        status = reply.status
        if 200 <= status < 300:
            return
        code, message = graph_error(reply)
        text = f"target {self.name}: {what}: Graph answered {status} {code}: {message}"
        if status in _TRANSIENT:
            raise TransientError(
                text, retry_after=retry_after(reply.headers), maybe_delivered=status in _MAYBE_DONE
            )
        if status == 401:
            raise PreconditionError(text + " (check tenant_id, client_id and graph_url)")
        if status == 403:
            permission = PERMISSIONS[needs][0]
            raise PreconditionError(
                f"{text} (to {needs}, the app needs the {permission} application permission, "
                "granted with admin consent)"
            )
        raise PermanentError(text)


def _has_comment(alert: dict[str, Any], comment: str) -> bool:
    comments = alert.get("comments")
    return isinstance(comments, list) and any(
        isinstance(item, dict) and item.get("comment") == comment for item in comments
    )


def _permissions_check(roles: set[str]) -> Check:
    missing = [
        f"{does} ({allowed[0]})"
        for does, allowed in PERMISSIONS.items()
        if not roles.intersection(allowed)
    ]
    if not missing:
        return Check("permissions", True, "granted: " + ", ".join(sorted(roles)))
    return Check("permissions", False, "cannot " + "; cannot ".join(missing))
