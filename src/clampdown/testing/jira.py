"""A fake Jira Cloud site: issues, comments, transitions and search, REST API v3.

It follows the real API where a client can tell the difference:

- Basic authentication with an account's email and API token; 401 otherwise;
- `POST /rest/api/3/issue` validates the fields as Jira does (project, issue type, a summary
  of at most 255 characters without line breaks, labels without spaces) and answers 201
  `{"id", "key", "self"}`; `description` and comment bodies must be Atlassian Document
  Format: anything but an ADF document is refused with Jira's "Operation value must be an
  Atlassian Document" message, and a document with unknown nodes or marks, empty text
  nodes or link marks without `href` with `INVALID_INPUT`;
- `POST /rest/api/3/search/jql` (the enhanced search) answers `{"issues", "isLast"}`. It
  understands the one query Clampdown sends,
  `project = "KEY" AND labels = "LABEL" AND statusCategory != Done`, and refuses any other
  JQL with 400, so a client that changes its query notices;
- transitions follow a simplified workflow: statuses To Do (new), In Progress
  (indeterminate) and Done (done), each reachable from the others; `POST .../transitions`
  answers 204, and 400 for a transition the issue does not offer;
- errors are `{"errorMessages": [...], "errors": {...}}`; `fail_next` injects throttling
  (429 with Retry-After) and server errors; `read_only` makes writes answer 403.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from clampdown.testing.server import RestFakeServer, read_json

Issue = dict[str, Any]
API = "/rest/api/3"
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
STATUSES: Mapping[str, str] = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
"""The workflow's statuses and their status categories."""
TRANSITIONS: Mapping[str, tuple[str, str]] = {
    "11": ("To Do", "To Do"),
    "21": ("In Progress", "In Progress"),
    "31": ("Done", "Done"),
}
"""Transition id -> (its name, the status it leads to)."""

_CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {
        "id": 4,
        "key": "indeterminate",
        "colorName": "yellow",
        "name": "In Progress",
    },
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
_JQL = re.compile(
    r'^project = "(?P<project>(?:[^"\\]|\\.)*)" AND labels = "(?P<label>(?:[^"\\]|\\.)*)"'
    r" AND statusCategory != Done$"
)
_ISSUE_PATH = re.compile(rf"^{API}/issue/(?P<issue>[^/]+)(?:/(?P<sub>comment|transitions))?$")
_BLOCKS = {
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "listItem",
    "codeBlock",
    "blockquote",
    "rule",
    "panel",
}
_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard"}
_MARKS = {"strong", "em", "code", "strike", "underline", "link", "subsup", "textColor"}
_STATUS_MESSAGES = {
    429: "Rate limit exceeded.",
    500: "Internal server error.",
    502: "Bad gateway.",
    503: "Service unavailable.",
}


@dataclass
class JiraRequest:
    """One request the fake received, with the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, messages: list[str], errors: dict[str, str] | None = None):
        super().__init__(messages)
        self.reply = _error(status, messages, errors)


class FakeJira(RestFakeServer):
    """A Jira Cloud site with the given projects, for one account (`email`, `api_token`)."""

    def __init__(
        self,
        email: str,
        api_token: str,
        *,
        projects: Mapping[str, str] | None = None,
        issue_types: tuple[str, ...] = ("Task", "Bug"),
        transitions: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.email = email
        self.api_token = api_token
        self.projects = dict(projects or {"SEC": "Security"})
        self.issue_types = issue_types
        self.transitions = dict(transitions or TRANSITIONS)
        self.read_only = False
        self.requests: list[JiraRequest] = []
        self._issues: dict[str, Issue] = {}
        self._comments: dict[str, list[dict[str, Any]]] = {}
        self._next_id = 10_000
        self._next_key: dict[str, int] = {}

    # -- for tests -----------------------------------------------------------------------

    def issues(self) -> list[Issue]:
        """Every issue, oldest first (copies, as `GET /issue/{key}` shows them)."""
        with self.lock:
            return [self._shown(i, None) for i in self._issues.values()]

    def issue(self, key: str) -> Issue:
        """One issue by key or id (a copy); KeyError when there is none."""
        with self.lock:
            found = self._find(key)
            if found is None:
                raise KeyError(key)
            return self._shown(found, None)

    def status(self, key: str) -> str:
        """The name of an issue's status."""
        return str(self.issue(key)["fields"]["status"]["name"])

    def comments(self, key: str) -> list[Any]:
        """The ADF bodies of an issue's comments, oldest first."""
        with self.lock:
            found = self._find(key)
            if found is None:
                raise KeyError(key)
            return [copy.deepcopy(c["body"]) for c in self._comments[found["id"]]]

    def calls(self, method: str, path_contains: str = "") -> list[JiraRequest]:
        """The requests of one method whose path contains `path_contains`."""
        with self.lock:
            return [r for r in self.requests if r.method == method and path_contains in r.path]

    def seed(self, project: str, summary: str, labels: list[str], status: str = "To Do") -> Issue:
        """An issue as if a person had opened it."""
        with self.lock:
            issue = self._insert(project, "Task", summary, labels, None)
            issue["status"] = status
            return self._shown(issue, None)

    # -- HTTP ----------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body, bad_json = await read_json(request)
        entry = JiraRequest(
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
                reply = _error(401, [NOT_AUTHENTICATED])
            if reply is None and bad_json:
                reply = _error(400, ["Unexpected character in the request body: not JSON."])
            if reply is None:
                try:
                    reply = self._dispatch(request, body)
                except _Refused as exc:
                    reply = exc.reply
            entry.status = reply.status
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        headers = {"Content-Type": "application/json;charset=UTF-8", **reply.headers}
        return web.Response(status=reply.status, headers=headers, body=orjson.dumps(reply.body))

    def _fault(self, method: str, path: str) -> _Reply | None:
        fault = self._take_fault(method, path)
        if fault is not None:
            message = fault.message or _STATUS_MESSAGES.get(fault.status, "Injected fault.")
            reply = _error(fault.status, [message])
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = str(fault.retry_after)
            return reply
        return None

    def _authenticated(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.email}:{self.api_token}"

    def _dispatch(self, request: web.Request, body: Any) -> _Reply:
        method, path = request.method, request.path.rstrip("/")
        if path == f"{API}/myself" and method == "GET":
            return _Reply(200, self._myself())
        if path.startswith(f"{API}/project/") and method == "GET":
            return _Reply(200, self._project(path.removeprefix(f"{API}/project/")))
        if path == f"{API}/search/jql" and method == "POST":
            return _Reply(200, self._search(_object(body)))
        if path == f"{API}/issue" and method == "POST":
            return _Reply(201, self._create(_object(body)))
        matched = _ISSUE_PATH.match(path)
        if matched is None:
            raise _Refused(404, ["null for uri: " + str(request.url)])
        issue = self._find(matched.group("issue"))
        if issue is None:
            raise _Refused(404, ["Issue does not exist or you do not have permission to see it."])
        sub = matched.group("sub")
        if sub is None and method == "GET":
            return _Reply(200, self._shown(issue, request.query.get("fields")))
        if sub == "comment" and method == "POST":
            return _Reply(201, self._comment(issue, _object(body)))
        if sub == "transitions" and method == "GET":
            return _Reply(200, {"expand": "transitions", "transitions": self._offered(issue)})
        if sub == "transitions" and method == "POST":
            self._transition(issue, _object(body))
            return _Reply(204)
        raise _Refused(405, [f"Method {method} is not allowed here."])

    # -- resources -----------------------------------------------------------------------

    def _myself(self) -> dict[str, Any]:
        return {
            "self": f"{self.url}{API}/user?accountId=5b10a2844c20165700ede21g",
            "accountId": "5b10a2844c20165700ede21g",
            "accountType": "atlassian",
            "emailAddress": self.email,
            "displayName": "Clampdown",
            "active": True,
        }

    def _project(self, key: str) -> dict[str, Any]:
        if key not in self.projects:
            raise _Refused(404, [f"No project could be found with key '{key}'."])
        return {
            "self": f"{self.url}{API}/project/{key}",
            "id": str(10_000 + sorted(self.projects).index(key)),
            "key": key,
            "name": self.projects[key],
            "issueTypes": [
                {"id": str(10_001 + n), "name": name, "subtask": False}
                for n, name in enumerate(self.issue_types)
            ],
        }

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        jql = body.get("jql")
        matched = _JQL.match(jql) if isinstance(jql, str) else None
        if matched is None:
            raise _Refused(400, [f"Error in the JQL Query: FakeJira does not support {jql!r}."])
        project, label = (re.sub(r"\\(.)", r"\1", matched.group(g)) for g in ("project", "label"))
        if project not in self.projects:
            raise _Refused(400, [f"The value '{project}' does not exist for the field 'project'."])
        found = [
            i
            for i in self._issues.values()
            if i["project"] == project and label in i["labels"] and STATUSES[i["status"]] != "done"
        ]
        limit = body.get("maxResults", 50)
        if not isinstance(limit, int) or limit < 0:
            raise _Refused(400, ["maxResults must be a positive number."])
        fields = body.get("fields")
        wanted = ",".join(fields) if isinstance(fields, list) else None
        return {
            "issues": [self._shown(i, wanted) for i in found[:limit]],
            "isLast": len(found) <= limit,
        }

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._writable("You do not have permission to create issues in this project.")
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise _Refused(400, [], {"fields": "Specify the fields of the issue."})
        errors: dict[str, str] = {}
        project = _member(fields, "project", "key")
        if project not in self.projects:
            errors["project"] = "Specify a valid project ID or key"
        issue_type = _member(fields, "issuetype", "name")
        if not issue_type:
            errors["issuetype"] = "Specify an issue type"
        elif issue_type not in self.issue_types:
            errors["issuetype"] = "The issue type selected is invalid."
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "The labels must be a list of strings."
        else:
            for label in labels:
                if not label or any(c.isspace() for c in label):
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid."
                elif len(label) > 255:
                    errors["labels"] = "The label exceeds the 255 character limit."
        description = fields.get("description")
        if description is not None and (problem := _adf_problem(description)):
            errors["description"] = problem
        if errors:
            raise _Refused(400, [], errors)
        issue = self._insert(str(project), str(issue_type), str(summary), labels, description)
        return {"id": issue["id"], "key": issue["key"], "self": self._self(issue)}

    def _comment(self, issue: Issue, body: dict[str, Any]) -> dict[str, Any]:
        self._writable("You do not have the permission to comment on this issue.")
        adf = body.get("body")
        if adf is None:
            raise _Refused(400, [], {"comment": "Comment body can not be empty!"})
        if problem := _adf_problem(adf):
            raise _Refused(400, [], {"comment": problem})
        comments = self._comments[issue["id"]]
        comment_id = str(10_000 + sum(len(c) for c in self._comments.values()))
        now = _now()
        comment = {
            "self": f"{self._self(issue)}/comment/{comment_id}",
            "id": comment_id,
            "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Clampdown"},
            "body": adf,
            "created": now,
            "updated": now,
        }
        comments.append(comment)
        issue["updated"] = now
        return copy.deepcopy(comment)

    def _offered(self, issue: Issue) -> list[dict[str, Any]]:
        return [
            {
                "id": tid,
                "name": name,
                "hasScreen": False,
                "isGlobal": True,
                "isInitial": False,
                "isAvailable": True,
                "isConditional": False,
                "to": self._status(status),
            }
            for tid, (name, status) in self.transitions.items()
            if status != issue["status"]
        ]

    def _transition(self, issue: Issue, body: dict[str, Any]) -> None:
        self._writable("You do not have permission to transition this issue.")
        wanted = _member(body, "transition", "id")
        if wanted not in {t["id"] for t in self._offered(issue)}:
            raise _Refused(400, [f"Transition id '{wanted}' is not valid for this issue."])
        issue["status"] = self.transitions[str(wanted)][1]
        done = STATUSES[issue["status"]] == "done"
        issue["resolution"] = {"name": "Done"} if done else None
        issue["resolutiondate"] = _now() if done else None
        issue["updated"] = _now()

    # -- storage -------------------------------------------------------------------------

    def _writable(self, message: str) -> None:
        if self.read_only:
            raise _Refused(403, [message])

    def _insert(
        self,
        project: str,
        issue_type: str,
        summary: str,
        labels: list[str],
        description: Any,
    ) -> Issue:
        self._next_id += 1
        number = self._next_key[project] = self._next_key.get(project, 0) + 1
        now = _now()
        issue: Issue = {
            "id": str(self._next_id),
            "key": f"{project}-{number}",
            "project": project,
            "issuetype": issue_type,
            "summary": summary,
            "labels": list(labels),
            "description": copy.deepcopy(description),
            "status": "To Do",
            "resolution": None,
            "resolutiondate": None,
            "created": now,
            "updated": now,
        }
        self._issues[issue["id"]] = issue
        self._comments[issue["id"]] = []
        return issue

    def _find(self, id_or_key: str) -> Issue | None:
        if id_or_key in self._issues:
            return self._issues[id_or_key]
        return next((i for i in self._issues.values() if i["key"] == id_or_key), None)

    def _self(self, issue: Issue) -> str:
        return f"{self.url}{API}/issue/{issue['id']}"

    def _status(self, name: str) -> dict[str, Any]:
        return {
            "self": f"{self.url}{API}/status/{name}",
            "name": name,
            "id": str(10_000 + list(STATUSES).index(name)),
            "statusCategory": dict(_CATEGORIES[STATUSES[name]]),
        }

    def _shown(self, issue: Issue, fields: str | None) -> Issue:
        comments = self._comments[issue["id"]]
        every = {
            "summary": issue["summary"],
            "description": issue["description"],
            "labels": issue["labels"],
            "project": {"key": issue["project"], "name": self.projects.get(issue["project"])},
            "issuetype": {"name": issue["issuetype"]},
            "status": self._status(issue["status"]),
            "resolution": issue["resolution"],
            "resolutiondate": issue["resolutiondate"],
            "created": issue["created"],
            "updated": issue["updated"],
            "comment": {
                "comments": comments,
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            },
        }
        wanted = [f for f in (fields or "").split(",") if f and f != "*all"]
        chosen = {k: v for k, v in every.items() if not wanted or k in wanted}
        return copy.deepcopy(
            {"id": issue["id"], "key": issue["key"], "self": self._self(issue), "fields": chosen}
        )


def _adf_problem(value: Any) -> str | None:
    """None for an ADF document Jira accepts, else Jira's message."""
    if not isinstance(value, dict) or value.get("type") != "doc":
        return NOT_ADF
    if value.get("version") != 1 or not isinstance(value.get("content"), list):
        return NOT_ADF
    return None if all(_node_ok(n, block=True) for n in value["content"]) else "INVALID_INPUT"


def _node_ok(node: Any, *, block: bool) -> bool:
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind not in (_BLOCKS if block else _INLINE):
        return False
    if kind == "text":
        text = node.get("text")
        return isinstance(text, str) and bool(text) and _marks_ok(node.get("marks", []))
    if kind == "heading" and (node.get("attrs") or {}).get("level") not in range(1, 7):
        return False
    content = node.get("content", [])
    if not isinstance(content, list):
        return False
    if kind in ("bulletList", "orderedList"):
        return bool(content) and all(
            isinstance(c, dict) and c.get("type") == "listItem" and _node_ok(c, block=True)
            for c in content
        )
    inline = kind in ("paragraph", "heading", "codeBlock")
    return all(_node_ok(c, block=not inline) for c in content)


def _marks_ok(marks: Any) -> bool:
    if not isinstance(marks, list):
        return False
    for mark in marks:
        if not isinstance(mark, dict) or mark.get("type") not in _MARKS:
            return False
        if mark["type"] == "link" and not isinstance((mark.get("attrs") or {}).get("href"), str):
            return False
    return True


def _member(body: dict[str, Any], name: str, key: str) -> Any:
    """`body[name][key]`, or None when either is missing or not an object."""
    value = body.get(name)
    return value.get(key) if isinstance(value, dict) else None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Refused(400, ["The request body must be a JSON object."])
    return body


def _error(status: int, messages: list[str], errors: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, {"errorMessages": messages, "errors": errors or {}})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
