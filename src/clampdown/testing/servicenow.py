"""A fake ServiceNow instance: the Table API for `incident`.

It follows the real Table API where a client can tell the difference:

- `{"result": ...}` bodies with every value a string (`"active": "true"`, `"state": "1"`),
  201 and a `Location` header on create, numbers `INC0010001` upwards, 32-hex `sys_id`s;
- reference fields (`caller_id`, `assignment_group`) as `{"link", "value"}` unless the
  request says `sysparm_exclude_reference_link=true`; `sysparm_fields` picks fields;
- encoded queries (`sysparm_query`): `field=value` and `field!=value` terms joined by `^`,
  and `ORDERBY<field>` / `ORDERBYDESC<field>`. Like an instance with the default
  `glide.invalid_query.returns_no_rows=false`, a term it cannot read (an unknown field, an
  operator it does not know) is ignored rather than refused;
- work notes and comments are journal fields: writing appends an entry, reading answers "";
- the state model: New 1, In Progress 2, On Hold 3, Resolved 6, Closed 7, Canceled 8.
  A resolved incident stays `active` until it is closed or canceled. Resolving needs a
  resolution code and notes (`close_code`, `close_notes`): without them the base instance's
  data policy answers 403 "Operation Failed" with "Data Policy Exception" in the detail, as
  a real instance does. Leaving Resolved for an open state counts a reopen;
- a closed or canceled incident cannot be written (403, ACL exception), an unknown sys_id
  is 404 "No Record found", and fields the table does not have are silently ignored;
- Basic or Bearer authentication, 401 "User Not Authenticated" otherwise;
- every error is `{"error": {"message", "detail"}, "status": "failure"}`; `fail_next`
  injects throttling (429 with Retry-After) and server errors.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from clampdown.testing.server import RestFakeServer, read_json

Record = dict[str, Any]

TABLE = "/api/now/table/incident"
OPEN_STATES = ("1", "2", "3")
RESOLVED, CLOSED, CANCELED = "6", "7", "8"
_STATES = (*OPEN_STATES, RESOLVED, CLOSED, CANCELED)
_REFERENCES = ("caller_id", "assignment_group", "assigned_to", "resolved_by", "opened_by")
_JOURNALS = ("work_notes", "comments")
_WRITABLE = (
    "short_description",
    "description",
    "urgency",
    "impact",
    "state",
    "category",
    "subcategory",
    "caller_id",
    "assignment_group",
    "assigned_to",
    "correlation_id",
    "correlation_display",
    "close_code",
    "close_notes",
    "contact_type",
)
_ORDER = re.compile(r"^ORDERBY(DESC)?([a-z_]+)$")
# The base instance's priority lookup: (impact, urgency) -> priority.
_PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
_STATUS_MESSAGES = {
    429: ("Rate limit exceeded", "Maximum per hour rate limit exceeded"),
    500: ("Internal Server Error", "An unexpected error occurred"),
    502: ("Bad Gateway", "The instance did not answer in time"),
    503: ("Service Unavailable", "The instance is unavailable or hibernating"),
}


@dataclass
class SnRequest:
    """One request the fake received, with the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class JournalEntry:
    """One work note or comment."""

    element: str
    value: str
    created_by: str
    sys_created_on: str


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, message: str, detail: str) -> None:
        super().__init__(message)
        self.reply = _error(status, message, detail)


class FakeServiceNow(RestFakeServer):
    """A ServiceNow instance with one table, `incident`, for one integration user.

    Give `password` (for `username`) to accept Basic authentication, `tokens` for Bearer.
    """

    def __init__(
        self,
        username: str = "clampdown",
        password: str | None = None,
        tokens: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.tokens = set(tokens)
        self.requests: list[SnRequest] = []
        self.journal: dict[str, list[JournalEntry]] = {}
        self._incidents: dict[str, Record] = {}
        self._number = 10_000

    # -- for tests -----------------------------------------------------------------------

    def incidents(self) -> list[Record]:
        """Every incident, oldest first (copies)."""
        with self.lock:
            return [copy.deepcopy(r) for r in self._incidents.values()]

    def incident(self, sys_id: str) -> Record:
        """One incident as stored (a copy); KeyError when there is none."""
        with self.lock:
            return copy.deepcopy(self._incidents[sys_id])

    def work_notes(self, sys_id: str) -> list[str]:
        """The work notes of an incident, oldest first."""
        with self.lock:
            entries = self.journal.get(sys_id, [])
            return [e.value for e in entries if e.element == "work_notes"]

    def calls(self, method: str, path_contains: str = "") -> list[SnRequest]:
        """The requests of one method whose path contains `path_contains`."""
        with self.lock:
            return [r for r in self.requests if r.method == method and path_contains in r.path]

    def seed(self, **fields: str) -> Record:
        """Insert an incident as if a person or another tool had opened it."""
        with self.lock:
            return copy.deepcopy(self._insert(fields, by="admin"))

    # -- HTTP ----------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body, bad_json = await read_json(request)
        entry = SnRequest(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            body,
        )
        with self.lock:
            self.requests.append(entry)
            reply = self._fault(request.method, request.path)
            if reply is None and not self._authenticated(request.headers.get("Authorization")):
                reply = _error(
                    401, "User Not Authenticated", "Required to provide Auth information"
                )
                reply.headers["WWW-Authenticate"] = 'BASIC realm="Service-now"'
            if reply is None and bad_json:
                reply = _error(
                    400, "Exception while reading request", "The payload is not valid JSON."
                )
            if reply is None:
                try:
                    reply = self._dispatch(request, body)
                except _Refused as exc:
                    reply = exc.reply
            entry.status = reply.status
        headers = {"Content-Type": "application/json;charset=UTF-8", **reply.headers}
        return web.Response(status=reply.status, headers=headers, body=orjson.dumps(reply.body))

    def _fault(self, method: str, path: str) -> _Reply | None:
        fault = self._take_fault(method, path)
        if fault is not None:
            message, detail = _STATUS_MESSAGES.get(fault.status, ("Error", "Injected fault"))
            reply = _error(fault.status, fault.message or message, detail)
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = str(fault.retry_after)
            return reply
        return None

    def _authenticated(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() in self.tokens
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        known = self.password is not None and user == self.username
        return bool(sep) and known and password == self.password

    def _dispatch(self, request: web.Request, body: Any) -> _Reply:
        path = request.path.rstrip("/")
        query = request.query
        if path == TABLE:
            if request.method == "GET":
                return _Reply(200, {"result": self._query(query)})
            if request.method == "POST":
                made = self._insert(_object(body), by=self.username)
                location = f"{self.url}{TABLE}/{made['sys_id']}"
                return _Reply(
                    201, {"result": _shown(made, query, self.url)}, {"Location": location}
                )
            raise _Refused(405, "Method not Supported", f"{request.method} is not allowed here")
        if not path.startswith(TABLE + "/"):
            raise _Refused(400, "Invalid table", f"Invalid table {path.split('/')[-1]}")
        record = self._incidents.get(path.removeprefix(TABLE + "/"))
        if record is None:
            raise _Refused(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        if request.method == "GET":
            return _Reply(200, {"result": _shown(record, query, self.url)})
        if request.method in ("PATCH", "PUT"):
            self._update(record, _object(body))
            return _Reply(200, {"result": _shown(record, query, self.url)})
        raise _Refused(405, "Method not Supported", f"{request.method} is not allowed here")

    # -- the table -----------------------------------------------------------------------

    def _insert(self, fields: Record, *, by: str) -> Record:
        self._number += 1
        record = _blank(f"INC{self._number:07d}", by, _now())
        self._write(record, fields, by=by)
        self._incidents[record["sys_id"]] = record
        return record

    def _update(self, record: Record, fields: Record) -> None:
        if record["active"] != "true":
            raise _Refused(
                403, "Operation Failed", "ACL Exception Update Failed due to security constraints"
            )
        self._write(record, fields, by=self.username)

    def _write(self, record: Record, fields: Record, *, by: str) -> None:
        values = {k: _string(v) for k, v in fields.items() if k in _WRITABLE}
        state = values.get("state", record["state"])
        if state not in _STATES:
            values.pop("state", None)  # a choice the list does not have is dropped
            state = record["state"]
        if state == RESOLVED:
            missing = [
                label
                for name, label in (
                    ("close_code", "Resolution code"),
                    ("close_notes", "Resolution notes"),
                )
                if not str(values.get(name, record[name])).strip()
            ]
            if missing:
                raise _Refused(
                    403,
                    "Operation Failed",
                    "Data Policy Exception: \n\tThe following fields are mandatory: "
                    + ", ".join(missing)
                    + "\n",
                )
        now = _now()
        before = record["state"]
        record.update(values)
        for journal in _JOURNALS:
            note = _string(fields.get(journal, "")).strip()
            if note:
                self.journal.setdefault(record["sys_id"], []).append(
                    JournalEntry(journal, note, by, now)
                )
        record["priority"] = _PRIORITY.get((record["impact"], record["urgency"]), "5")
        if state != before:
            if before == RESOLVED and state in OPEN_STATES:
                record["reopen_count"] = str(int(record["reopen_count"]) + 1)
                record["resolved_at"] = record["resolved_by"] = ""
            if state == RESOLVED:
                record["resolved_at"], record["resolved_by"] = now, by
            if state in (CLOSED, CANCELED):
                record["active"], record["closed_at"] = "false", now
        record["sys_updated_on"], record["sys_updated_by"] = now, by

    def _query(self, query: Any) -> list[Record]:
        rows = list(self._incidents.values())
        order: tuple[str, bool] | None = None
        for term in str(query.get("sysparm_query", "")).split("^"):
            ordered = _ORDER.match(term)
            if ordered:
                order = (ordered.group(2), bool(ordered.group(1)))
                continue
            name, op, value = _term(term)
            if name is None or name not in _FIELDS:
                continue  # unreadable terms are ignored, as the default instance does
            if op == "=":
                rows = [r for r in rows if _plain(r[name]) == value]
            else:
                rows = [r for r in rows if _plain(r[name]) != value]
        if order is not None and (not rows or order[0] in rows[0]):
            rows.sort(key=lambda r: str(r[order[0]]), reverse=order[1])
        try:
            offset = int(query.get("sysparm_offset", 0))
            limit = int(query.get("sysparm_limit", 10_000))
        except ValueError as exc:
            raise _Refused(400, "Invalid parameter", str(exc)) from exc
        return [_shown(r, query, self.url) for r in rows[offset : offset + limit]]


def _blank(number: str, by: str, now: str) -> Record:
    """A new incident with the base instance's defaults."""
    return {
        "sys_id": uuid.uuid4().hex,
        "number": number,
        "state": "1",
        "active": "true",
        "urgency": "3",
        "impact": "3",
        "priority": "5",
        "short_description": "",
        "description": "",
        "category": "inquiry",
        "subcategory": "",
        "caller_id": "",
        "assignment_group": "",
        "assigned_to": "",
        "correlation_id": "",
        "correlation_display": "",
        "close_code": "",
        "close_notes": "",
        "contact_type": "",
        "work_notes": "",
        "comments": "",
        "reopen_count": "0",
        "opened_at": now,
        "opened_by": by,
        "resolved_at": "",
        "resolved_by": "",
        "closed_at": "",
        "sys_created_on": now,
        "sys_created_by": by,
        "sys_updated_on": now,
        "sys_updated_by": by,
    }


_FIELDS = frozenset(_blank("", "", ""))


def _term(term: str) -> tuple[str | None, str, str]:
    """(field, operator, value) of `field=value` or `field!=value`; (None, "", "") otherwise."""
    matched = re.match(r"^([a-z_]+)(!=|=)(.*)$", term)
    if not matched:
        return None, "", ""
    return matched.group(1), matched.group(2), matched.group(3)


def _object(body: Any) -> Record:
    if not isinstance(body, dict):
        raise _Refused(400, "Exception while reading request", "The payload is not a JSON object")
    return body


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _plain(value: Any) -> str:
    return str(value["value"]) if isinstance(value, dict) else str(value)


def _shown(record: Record, query: Any, base: str) -> Record:
    """A record as the API answers: chosen fields, references as links unless excluded."""
    wanted = [f for f in str(query.get("sysparm_fields", "")).split(",") if f]
    shown = {k: v for k, v in record.items() if not wanted or k in wanted}
    if str(query.get("sysparm_exclude_reference_link", "")).lower() != "true":
        for name in _REFERENCES:
            if shown.get(name):
                link = f"{base}/api/now/table/sys_user/{shown[name]}"
                shown[name] = {"link": link, "value": shown[name]}
    return copy.deepcopy(shown)


def _error(status: int, message: str, detail: str) -> _Reply:
    return _Reply(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
