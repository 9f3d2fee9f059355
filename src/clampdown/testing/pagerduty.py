"""A fake PagerDuty Events API v2: `POST /v2/enqueue`, with incidents kept by dedup key.

- 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`; a trigger
  without a dedup key gets a generated one;
- 400 `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`
  with every problem found (routing key: 32 characters and known; `event_action`; `dedup_key`
  at most 255 characters and required to acknowledge or resolve; a trigger's
  `payload.summary` (1 to 1024 characters), `payload.source`, `payload.severity`);
- 429 `{"status": "throttle event", ...}` and 5xx through `fail_next`.

A trigger whose dedup key names an open (triggered or acknowledged) incident adds to it: no
second incident. Once resolved, the same key triggers a new one. Acknowledging or resolving
an unknown key is accepted and changes nothing, as PagerDuty does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from clampdown.testing.server import FakeServer, Fault

IncidentState = Literal["triggered", "acknowledged", "resolved"]
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY = "R0CLAMPDOWNTESTROUTINGKEY0000001"
_BODIES: dict[int, dict[str, str]] = {
    429: {
        "status": "throttle event",
        "message": "Requests for this service are arriving too quickly. Please retry later.",
    },
}


@dataclass
class PagerDutyEvent:
    """One request the fake received, with the status it answered."""

    body: Any
    status: int = 0

    @property
    def action(self) -> str | None:
        """The event's `event_action`."""
        return self.body.get("event_action") if isinstance(self.body, dict) else None

    @property
    def dedup_key(self) -> str | None:
        """The event's `dedup_key`, as sent."""
        return self.body.get("dedup_key") if isinstance(self.body, dict) else None


@dataclass
class Incident:
    """An incident: opened by a trigger, closed by a resolve with the same dedup key."""

    id: str
    dedup_key: str
    summary: str
    severity: str
    state: IncidentState = "triggered"
    triggers: int = 1
    resolution: str = ""
    """The summary of the resolve event, if it carried one."""
    details: Any = None
    """The trigger's `custom_details`."""


class FakePagerDuty(FakeServer):
    """PagerDuty services known by their integration (routing) keys."""

    def __init__(self, routing_keys: Iterable[str] = (ROUTING_KEY,)) -> None:
        super().__init__()
        self.routing_keys = set(routing_keys)
        self.events: list[PagerDutyEvent] = []
        self.incidents: list[Incident] = []

    @property
    def events_url(self) -> str:
        """The enqueue URL to configure as `events_url`."""
        return f"{self.url}/v2/enqueue"

    def open_incident(self, dedup_key: str) -> Incident | None:
        """The triggered or acknowledged incident with `dedup_key`, if any."""
        with self.lock:
            return self._open(dedup_key)

    def incidents_for(self, dedup_key: str) -> list[Incident]:
        """Every incident ever opened with `dedup_key`, oldest first."""
        with self.lock:
            return [i for i in self.incidents if i.dedup_key == dedup_key]

    def fail_next(
        self, status: int = 429, *, retry_after: int | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` events with `status`; nothing is processed."""
        self._add_fault(Fault(status, retry_after=retry_after, times=times))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        with self.lock:
            event = PagerDutyEvent(body)
            self.events.append(event)
            status, answer, headers = self._answer(body)
            event.status = status
        return web.json_response(answer, status=status, headers=headers, dumps=_dumps)

    def _answer(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        fault = self._take_fault("", "")
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            answer = _BODIES.get(fault.status, {"status": "error", "message": "Internal error"})
            return fault.status, answer, headers
        errors = _problems(body, self.routing_keys)
        if errors:
            answer = {"status": "invalid event", "message": "Event object is invalid"}
            return 400, {**answer, "errors": errors}, {}
        dedup_key = self._apply(body)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, {}

    def _apply(self, body: dict[str, Any]) -> str:
        action = body["event_action"]
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        incident = self._open(dedup_key)
        given = body.get("payload")
        payload: dict[str, Any] = given if isinstance(given, dict) else {}
        if action == "trigger":
            if incident is not None:
                incident.triggers += 1
            else:
                self.incidents.append(
                    Incident(
                        id="P" + uuid.uuid4().hex[:6].upper(),
                        dedup_key=dedup_key,
                        summary=payload["summary"],
                        severity=payload["severity"],
                        details=payload.get("custom_details"),
                    )
                )
        elif incident is not None:
            if action == "acknowledge":
                incident.state = "acknowledged"
            else:
                incident.state = "resolved"
                incident.resolution = str(payload.get("summary", ""))
        return dedup_key

    def _open(self, dedup_key: str) -> Incident | None:
        return next(
            (i for i in self.incidents if i.dedup_key == dedup_key and i.state != "resolved"),
            None,
        )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _problems(body: Any, routing_keys: set[str]) -> list[str]:
    """Every reason PagerDuty would refuse the event (empty: it is valid)."""
    if not isinstance(body, dict):
        return ["Event object is not valid JSON"]
    errors: list[str] = []
    routing_key = body.get("routing_key")
    if _blank(routing_key):
        errors.append("'routing_key' is missing or blank")
    elif len(str(routing_key)) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif routing_key not in routing_keys:
        errors.append("Invalid routing key")
    action = body.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append(
            "'event_action' is invalid (must be one of the following: "
            "'trigger', 'acknowledge' or 'resolve')"
        )
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup_key, str) and len(dedup_key) > 255:
        errors.append("'dedup_key' is too long (max 255 characters)")
    elif action in ("acknowledge", "resolve") and _blank(dedup_key):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors += _payload_problems(body.get("payload"))
    return errors


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    errors: list[str] = []
    summary = payload.get("summary")
    if _blank(summary):
        errors.append("'payload.summary' is missing or blank")
    elif len(str(summary)) > 1024:
        errors.append("'payload.summary' is too long (max 1024 characters)")
    if _blank(payload.get("source")):
        errors.append("'payload.source' is missing or blank")
    severity = payload.get("severity")
    if _blank(severity):
        errors.append("'payload.severity' is missing or blank")
    elif severity not in SEVERITIES:
        errors.append(
            "'payload.severity' is invalid (must be one of the following: "
            "'critical', 'warning', 'error' or 'info')"
        )
    return errors
