"""The `jira` target: issues on Jira Cloud through REST API v3.

Jira has no correlation field, and labels cannot hold spaces or slashes, so an issue carries
the label `clampdown-<first 12 hex digits of the SHA-256 of the correlation id>` (and the
label `clampdown`). Before creating an issue, Clampdown searches the project for one with
that label whose status category is not Done, and reuses it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, ClassVar
from urllib.parse import quote

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.messages import adf
from clampdown.targets.driver import Check, Driver, Ticket, TicketRef
from clampdown.targets.settings import JiraTarget, require_secret

API = "/rest/api/3"
LABEL = "clampdown"
_ISSUE = re.compile(r"^(?:[0-9]{1,18}|[A-Z][A-Z0-9_]{0,254}-[0-9]{1,18})$")
_FIELDS = ["summary", "status", "labels", "description"]
# Worth retrying, but the request may have been carried out (as in actions.http).
_MAYBE_PROCESSED = (500, 502, 504)


def correlation_label(correlation: str) -> str:
    """The label that finds the issue of a correlation id again."""
    return f"{LABEL}-{hashlib.sha256(correlation.encode()).hexdigest()[:12]}"


def search_jql(project_key: str, label: str) -> str:
    """The JQL of the open issue with `label` in the project."""
    return (
        f"project = {_quoted(project_key)} AND labels = {_quoted(label)} AND statusCategory != Done"
    )


class JiraDriver(Driver):
    """Opens, comments on and resolves Jira issues."""

    type: ClassVar[str] = "jira"
    settings: JiraTarget

    async def open_ticket(self, ticket: Ticket) -> TicketRef:
        label = correlation_label(ticket.correlation)
        # Two steps of this process with one correlation id must not both create.
        async with self.keyed(label):
            found = await self._open_issue(label)
            if found is not None:
                return await self._reuse(found, ticket)
            return await self._create(ticket, label)

    async def update_ticket(self, ref: TicketRef, note: str) -> None:
        await self._comment(_issue(ref), adf.plain(note))

    async def resolve_ticket(self, ref: TicketRef, summary: str) -> None:
        issue = _issue(ref)
        comment = adf.plain(summary)
        got = await self._call("GET", f"/issue/{issue}?fields=status,comment")
        fields = got.get("fields") or {}
        if _category(fields.get("status")) == "done":
            comments = (fields.get("comment") or {}).get("comments") or []
            if adf.text_of(comment) in (adf.text_of(c.get("body")) for c in comments):
                return  # resolved with this summary already: a retry
            await self._comment(issue, comment)
            return
        offered = await self._call("GET", f"/issue/{issue}/transitions")
        transition = self._done_transition(offered.get("transitions") or [], ref)
        await self._call("POST", f"/issue/{issue}/transitions", {"transition": {"id": transition}})
        await self._comment(issue, comment)

    async def check(self) -> list[Check]:
        checks = []
        reply = await self._send("GET", "/myself")
        if reply.status == 200:
            me = reply.json() or {}
            checks.append(Check("credentials", True, f"signed in as {me.get('displayName', '?')}"))
        else:
            checks.append(Check("credentials", False, f"{reply.status}: {_message(reply)}"))
        key = self.settings.project_key
        reply = await self._send("GET", f"/project/{quote(key, safe='')}")
        if reply.status != 200:
            checks.append(Check("project", False, f"{reply.status}: {_message(reply)}"))
            return checks
        project = reply.json() or {}
        types = [str(t.get("name")) for t in project.get("issueTypes") or []]
        wanted = self.settings.issue_type
        if types and wanted not in types:
            detail = f"{key} has no issue type {wanted!r} (it has {', '.join(types)})"
            checks.append(Check("project", False, detail))
        else:
            checks.append(Check("project", True, f"{key}: {project.get('name', '')}"))
        return checks

    # -- steps ---------------------------------------------------------------------------

    async def _open_issue(self, label: str) -> dict[str, Any] | None:
        body = {
            "jql": search_jql(self.settings.project_key, label),
            "fields": _FIELDS,
            "maxResults": 1,
        }
        found = await self._call("POST", "/search/jql", body)
        return next(
            (
                issue
                for issue in found.get("issues") or []
                if label in ((issue.get("fields") or {}).get("labels") or [])
                and _category((issue.get("fields") or {}).get("status")) != "done"
            ),
            None,
        )

    async def _reuse(self, found: dict[str, Any], ticket: Ticket) -> TicketRef:
        ref = self._ref(found)
        description = (found.get("fields") or {}).get("description")
        if adf.made_for(description, ticket.message.remediation_id):
            return ref  # this remediation made it: a retry after a crash
        await self._comment(ref.id, adf.seen_again(ticket.message))
        return TicketRef(ref.id, ref.number, ref.url, reused=True)

    async def _create(self, ticket: Ticket, label: str) -> TicketRef:
        settings = self.settings
        fields = {
            "project": {"key": settings.project_key},
            "issuetype": {"name": settings.issue_type},
            "summary": adf.summary(ticket.message),
            "labels": [LABEL, label],
            "description": adf.document(ticket.message),
        }
        return self._ref(await self._call("POST", "/issue", {"fields": fields}))

    async def _comment(self, issue: str, body: dict[str, Any]) -> None:
        await self._call("POST", f"/issue/{issue}/comment", {"body": body})

    def _done_transition(self, offered: list[dict[str, Any]], ref: TicketRef) -> str:
        """The transition named `done_transition`, else any that leads to a done status."""
        wanted = self.settings.done_transition.casefold()
        named = [t for t in offered if str(t.get("name", "")).casefold() == wanted]
        done = [t for t in offered if _category(t.get("to")) == "done"]
        if named or done:
            return str((named + done)[0]["id"])
        names = ", ".join(str(t.get("name")) for t in offered) or "none"
        raise PermanentError(
            f"target {self.name}: {ref.number or ref.id} offers no transition "
            f"{self.settings.done_transition!r} nor any to a done status (it offers: {names})"
        )

    def _ref(self, issue: dict[str, Any]) -> TicketRef:
        issue_id, key = str(issue.get("id", "")), str(issue.get("key", ""))
        if not issue_id or not key:
            raise PermanentError(f"target {self.name}: Jira answered without an issue id and key")
        return TicketRef(issue_id, key, f"{self.settings.site_url.rstrip('/')}/browse/{key}")

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        reply = await self._send(method, path, body)
        self._raise_for(reply)
        payload = reply.json()
        return payload if isinstance(payload, dict) else {}

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        settings = self.settings
        token = require_secret(settings.api_token, f"target {self.name} api_token")
        pair = f"{settings.email}:{token}".encode()
        headers = {
            "Accept": "application/json",
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
        }
        url = f"{settings.site_url.rstrip('/')}{API}{path}"
        return await self.http.request(
            method, url, json=body, headers=headers, timeout=self.timeout
        )

    def _raise_for(self, reply: Reply) -> None:
        if 200 <= reply.status < 300:
            return
        message = f"target {self.name}: Jira answered {reply.status}: {_message(reply)}"
        if reply.status == 429 or reply.status >= 500:
            raise TransientError(
                message,
                retry_after=retry_after(reply.headers),
                maybe_delivered=reply.status in _MAYBE_PROCESSED,
            )
        if reply.status == 401:
            raise PreconditionError(message + " (check email and api_token)")
        if reply.status == 403:
            raise PreconditionError(message + " (check the account's project permissions)")
        raise PermanentError(message)


def _issue(ref: TicketRef) -> str:
    """A ticket's id or key, checked before it becomes part of a path."""
    if not _ISSUE.match(ref.id):
        raise PermanentError(f"{ref.id!r} is no Jira issue id or key")
    return ref.id


def _quoted(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _category(status: Any) -> str:
    category = status.get("statusCategory") if isinstance(status, dict) else None
    return str(category.get("key", "")) if isinstance(category, dict) else ""


def _message(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and ("errorMessages" in body or "errors" in body):
        parts = [str(m) for m in body.get("errorMessages") or []]
        errors = body.get("errors") or {}
        if isinstance(errors, dict):
            parts += [f"{name}: {text}" for name, text in errors.items()]
        if parts:
            return "; ".join(parts)
    return reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
