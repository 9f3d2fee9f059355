"""Contract rigs: one per target type, to run every registered action against its fake.

A rig knows how to start its target's fake (or real server), the target settings that point
at it (secrets through environment variables), valid parameters for each action, how to make
the fake throttle, fail or refuse, and how to read the state actions change. `Bench` builds
ActionContexts as the engine does (`Executor.action_context`, `Drivers`) over a real store.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import aiohttp
import pytest
import structlog
from pydantic import TypeAdapter

from clampdown.actions import registry
from clampdown.actions.contract import (
    Action,
    ActionContext,
    ActionResult,
    Briefing,
    Closing,
    Params,
)
from clampdown.engine.decisions import DecisionCache, Request
from clampdown.engine.ports import StoreContainments, StoreMemos, StoreTasks
from clampdown.errors import ActionError, ConfigError
from clampdown.playbooks.expressions import compile_value, render_value
from clampdown.sources import normalize
from clampdown.store import containments, tasks
from clampdown.store.db import Database
from clampdown.targets.pool import Drivers
from clampdown.targets.settings import TargetConfig
from clampdown.testing.arm import FakeArm
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from clampdown.testing.jira import FakeJira
from clampdown.testing.kong import FakeKong
from clampdown.testing.oauth import FakeRevocationServer
from clampdown.testing.pagerduty import FakePagerDuty
from clampdown.testing.servicenow import FakeServiceNow
from clampdown.testing.slack import FakeSlack
from clampdown.testing.teams import FakeTeams
from clampdown.testing.webhook import Reply, WebhookReceiver
from tests.conftest import sample
from tests.targets import nginx_server
from tests.targets.smtp_server import SmtpServer

log = structlog.get_logger("clampdown.contract")

TARGET = TypeAdapter(TargetConfig)
HOSTILE = "securityalert-row-useragent.json"
"""The sample finding by default: its user agent is hostile text for every format."""
BLOCKED_IP = "203.0.113.7"
ENGINE = "engine"
FAULTS = ("throttle", "server_error", "refuse")
LIFTS = {"gateway.unblock": "gateway.block", "gateway.enable_endpoint": "gateway.disable_endpoint"}
"""Actions that lift a containment, and the action that makes one for them to lift."""


class Case(NamedTuple):
    """One registered (action, target type) pair."""

    action: str
    target_type: str

    def __str__(self) -> str:
        return f"{self.action}@{self.target_type}"


def cases(keep: Callable[[type[Action], str], bool] = lambda action, kind: True) -> list[Case]:
    """Every (action, target type) pair of the registry for which `keep` holds."""
    return [
        Case(name, kind)
        for name, action in registry.CATALOG.items()
        for kind in action.target_types
        if keep(action, kind)
    ]


def mark(label: str) -> str:
    """A recognisable random value: a secret, or a vendor message to look for."""
    return f"cd{label}{secrets.token_hex(10)}"


def finding_view(name: str = HOSTILE) -> dict[str, Any]:
    """A shared sample finding, normalized, as expressions see it."""
    payload = sample(name)
    shape = "securityalert" if name.startswith("securityalert") else None
    [finding] = normalize(payload, shape) if shape else normalize(payload)
    return finding.expression_view()


def stable(value: Any) -> Any:
    """`value` without the timestamps a fake stamps on every write."""
    if isinstance(value, dict):
        return {
            k: stable(v)
            for k, v in value.items()
            if not (
                k.endswith(("_at", "_on", "DateTime", "Date"))
                or k in ("sys_updated_by", "updated", "created")
            )
        }
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def credentials_sent(headers: Iterable[Mapping[str, str]]) -> list[str]:
    """The credentials carried by recorded requests (Authorization and admin tokens)."""
    found: list[str] = []
    for sent in headers:
        for name, value in sent.items():
            if name.lower() in ("authorization", "kong-admin-token") and value:
                found.append(value.split(" ", 1)[-1])
    return found


# --- the rigs ---------------------------------------------------------------------------------


class Rig:
    """How the contract suite drives one target type."""

    type: ClassVar[str]
    faults: ClassVar[frozenset[str]] = frozenset(FAULTS)
    """The faults its fake can produce (see `throttle`, `server_error`, `refuse`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env: dict[str, str] = {}
        """Environment variables the settings name, with their (secret) values."""
        self.extra_secrets: list[str] = []

    @property
    def name(self) -> str:
        """The target's name in the config."""
        return f"contract-{self.type}"

    def secret(self, var: str, value: str) -> dict[str, str]:
        """`value`, a secret, put in environment variable `var`; the settings' reference."""
        self.env[var] = value
        return {"env": var}

    def finding(self) -> dict[str, Any]:
        """The finding the remediation is about."""
        return finding_view()

    def valid_params(self) -> dict[str, dict[str, Any]]:
        """Parameters (without `target`) that work against this rig, per action."""
        raise NotImplementedError

    def params(self, action: str) -> dict[str, Any]:
        """Valid parameters for `action`, with the target."""
        table = self.valid_params()
        if action not in table:
            pytest.fail(f"contract rig for {self.type} has no valid params for {action}")
        return {"target": self.name, **table[action]}

    def start(self, stack: ExitStack) -> None:
        """Start the fake; stopped when `stack` closes."""

    def settings(self) -> dict[str, Any]:
        """The target's settings, pointing at the running fake."""
        raise NotImplementedError

    async def setup(self, bench: Bench) -> None:
        """Anything to do once the bench exists (nothing by default)."""

    def prepare(self, action: str) -> None:
        """Put the fake in the state `action` acts on (nothing by default)."""

    def snapshot(self, bench: Bench) -> object:
        """The state actions change, comparable with ==."""
        raise NotImplementedError

    def throttle(self, seconds: int) -> float | None:
        """Make the next call throttled, asking for `seconds`; the retry_after expected."""
        raise NotImplementedError

    def server_error(self) -> None:
        """Make the next call fail on the server's side (a 5xx)."""
        raise NotImplementedError

    def refuse(self) -> str:
        """Make the next call refused (400/404-style); the vendor's message expected."""
        raise NotImplementedError

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        """The headers of every request the fake received (none recorded by default)."""
        return ()

    def secrets(self) -> list[str]:
        """Every secret value to look for: configured ones and credentials seen on the wire."""
        found = [*self.env.values(), *self.extra_secrets, *credentials_sent(self.sent_headers())]
        return list(dict.fromkeys(found))


class BuiltinRig(Rig):
    """The built-in containment list and guided tasks: the store is the target."""

    type = "builtin"
    faults = frozenset()  # nothing remote: the store is the target

    @property
    def name(self) -> str:
        return "builtin"  # the decision API enforces the target of this name only

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "gateway.block": {"ip": BLOCKED_IP, "scope": "*", "reason": "contract"},
            "gateway.unblock": {"ip": BLOCKED_IP, "scope": "*"},
            "gateway.throttle": {"ip": BLOCKED_IP, "rate": 10, "period": 60},
            "gateway.disable_endpoint": {"endpoint": "GET /legacy/invoices"},
            "gateway.enable_endpoint": {"endpoint": "GET /legacy/invoices"},
            "task.create": {
                "title": "Require authentication on GET /legacy/invoices",
                "steps": ["Add validate-jwt to the inbound policy"],
                "owner": "api-platform@example.com",
                "due": "3d",
            },
        }

    def settings(self) -> dict[str, Any]:
        return {"type": "builtin"}

    def snapshot(self, bench: Bench) -> object:
        with bench.db.read() as conn:
            rows = containments.active(conn, target=self.name)
            opened = tasks.list_by_status(conn, None, limit=100)
        held = sorted(
            (r["kind"], r["subject_type"], r["subject"], r["scope"], r["rate"], r["period_seconds"])
            for r in rows
        )
        decisions = [
            bench.cache.check(Request(ip=BLOCKED_IP)).decision.value,
            bench.cache.check(Request(method="GET", path="/legacy/invoices")).decision.value,
        ]
        return {
            "containments": held,
            "decisions": decisions,
            "tasks": sorted((t["title"], t["status"]) for t in opened),
        }


class WebhookRig(Rig):
    """A generic webhook: JSON POSTed to a URL that is a secret."""

    type = "webhook"

    def start(self, stack: ExitStack) -> None:
        self.fake = stack.enter_context(WebhookReceiver().running())
        self.url = f"{self.fake.url}/{mark('hookpath')}"
        self.extra_secrets.append(self.url)

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"notify.send": {"title": "Contained", "text": "Blocked 192.0.2.45."}}

    def settings(self) -> dict[str, Any]:
        return {"type": self.type, "url": self.secret("CD_CONTRACT_HOOK_URL", self.url)}

    def snapshot(self, bench: Bench) -> object:
        with self.fake.lock:
            return [d.body for d in self.fake.deliveries]

    def throttle(self, seconds: int) -> float | None:
        self.fake.script.append(Reply(429, {"Retry-After": str(seconds)}, "slow down"))
        return float(seconds)

    def server_error(self) -> None:
        self.fake.script.append(Reply(503, body="unavailable"))

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.script.append(Reply(400, body=f"bad request: {message}"))
        return message


class FlowRig(WebhookRig):
    """A Power Automate / Logic Apps HTTP trigger: its URL carries a signature."""

    type = "flow"

    def start(self, stack: ExitStack) -> None:
        self.fake = stack.enter_context(WebhookReceiver(Reply(202, body="")).running())
        self.url = f"{self.fake.url}?api-version=2016-06-01&sp=run&sig={mark('flowsig')}"
        self.extra_secrets.append(self.url)

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"flow.trigger": {"body": {"alert": "2517170843044444444_d4"}}}


class TeamsRig(Rig):
    """Microsoft Teams through a Workflows webhook trigger (signed URL)."""

    type = "teams"

    def start(self, stack: ExitStack) -> None:
        fake = FakeTeams(per_second=None)
        fake.signature = mark("teamssig")
        self.fake = stack.enter_context(fake.running())
        self.extra_secrets += [self.fake.workflow_url, fake.signature]

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"notify.send": {"title": "Contained", "text": "Blocked 192.0.2.45."}}

    def settings(self) -> dict[str, Any]:
        url = self.secret("CD_CONTRACT_TEAMS_URL", self.fake.workflow_url)
        return {"type": self.type, "url": url, "rate_limit": None}

    def snapshot(self, bench: Bench) -> object:
        with self.fake.lock:
            return list(self.fake.cards)

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(429, _flow_error("WorkflowRequestsThrottled"), retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(502, _flow_error("BadGateway"))

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next(400, _flow_error("TriggerInputSchemaMismatch", message))
        return message


def _flow_error(code: str, message: str = "") -> str:
    return json.dumps({"error": {"code": code, "message": message or code}})


class SlackRig(Rig):
    """A Slack incoming webhook: the last segment of its URL is the secret."""

    type = "slack"

    def start(self, stack: ExitStack) -> None:
        fake = FakeSlack()
        fake.token = mark("slacktoken")
        self.fake = stack.enter_context(fake.running())
        self.extra_secrets += [self.fake.webhook_url, fake.token]

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"notify.send": {"title": "Contained", "text": "Blocked 192.0.2.45."}}

    def settings(self) -> dict[str, Any]:
        url = self.secret("CD_CONTRACT_SLACK_URL", self.fake.webhook_url)
        return {"type": self.type, "url": url, "rate_limit": None}

    def snapshot(self, bench: Bench) -> object:
        with self.fake.lock:
            return list(self.fake.messages)

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(500)

    def refuse(self) -> str:
        self.fake.fail_next(404, "channel_not_found")
        return "channel_not_found"


class PagerDutyRig(Rig):
    """A PagerDuty service through Events API v2; the routing key is the secret."""

    type = "pagerduty"

    def start(self, stack: ExitStack) -> None:
        self.routing_key = "R0" + secrets.token_hex(15)  # PagerDuty's keys have 32 characters
        self.fake = stack.enter_context(FakePagerDuty(routing_keys=(self.routing_key,)).running())

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"notify.send": {"title": "Contained", "text": "Blocked 192.0.2.45."}}

    def settings(self) -> dict[str, Any]:
        key = self.secret("CD_CONTRACT_PD_KEY", self.routing_key)
        return {"type": self.type, "routing_key": key, "events_url": self.fake.events_url}

    def snapshot(self, bench: Bench) -> object:
        # `triggers` counts repeats PagerDuty de-duplicated into the open incident: not a page.
        with self.fake.lock:
            return [(i.dedup_key, i.state, i.summary, i.severity) for i in self.fake.incidents]

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(500)

    def refuse(self) -> str:
        with self.fake.lock:
            self.fake.routing_keys.clear()  # the integration was deleted
        return "Invalid routing key"


class SmtpRig(Rig):
    """A real SMTP submission server (aiosmtpd) with STARTTLS and AUTH."""

    type = "smtp"

    def start(self, stack: ExitStack) -> None:
        self.password = mark("smtppass")
        # AUTH PLAIN and LOGIN send the password base64-encoded: neither form may show.
        self.extra_secrets += [
            base64.b64encode(f"\0clampdown\0{self.password}".encode()).decode(),
            base64.b64encode(self.password.encode()).decode(),
        ]
        server = SmtpServer(self.tmp_path, password=self.password)
        self.fake = stack.enter_context(server.running())

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"notify.send": {"title": "Contained", "text": "Blocked 192.0.2.45."}}

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "host": self.fake.host,
            "port": self.fake.port,
            "username": "clampdown",
            "password": self.secret("CD_CONTRACT_SMTP_PASSWORD", self.password),
            "sender": "Clampdown <clampdown@example.com>",
            "to": ["soc@example.com"],
            "ca_file": str(self.fake.ca_file),
            "timeout": 5,
        }

    def snapshot(self, bench: Bench) -> object:
        return [(m.rcpt_tos, str(m.parsed()["Subject"])) for m in self.fake.messages()]

    def throttle(self, seconds: int) -> float | None:
        # SMTP has no Retry-After: a 4xx reply is the server's "later".
        self.fake.fail_next("MAIL", "421 4.7.0 Too many messages, slow down")
        return None

    def server_error(self) -> None:
        self.fake.fail_next("MAIL", "451 4.3.0 Local error in processing")

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next("MAIL", f"550 5.7.1 Sender refused: {message}")
        return message


class _TicketRig(Rig):
    """What the ticket systems share: a seeded open ticket to note on and resolve."""

    ticket: ClassVar[str]

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "ticket.create": {
                "title": "Suspicious access from 192.0.2.45",
                "text": "Clampdown is containing the client.",
                "urgency": 2,
            },
            "ticket.update": {"ticket": self.ticket, "text": "Blocked 192.0.2.45 for 1 hour."},
            "ticket.resolve": {"ticket": self.ticket, "text": "Contained: 192.0.2.45 is blocked."},
        }


class ServiceNowRig(_TicketRig):
    """A ServiceNow instance (Table API, incidents), Basic authentication."""

    type = "servicenow"
    ticket = "INC0010001"  # the first incident the fake numbers: the one seeded

    def start(self, stack: ExitStack) -> None:
        self.password = mark("snowpass")
        self.fake = stack.enter_context(FakeServiceNow("clampdown", self.password).running())
        self.fake.seed(short_description="Seen earlier", correlation_id="other-alert")

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "instance_url": self.fake.url,
            "username": "clampdown",
            "password": self.secret("CD_CONTRACT_SNOW_PASSWORD", self.password),
        }

    def snapshot(self, bench: Bench) -> object:
        return [(stable(i), self.fake.work_notes(i["sys_id"])) for i in self.fake.incidents()]

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(status=429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(status=503)

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next(status=400, message=message)
        return message

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        return [r.headers for r in self.fake.requests]


class JiraRig(_TicketRig):
    """A Jira Cloud site (REST API v3), an account's email and API token."""

    type = "jira"
    ticket = "SEC-1"

    def start(self, stack: ExitStack) -> None:
        self.token = mark("jiratoken")
        self.fake = stack.enter_context(FakeJira("clampdown@example.com", self.token).running())
        self.fake.seed("SEC", "Seen earlier", ["other"])

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "site_url": self.fake.url,
            "email": "clampdown@example.com",
            "api_token": self.secret("CD_CONTRACT_JIRA_TOKEN", self.token),
            "project_key": "SEC",
        }

    def snapshot(self, bench: Bench) -> object:
        return [
            (
                i["key"],
                i["fields"]["status"]["name"],
                i["fields"]["summary"],
                i["fields"]["labels"],
                self.fake.comments(i["key"]),
            )
            for i in self.fake.issues()
        ]

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(status=429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(status=503)

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next(status=404, message=message)
        return message

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        return [r.headers for r in self.fake.requests]


class KongRig(Rig):
    """Kong Gateway's Admin API with an admin token; service `orders`, consumer `mallory`."""

    type = "kong"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.key = mark("kongkey")
        self.extra_secrets.append(self.key)

    def start(self, stack: ExitStack) -> None:
        self.token = mark("kongtoken")
        self.fake = stack.enter_context(FakeKong(admin_token=self.token).running())
        self.fake.add_service("orders", host="orders.internal")
        self.fake.add_route("orders-read", service="orders", paths=["/orders"])
        self.fake.add_consumer("mallory")
        self.fake.add_key("mallory", key=self.key)

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "gateway.block": {"ip": BLOCKED_IP, "scope": "service:orders"},
            "gateway.unblock": {"ip": BLOCKED_IP, "scope": "service:orders"},
            "gateway.throttle": {
                "client_id": "mallory",
                "rate": 10,
                "period": 60,
                "scope": "service:orders",
            },
            "gateway.disable_endpoint": {"endpoint": "service:orders"},
            "gateway.enable_endpoint": {"endpoint": "service:orders"},
            "credential.revoke": {"consumer": "mallory", "key": self.key},
        }

    def settings(self) -> dict[str, Any]:
        token = self.secret("CD_CONTRACT_KONG_TOKEN", self.token)
        return {"type": self.type, "admin_url": self.fake.url, "admin_token": token}

    def snapshot(self, bench: Bench) -> object:
        def entity(e: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in e.items() if k not in ("id", "created_at", "updated_at")}

        return {
            "plugins": sorted((entity(p) for p in self.fake.plugins()), key=repr),
            "services": [entity(s) for s in self.fake.services()],
            "keys": sorted(c["key"] for c in self.fake.credentials()),
        }

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(status=429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(status=503)

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next(status=400, message=f"schema violation ({message})")
        return message

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        return [r.headers for r in self.fake.requests]


class NginxRig(Rig):
    """A real nginx including the files Clampdown renders; test and reload can be made to fail."""

    type = "nginx"
    faults = frozenset({"server_error", "refuse"})  # local commands: nothing answers 429
    # Fails (once) with the fault file's text when it exists, else runs the real command.
    _FAULTY = 'f=$1; shift; if [ -e "$f" ]; then cat "$f" >&2; rm -f "$f"; exit 1; fi; exec "$@"'

    def start(self, stack: ExitStack) -> None:
        if nginx_server.NGINX is None:
            pytest.skip("nginx is not installed (apt-get install nginx-light)")
        prefix = self.tmp_path / "nginx"
        self.directory = self.tmp_path / "clampdown"
        for path in (prefix / "logs", prefix / "temp", self.directory):
            path.mkdir(parents=True)
        for name in ("clampdown-http.conf", "clampdown-server.conf"):
            (self.directory / name).touch()
        port = nginx_server.free_port()
        conf = nginx_server.write_conf(prefix, self.directory, port, nginx_server.free_port())
        self.server = nginx_server.NginxServer(
            nginx_server.NGINX, prefix, conf, self.directory, port
        )
        self.server.start()
        stack.callback(self.server.stop)
        self.test_fault = prefix / "fail-test"
        self.reload_fault = prefix / "fail-reload"

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "gateway.block": {"ip": "127.0.0.5", "scope": "*"},
            "gateway.unblock": {"ip": "127.0.0.5", "scope": "*"},
            "gateway.throttle": {"ip": "127.0.0.5", "rate": 10, "period": 60},
            "gateway.disable_endpoint": {"endpoint": "GET /legacy/invoices"},
            "gateway.enable_endpoint": {"endpoint": "GET /legacy/invoices"},
        }

    def settings(self) -> dict[str, Any]:
        def faulty(fault: Path, command: list[str]) -> list[str]:
            return ["sh", "-c", self._FAULTY, "faulty", str(fault), *command]

        return {
            "type": self.type,
            "directory": str(self.directory),
            "test_command": faulty(self.test_fault, self.server.test_command),
            "reload_command": faulty(self.reload_fault, self.server.reload_command),
            "timeout": 10,
        }

    async def setup(self, bench: Bench) -> None:
        # Clampdown has rendered its (empty) files once, as after its first change.
        driver = bench.drivers.get(self.name)
        assert driver is not None
        port = bench.containment_port(self.name)
        await driver.reconcile(None, port.wanted)

    def snapshot(self, bench: Bench) -> object:
        files = sorted(self.directory.iterdir())
        return {path.name: path.read_text() for path in files if path.is_file()}

    def server_error(self) -> None:
        self.reload_fault.write_text("nginx: [alert] kill(4242, 1) failed (3: No such process)")

    def refuse(self) -> str:
        message = mark("refused")
        self.test_fault.write_text(f'nginx: [emerg] unknown directive "{message}"')
        return message


class _ArmRig(Rig):
    """What the ARM-based rigs share: a token endpoint and ARM's faults."""

    fake: FakeArm | FakeGraph

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(503)

    def refuse(self) -> str:
        message = mark("refused")
        self.fake.fail_next(400, code="BadRequest", message=message)
        return message

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        return [r.headers for r in self.fake.requests]


OWNER_POLICY = """<policies>
    <inbound>
        <base />
        <set-header name="X-Tier" exists-action="override"><value>gold</value></set-header>
    </inbound>
    <backend><base /></backend>
    <outbound><base /></outbound>
    <on-error><base /></on-error>
</policies>"""


class ApimRig(_ArmRig):
    """Azure API Management over ARM: API `orders` (with its owner's policy), a subscription."""

    type = "azure-apim"
    fake: FakeArm

    def start(self, stack: ExitStack) -> None:
        self.client_secret = mark("apimsecret")
        fake = FakeArm(tenant="t", client_id="c", client_secret=self.client_secret)
        fake.add_api("orders")
        fake.add_operation("orders", "get-order", "GET", "/orders/{id}")
        fake.set_policy("orders", OWNER_POLICY)
        self.seeded_keys = {"primaryKey": mark("primarykey"), "secondaryKey": mark("secondarykey")}
        fake.add_subscription(
            "sub-mallory",
            primary_key=self.seeded_keys["primaryKey"],
            secondary_key=self.seeded_keys["secondaryKey"],
        )
        self.fake = stack.enter_context(fake.running())

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "gateway.block": {"ip": BLOCKED_IP, "scope": "orders"},
            "gateway.unblock": {"ip": BLOCKED_IP, "scope": "orders"},
            "gateway.throttle": {"ip": BLOCKED_IP, "rate": 10, "period": 60, "scope": "orders"},
            "gateway.disable_endpoint": {"endpoint": "orders/get-order"},
            "gateway.enable_endpoint": {"endpoint": "orders/get-order"},
            "credential.suspend": {"subscription": "sub-mallory", "reason": "leaked key"},
            "credential.reactivate": {"subscription": "sub-mallory"},
            "credential.rotate": {"subscription": "sub-mallory", "key": "primary"},
        }

    def settings(self) -> dict[str, Any]:
        fake = self.fake
        return {
            "type": self.type,
            "tenant_id": fake.tenant,
            "client_id": fake.client_id,
            "client_secret": self.secret("CD_CONTRACT_APIM_SECRET", self.client_secret),
            "subscription_id": fake.subscription_id,
            "resource_group": fake.resource_group,
            "service_name": fake.service,
            "management_url": fake.url,
            "login_url": fake.url,
            "rate_limit": None,
            "timeout": 5,
        }

    def prepare(self, action: str) -> None:
        if action == "credential.reactivate":
            self.fake.update_subscription("sub-mallory", state="suspended")

    def snapshot(self, bench: Bench) -> object:
        # A state comment says who changed the state and why: history, not the state itself.
        subscription = self.fake.subscription("sub-mallory")
        return {
            "policies": [self.fake.policy(s) for s in (None, "orders", ("orders", "get-order"))],
            "state": subscription["state"],
            # Regenerated keys are random: what a rotation changes is that the old key is gone.
            "rotated": {k: subscription[k] != old for k, old in self.seeded_keys.items()},
        }

    def secrets(self) -> list[str]:
        subscription = self.fake.subscription("sub-mallory")
        keys = [
            *self.seeded_keys.values(),
            subscription["primaryKey"],
            subscription["secondaryKey"],
        ]
        return [*super().secrets(), *keys]


class OAuthRig(Rig):
    """An OAuth 2.0 revocation endpoint (RFC 7009), client_secret_basic."""

    type = "oauth-revocation"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.token = mark("accesstoken")
        self.extra_secrets.append(self.token)

    def start(self, stack: ExitStack) -> None:
        self.client_secret = mark("oauthsecret")
        fake = FakeRevocationServer("clampdown", self.client_secret, "basic")
        self.fake = stack.enter_context(fake.running())
        self.fake.issue(self.token, "access_token")
        self.fake.issue(mark("othertoken"), "access_token")

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"credential.revoke": {"token": self.token, "token_type_hint": "access_token"}}

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "revocation_url": self.fake.revocation_url,
            "client_id": "clampdown",
            "client_secret": self.secret("CD_CONTRACT_OAUTH_SECRET", self.client_secret),
        }

    def snapshot(self, bench: Bench) -> object:
        with self.fake.lock:
            return sorted((t.value, t.revoked) for t in self.fake.tokens.values())

    def throttle(self, seconds: int) -> float | None:
        self.fake.fail_next(429, retry_after=seconds)
        return float(seconds)

    def server_error(self) -> None:
        self.fake.fail_next(503)

    def refuse(self) -> str:
        self.fake.fail_next(400, error="unsupported_token_type")
        return "unsupported_token_type"

    def sent_headers(self) -> Iterable[Mapping[str, str]]:
        return [r.headers for r in self.fake.requests]


ALICE = "alice@contoso.com"
ALICE_ID = "11111111-1111-4111-8111-111111111111"
GRAPH_ALERT = "graph-alert-param-enum.json"


def graph_alert() -> dict[str, Any]:
    """The shared Graph alert, with Alice's account as evidence (the sample has no user)."""
    alert: dict[str, Any] = copy.deepcopy(sample(GRAPH_ALERT))
    alert["evidence"].append(
        {
            "@odata.type": "#microsoft.graph.security.userEvidence",
            "createdDateTime": "2026-11-24T09:12:44Z",
            "verdict": "suspicious",
            "remediationStatus": "none",
            "roles": ["compromised"],
            "tags": [],
            "userAccount": {
                "accountName": "alice",
                "userPrincipalName": ALICE,
                "azureAdUserId": ALICE_ID,
            },
        }
    )
    return alert


class GraphRig(_ArmRig):
    """Microsoft Graph: Alice, a service principal, and the Graph alert about Alice."""

    type = "graph"
    fake: FakeGraph

    def start(self, stack: ExitStack) -> None:
        self.client_secret = mark("graphsecret")
        fake = FakeGraph(tenant="t", client_id="c", client_secret=self.client_secret)
        fake.add_user(ALICE, id=ALICE_ID)
        fake.add_user("bob@contoso.com", id="22222222-2222-4222-8222-222222222222")
        fake.add_alert(graph_alert())
        self.fake = stack.enter_context(fake.running())

    def finding(self) -> dict[str, Any]:
        [finding] = normalize(graph_alert(), "graph")
        return finding.expression_view()

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {
            "identity.revoke_sessions": {"user": ALICE},
            "identity.disable": {"user": ALICE},
            "identity.confirm_compromised": {"users": [ALICE]},
            "finding.update": {"state": "resolved", "comment": "Blocked 198.51.100.150"},
        }

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": self.secret("CD_CONTRACT_GRAPH_SECRET", self.client_secret),
            "login_url": self.fake.url,
            "graph_url": self.fake.url,
            "timeout": 5,
        }

    def snapshot(self, bench: Bench) -> object:
        # A revocation moves the sessions' cut-off time to now: revoked or not is the effect.
        fake = self.fake
        users = [fake.user(u) for u in (ALICE, "bob@contoso.com")]
        alert = fake.alert(graph_alert()["id"])
        return {
            "users": [(u["id"], u["accountEnabled"], u["id"] in fake.revocations) for u in users],
            "risky": [stable(fake.risky_user(u["id"])) for u in users],
            "alert": (
                alert["status"],
                alert.get("classification"),
                [c.get("comment") for c in alert["comments"]],
            ),
        }


DEFENDER_SUBSCRIPTION = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
DEFENDER_ALERT = "defender-rest-suspicious-ip.json"


class DefenderRig(_ArmRig):
    """Defender for Cloud over ARM, holding the alert of the REST sample."""

    type = "defender"
    fake: FakeDefender

    def start(self, stack: ExitStack) -> None:
        self.client_secret = mark("defendersecret")
        fake = FakeDefender(
            tenant="t",
            client_id="c",
            client_secret=self.client_secret,
            subscription_id=DEFENDER_SUBSCRIPTION,
        )
        self.alert_id = fake.add_alert(sample(DEFENDER_ALERT))
        self.fake = stack.enter_context(fake.running())

    def finding(self) -> dict[str, Any]:
        return finding_view(DEFENDER_ALERT)

    def valid_params(self) -> dict[str, dict[str, Any]]:
        return {"finding.update": {"state": "resolved"}}

    def settings(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": self.secret("CD_CONTRACT_DEFENDER_SECRET", self.client_secret),
            "login_url": self.fake.url,
            "management_url": self.fake.url,
            "rate_limit": None,
            "timeout": 5,
        }

    def snapshot(self, bench: Bench) -> object:
        return self.fake.status_of(self.alert_id)


RIGS: dict[str, type[Rig]] = {
    rig.type: rig
    for rig in (
        BuiltinRig,
        WebhookRig,
        FlowRig,
        TeamsRig,
        SlackRig,
        PagerDutyRig,
        SmtpRig,
        ServiceNowRig,
        JiraRig,
        KongRig,
        NginxRig,
        ApimRig,
        OAuthRig,
        GraphRig,
        DefenderRig,
    )
}


def rig_for(target_type: str, tmp_path: Path) -> Rig:
    """The rig of a target type; fails the test when there is none."""
    rig = RIGS.get(target_type)
    if rig is None:
        pytest.fail(f"no contract rig for {target_type}", pytrace=False)
    return rig(tmp_path)


# --- the bench: contexts as the engine builds them ---------------------------------------------


class Bench:
    """One remediation against one rig's target: contexts, calls, and everything they said."""

    def __init__(
        self,
        rig: Rig,
        settings: TargetConfig,
        db: Database,
        cache: DecisionCache,
        session: aiohttp.ClientSession,
    ) -> None:
        self.rig = rig
        self.db = db
        self.cache = cache
        self.targets: dict[str, TargetConfig] = {rig.name: settings}
        self.drivers = Drivers(self.targets, session)
        self.remediation_id = uuid.uuid4().hex
        self.finding = rig.finding()
        self.results: list[ActionResult] = []
        self.errors: list[BaseException] = []
        self._steps = 0

    def params(self, action: str) -> Params:
        """The rig's valid parameters for `action`, validated as the engine does."""
        return registry.CATALOG[action].params.model_validate(self.rig.params(action))

    def step(self, action: str) -> dict[str, Any]:
        """A new step row, as the planner writes it."""
        position = self._steps
        self._steps += 1
        return {
            "key": f"step-{position}",
            "action": action,
            "idempotency_key": f"{self.remediation_id}-{position}",
            "expires_at": None,
        }

    def briefing(self) -> Briefing:
        """What the remediation tells people (the engine's `brief`)."""
        return Briefing(
            remediation_id=self.remediation_id,
            playbook="contract",
            state="running",
            finding=self.finding,
            done=tuple(f"step-{i}: {r.summary}" for i, r in enumerate(self.results)),
        )

    def containment_port(self, target: str) -> StoreContainments:
        """The store's containments of `target`, as the engine hands them to actions."""
        return StoreContainments(
            self.db, self.cache, actor=ENGINE, remediation_id=self.remediation_id, target=target
        )

    def context(
        self, step: dict[str, Any], params: Params, briefing: Briefing | None
    ) -> ActionContext:
        """What `Executor.action_context` builds for one call of `step`."""
        target = self.targets.get(params.target)
        if target is None:
            raise ConfigError(f"no target named {params.target!r} is configured")
        action = registry.CATALOG[step["action"]]
        if target.type not in action.target_types:
            raise ConfigError(
                f"{action.name} cannot act on target {params.target!r} of type {target.type}"
            )
        rid = self.remediation_id
        return ActionContext(
            remediation_id=rid,
            step_id=step["key"],
            idempotency_key=step["idempotency_key"],
            target_name=params.target,
            target=target,
            expires_at=step["expires_at"],
            containments=self.containment_port(params.target),
            tasks=StoreTasks(self.db, remediation_id=rid, step_key=step["key"]),
            http=self.drivers.http(params.target),
            driver=self.drivers.get(params.target),
            briefing=briefing,
            memo=StoreMemos(self.db, key=step["idempotency_key"]),
        )

    async def run(
        self, action: str, step: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Params, ActionResult]:
        """Run `action` once (on `step`: a retry of that step); its step, params and result."""
        step = step or self.step(action)
        params = self.params(action)
        ctx = self.context(step, params, self.briefing())
        result = await self._call(action, "run", registry.get(action).run(params, ctx))
        assert isinstance(result, ActionResult)
        return step, params, stored(result)

    async def undo(self, step: dict[str, Any], params: Params, result: ActionResult) -> None:
        """Undo a step as the engine does: params and result read back, no briefing."""
        action = registry.get(step["action"])
        params = action.params.model_validate(params.model_dump(mode="json"))
        ctx = self.context(step, params, None)
        await self._call(step["action"], "undo", action.undo(params, result, ctx))

    async def verify(self, step: dict[str, Any], params: Params, result: ActionResult) -> bool:
        """Verify a step's effect."""
        ctx = self.context(step, params, self.briefing())
        action = registry.get(step["action"])
        verdict = await self._call(step["action"], "verify", action.verify(params, result, ctx))
        return bool(verdict)

    async def close(self, step: dict[str, Any], params: Params, result: ActionResult) -> None:
        """Close what a step opened, the remediation having succeeded."""
        briefing = self.briefing()
        closing = Closing(state="succeeded", reason="succeeded", briefing=briefing)
        ctx = self.context(step, params, briefing)
        action = registry.get(step["action"])
        await self._call(step["action"], "close", action.close(params, result, ctx, closing))

    async def failure(self, action: str) -> ActionError:
        """Run `action` expecting it to fail; the error."""
        with pytest.raises(ActionError) as caught:
            await self.run(action)
        return caught.value

    async def _call(self, action: str, verb: str, call: Any) -> Any:
        """Await one call, noting what it returned or raised and logging it as the engine does."""
        try:
            outcome = await call
        except Exception as exc:
            self.errors.append(exc)
            log.warning(f"{verb} failed", action=action, error=str(exc), exc_info=exc)
            raise
        if isinstance(outcome, ActionResult):
            self.results.append(outcome)
            log.info(f"{verb} done", action=action, result=outcome.model_dump(mode="json"))
        else:
            log.info(f"{verb} done", action=action, outcome=outcome)
        return outcome

    def said(self) -> str:
        """Everything the calls returned or raised, as text (exceptions with their chain)."""
        texts = [r.model_dump_json() for r in self.results]
        for exc in self.errors:
            texts += [repr(exc), *traceback.format_exception(exc)]
        return "\n".join(texts)


def stored(result: ActionResult) -> ActionResult:
    """A result as the engine reads it back from the store."""
    return ActionResult.model_validate(json.loads(result.model_dump_json()))


@asynccontextmanager
async def bench_for(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bench]:
    """A bench over a fresh SQLite store for a started rig; its secrets in the environment."""
    settings = TARGET.validate_python(rig.settings())
    for var, value in rig.env.items():
        monkeypatch.setenv(var, value)
    db = Database(f"sqlite:///{tmp_path / 'contract.db'}")
    db.migrate()
    try:
        async with aiohttp.ClientSession() as session:
            bench = Bench(rig, settings, db, DecisionCache(), session)
            try:
                await rig.setup(bench)
                yield bench
            finally:
                await bench.drivers.close()
    finally:
        db.dispose()


def render_example(action: type[Action], finding: dict[str, Any]) -> Any:
    """An action's example with its expressions evaluated, as a step's `with` would be."""
    # Credential examples read the finding's credentials and users, which OCSF and generic
    # findings carry but the Defender samples do not: give the sample one of each.
    finding = {
        **finding,
        "credentials": finding["credentials"] or ["sample-credential-1"],
        "users": finding["users"] or ["mallory@example.com"],
    }
    context = {
        "finding": finding,
        "steps": {
            "ticket": {"status": "succeeded", "output": {"ticket_id": "INC0010001"}},
        },
        "playbook": {"name": "contract"},
    }
    return render_value(compile_value(action.example), context)
