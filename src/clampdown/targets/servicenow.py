"""The `servicenow` target: incidents through the Table API.

An incident is found again by its `correlation_id`: before creating one, Clampdown looks for
an active incident with the same correlation id and reuses it. ServiceNow keeps a resolved
incident active until it is closed, so a resolved one that is found is reopened (In Progress)
with a work note; a closed or canceled one is not active, and a new incident is opened.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from clampdown.actions.http import Reply, retry_after
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.messages import servicenow as text
from clampdown.targets.driver import Check, Driver, Ticket, TicketRef
from clampdown.targets.settings import ServiceNowTarget, require_secret

TABLE = "/api/now/table/incident"
RESOLVED = "6"
CLOSED = ("7", "8")
IN_PROGRESS = "2"
CORRELATION_LIMIT = 100
"""The length of `incident.correlation_id` in a base instance."""
_SAFE_CORRELATION = re.compile(r"^[A-Za-z0-9._:/@+-]+$")
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
_NUMBER = re.compile(r"^[A-Za-z]{2,8}[0-9]{4,12}$")
_FIELDS = "sys_id,number,state,active,correlation_id,description,close_notes"
# Worth retrying, but the request may have been carried out (as in actions.http).
_MAYBE_PROCESSED = (500, 502, 504)


def correlation_id(correlation: str) -> str:
    """The `correlation_id` for a correlation: itself when it fits the field and an encoded
    query, else `clampdown-` and 40 hex digits of its SHA-256."""
    if len(correlation) <= CORRELATION_LIMIT and _SAFE_CORRELATION.match(correlation):
        return correlation
    return "clampdown-" + hashlib.sha256(correlation.encode()).hexdigest()[:40]


class ServiceNowDriver(Driver):
    """Opens, updates and resolves ServiceNow incidents."""

    type: ClassVar[str] = "servicenow"
    settings: ServiceNowTarget

    async def open_ticket(self, ticket: Ticket) -> TicketRef:
        correlation = correlation_id(ticket.correlation)
        # Two steps of this process with one correlation id must not both create.
        async with self.keyed(correlation):
            found = await self._open_incident(correlation)
            if found is not None:
                return await self._reuse(found, ticket)
            return await self._create(ticket, correlation)

    async def update_ticket(self, ref: TicketRef, note: str) -> None:
        sys_id = await self._sys_id(ref)
        await self._call("PATCH", f"{TABLE}/{sys_id}", {"work_notes": text.note(note)})

    async def resolve_ticket(self, ref: TicketRef, summary: str) -> None:
        sys_id = await self._sys_id(ref)
        incident = await self._record("GET", f"{TABLE}/{sys_id}", query={"sysparm_fields": _FIELDS})
        notes = text.note(summary)
        state = str(incident.get("state", ""))
        if state in CLOSED or incident.get("active") == "false":
            return  # closed: nothing may change any more
        if state == RESOLVED:
            if incident.get("close_notes") != notes:
                # Resolved by a person or another remediation: add what this one did.
                await self._call("PATCH", f"{TABLE}/{sys_id}", {"work_notes": notes})
            return
        body = {"state": RESOLVED, "close_code": self.settings.close_code, "close_notes": notes}
        await self._call("PATCH", f"{TABLE}/{sys_id}", body)

    async def check(self) -> list[Check]:
        query = {"sysparm_limit": "1", "sysparm_fields": "sys_id"}
        reply = await self._send("GET", TABLE, query=query)
        if reply.status == 200:
            return [Check("incident table", True, "Table API readable")]
        return [Check("incident table", False, f"{reply.status}: {_message(reply)}")]

    # -- steps ---------------------------------------------------------------------------

    async def _open_incident(self, correlation: str) -> dict[str, Any] | None:
        query = {
            "sysparm_query": f"correlation_id={correlation}^active=true^ORDERBYsys_created_on",
            "sysparm_limit": "1",
            "sysparm_fields": _FIELDS,
        }
        rows = await self._rows(query)
        # An instance ignores a query term it cannot read and answers other incidents:
        # only an exact match counts.
        return next(
            (
                row
                for row in rows
                if row.get("correlation_id") == correlation and row.get("active") == "true"
            ),
            None,
        )

    async def _reuse(self, found: dict[str, Any], ticket: Ticket) -> TicketRef:
        sys_id = str(found["sys_id"])
        ref = self._ref(found)
        if text.made_for(str(found.get("description", "")), ticket.message.remediation_id):
            return ref  # this remediation made it: a retry after a crash
        body = {"work_notes": text.seen_again(ticket.message)}
        if found.get("state") == RESOLVED:
            body["state"] = IN_PROGRESS
        await self._call("PATCH", f"{TABLE}/{sys_id}", body)
        return TicketRef(ref.id, ref.number, ref.url, reused=True)

    async def _create(self, ticket: Ticket, correlation: str) -> TicketRef:
        settings = self.settings
        urgency = str(min(3, max(1, ticket.urgency)))
        body = {
            "short_description": text.short_description(ticket.message),
            "description": text.description(ticket.message),
            "urgency": urgency,
            "impact": urgency,
            "category": settings.category,
            "correlation_id": correlation,
            "correlation_display": "Clampdown",
        }
        if settings.caller_id:
            body["caller_id"] = settings.caller_id
        if settings.assignment_group:
            body["assignment_group"] = settings.assignment_group
        return self._ref(await self._record("POST", TABLE, body))

    async def _sys_id(self, ref: TicketRef) -> str:
        """The sys_id of a ticket named by its sys_id or its number (INC0010001)."""
        if _SYS_ID.match(ref.id):
            return ref.id
        if not _NUMBER.match(ref.id):
            raise PermanentError(f"target {self.name}: {ref.id!r} is no incident sys_id or number")
        query = {
            "sysparm_query": f"number={ref.id}",
            "sysparm_limit": "1",
            "sysparm_fields": "sys_id,number",
        }
        found = [r for r in await self._rows(query) if r.get("number") == ref.id]
        if not found:
            raise PermanentError(f"target {self.name}: no incident {ref.id}")
        return str(found[0]["sys_id"])

    def _ref(self, incident: dict[str, Any]) -> TicketRef:
        sys_id = str(incident.get("sys_id", ""))
        if not _SYS_ID.match(sys_id):
            raise PermanentError(f"target {self.name}: ServiceNow answered without a sys_id")
        url = f"{self.settings.instance_url.rstrip('/')}/incident.do?sys_id={sys_id}"
        return TicketRef(sys_id, str(incident.get("number", "")), url)

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, str] | None = None,
    ) -> Any:
        reply = await self._send(method, path, body, query=query)
        self._raise_for(reply)
        payload = reply.json()
        if not isinstance(payload, dict) or "result" not in payload:
            raise PermanentError(f"target {self.name}: ServiceNow answered without a result")
        return payload["result"]

    async def _record(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        record = await self._call(method, path, body, query=query)
        if not isinstance(record, dict):
            raise PermanentError(f"target {self.name}: ServiceNow answered without a record")
        return record

    async def _rows(self, query: dict[str, str]) -> list[dict[str, Any]]:
        rows = await self._call("GET", TABLE, query=query)
        return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, str] | None = None,
    ) -> Reply:
        params = {**(query or {}), "sysparm_exclude_reference_link": "true"}
        url = f"{self.settings.instance_url.rstrip('/')}{path}?{urlencode(params, quote_via=quote)}"
        headers = {"Accept": "application/json", "Authorization": self._authorization()}
        return await self.http.request(
            method, url, json=body, headers=headers, timeout=self.timeout
        )

    def _authorization(self) -> str:
        settings = self.settings
        if settings.token is not None:
            return "Bearer " + require_secret(settings.token, f"target {self.name} token")
        assert settings.username is not None  # the settings hold one login or the other
        assert settings.password is not None
        password = require_secret(settings.password, f"target {self.name} password")
        pair = f"{settings.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _raise_for(self, reply: Reply) -> None:
        if 200 <= reply.status < 300:
            return
        message = f"target {self.name}: ServiceNow answered {reply.status}: {_message(reply)}"
        if reply.status == 429 or reply.status >= 500:
            raise TransientError(
                message,
                retry_after=retry_after(reply.headers),
                maybe_delivered=reply.status in _MAYBE_PROCESSED,
            )
        if reply.status == 401:
            raise PreconditionError(message + " (check the username and password, or token)")
        if reply.status == 403:
            raise PreconditionError(
                message + " (check the user's roles and the instance's ACLs and data policies)"
            )
        raise PermanentError(message)


def _message(reply: Reply) -> str:
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        detail = error.get("detail")
        detail = " ".join(detail.split()) if isinstance(detail, str) else ""
        return str(error["message"]) + (f" ({detail})" if detail else "")
    return reply.body[:200].decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
