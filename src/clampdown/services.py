"""Use cases shared by the REST API, the CLI and the web UI: each behaviour exists once, here."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.actions.redaction import redacted
from clampdown.config import Config, TokenConfig
from clampdown.effectiveness.measure import measure
from clampdown.effectiveness.model import Effectiveness
from clampdown.effectiveness.snapshots import Snapshots
from clampdown.engine import approvals, detector, overrides, planner
from clampdown.engine.decisions import DecisionCache, Request, Verdict
from clampdown.engine.executor import Adopted
from clampdown.engine.ports import refresh_decisions
from clampdown.engine.worker import Worker
from clampdown.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from clampdown.links import LinkRequest, Links
from clampdown.model import JSON, Finding, RemediationState, StepState
from clampdown.ownership import Enricher
from clampdown.playbooks import Matcher, Playbook, load_default_pack, load_playbooks
from clampdown.playbooks.schema import ApprovalSpec
from clampdown.sources import normalize
from clampdown.store import containments, findings, jobs, remediations, tasks
from clampdown.store.db import Database

# How stale the in-memory decision list may be before a check reads the change stream.
DECISION_STALENESS = 0.5


@dataclass(frozen=True)
class IngestedFinding:
    """What happened to one finding of an ingested payload."""

    finding_id: int
    new: bool
    source: str
    source_id: str
    kind: str
    type: str
    severity: str
    ips: list[str]
    apis: list[str]
    remediations: list[planner.Planned] = field(default_factory=list)
    changed: str | None = None
    """A known finding whose status this delivery changed: "active -> resolved"."""
    followed_up: list[detector.FollowUp] = field(default_factory=list)
    """What the changed status did to the finding's remediations (engine.detector)."""

    def as_json(self) -> dict[str, JSON]:
        """A plain dict for --json output and the API."""
        return {
            "finding_id": self.finding_id,
            "new": self.new,
            "source": self.source,
            "source_id": self.source_id,
            "kind": self.kind,
            "type": self.type,
            "severity": self.severity,
            "ips": self.ips,
            "apis": self.apis,
            "remediations": [
                {
                    "id": p.remediation_id,
                    "playbook": p.playbook,
                    "state": p.state,
                    "joined": p.joined,
                }
                for p in self.remediations
            ],
            "changed": self.changed,
            "followed_up": [f.as_json() for f in self.followed_up],
        }


def parse_json(body: bytes, *, where: str = "body") -> object:
    """Bytes to JSON, or an InputError naming the position of the problem."""
    if not body.strip():
        raise InputError(f"{where}: empty, expected a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON: {exc}") from exc


def load_playbook_set(config: Config) -> list[Playbook]:
    """The configured playbooks, plus the default pack unless it is switched off."""
    loaded: list[Playbook] = []
    if config.default_pack:
        loaded.extend(load_default_pack())
    if config.playbooks is not None:
        loaded.extend(load_playbooks([Path(config.playbooks)]))
    return loaded


class Clampdown:
    """The application: configuration, database, playbooks and the decision cache."""

    def __init__(self, config: Config, db: Database, playbooks: list[Playbook]) -> None:
        self.config = config
        self.db = db
        self.playbooks = playbooks
        self.matcher = Matcher(playbooks)
        self.decisions = DecisionCache()
        self.links = Links.from_config(config.links)
        # Ownership and API facts set on each finding at ingest (refreshed by `serve`).
        self.enricher = Enricher(config.ownership, config.context)
        self._tokens: dict[str, TokenConfig] | None = None
        self._decisions_at = 0.0
        self.on_work: Callable[[], None] = lambda: None
        # Told of the findings of every accepted delivery (metrics count them by shape).
        self.on_ingested: Callable[[list[Finding]], None] = lambda found: None
        # Set by a worker running in this process: new jobs are leased to it and handed over.
        self.lease_for_new_jobs: Callable[[], tuple[str, datetime]] | None = None
        self.adopt: Callable[[list[Adopted]], None] = lambda items: None
        # How the in-process engine is doing: absent, running, failing or stopped.
        self.engine_state: Callable[[], str] = lambda: "absent"
        # Effectiveness measured in the background for the console (threads start on use).
        self.snapshots = Snapshots(lambda span: self.effectiveness(since=datetime.now(UTC) - span))

    @classmethod
    def open(cls, config: Config, *, database_url: str | None = None) -> Clampdown:
        """Connect, migrate and load the playbooks; every problem is a ClampdownError."""
        playbooks = load_playbook_set(config)
        db = Database(config.effective_database_url(database_url))
        db.migrate()
        return cls(config, db, playbooks)

    def close(self) -> None:
        """Stop background measuring; release database connections."""
        self.snapshots.close()
        self.db.dispose()

    def authenticate(self, presented: str) -> TokenConfig | None:
        """The configured token whose secret is `presented`."""
        if self._tokens is None:
            # Read on first use: commands that never authenticate need no token secrets.
            self._tokens = {token.digest(): token for token in self.config.tokens}
        return self._tokens.get(hashlib.sha256(presented.encode()).hexdigest())

    # -- ingest ------------------------------------------------------------------------

    def ingest(self, payload: object, *, shape: str | None = None) -> list[IngestedFinding]:
        """Normalize, store durably and plan; committed before this returns."""
        normalized = self.enricher.enrich(normalize(payload, shape))
        return self._ingested(self.db.run(self._ingest_writer(normalized)), normalized)

    async def ingest_async(
        self, payload: object, *, shape: str | None = None
    ) -> list[IngestedFinding]:
        """`ingest` for the event loop: group-committed with every concurrent write."""
        normalized = self.enricher.enrich(normalize(payload, shape))
        stored = await self.db.run_async(self._ingest_writer(normalized, adopt=True))
        return self._ingested(stored, normalized)

    def _ingested(
        self, results: list[IngestedFinding], normalized: list[Finding]
    ) -> list[IngestedFinding]:
        self.on_ingested(normalized)
        adopted = [
            Adopted(planned.job, finding, planned.rows)
            for item, finding in zip(results, normalized, strict=True)
            for planned in item.remediations
            if planned.job is not None
        ]
        if adopted:
            self.adopt(adopted)
        elif any(item.remediations for item in results):
            self.on_work()
        if any(item.followed_up for item in results):
            self.on_work()
        return results

    def _ingest_writer(
        self, normalized: list[Finding], *, adopt: bool = False
    ) -> Callable[[Connection], list[IngestedFinding]]:
        lease_for = self.lease_for_new_jobs if adopt else None

        def store(conn: Connection) -> list[IngestedFinding]:
            now = datetime.now(UTC)
            lease = lease_for() if lease_for is not None else None
            out = []
            for finding in normalized:
                stored = findings.store(conn, finding, now=now)
                finding_id, new = stored.id, stored.new
                planned = (
                    planner.plan(
                        conn,
                        finding,
                        finding_id,
                        self.matcher.match(finding),
                        now=now,
                        lease=lease,
                    )
                    # Already closed at the source when first seen (a Healthy assessment, a
                    # dismissed alert): kept, but there is nothing to remediate.
                    if new and detector.report_of(finding) is None
                    else []
                )
                out.append(
                    IngestedFinding(
                        finding_id=finding_id,
                        new=new,
                        source=finding.source,
                        source_id=finding.source_id,
                        kind=finding.kind.value,
                        type=finding.type,
                        severity=finding.severity.value,
                        ips=list(finding.ips),
                        apis=[a.id for a in finding.apis],
                        remediations=planned,
                        **self._followed_up(conn, finding_id, finding, stored.was, now),
                    )
                )
            return out

        return store

    def _followed_up(
        self, conn: Connection, finding_id: int, finding: Finding, was: str | None, now: datetime
    ) -> dict[str, Any]:
        """A known finding's status changed: what it did to its remediations."""
        if was is None:
            return {}
        followed = detector.follow(
            conn,
            finding_id,
            finding,
            settings=self.config.closing,
            targets=self.config.targets,
            now=now,
        )
        return {"changed": f"{was} -> {finding.status}", "followed_up": followed}

    # -- findings ----------------------------------------------------------------------

    def list_findings(
        self, *, limit: int = 50, before: int | None = None, type_: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest findings first."""
        with self.db.read() as conn:
            return findings.list_recent(conn, limit=limit, before_id=before, type_=type_)

    def get_finding(self, finding_id: int) -> dict[str, Any]:
        """One finding in full, with when it was received."""
        with self.db.read() as conn:
            got = findings.get(conn, finding_id)
        if got is None:
            raise NotFoundError(f"no finding {finding_id}")
        finding, received = got
        return {"id": finding_id, "received_at": received, **finding.model_dump(mode="json")}

    # -- remediations ------------------------------------------------------------------

    def list_remediations(
        self,
        *,
        state: str | None = None,
        playbook: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest remediations first."""
        if state is not None:
            try:
                RemediationState(state)
            except ValueError as exc:
                choices = ", ".join(s.value for s in RemediationState)
                raise InputError(f"state: {state!r} is not one of {choices}") from exc
        with self.db.read() as conn:
            return remediations.list_recent(
                conn, limit=limit, state=state, playbook=playbook, before=before
            )

    def get_remediation(self, remediation_id: str) -> dict[str, Any]:
        """A remediation with its steps, history and findings."""
        with self.db.read() as conn:
            rem = remediations.get(conn, remediation_id)
            if rem is None:
                raise NotFoundError(f"no remediation {remediation_id}")
            return {
                **rem,
                "steps": [redacted(step) for step in remediations.steps(conn, remediation_id)],
                "history": remediations.history(conn, remediation_id),
                "findings": remediations.finding_ids(conn, remediation_id),
            }

    def approve(self, remediation_id: str, *, actor: str, note: str = "") -> dict[str, Any]:
        """Approve a remediation that waits; it runs once its policy's approvals are in."""
        now = datetime.now(UTC)
        with self.db.write() as conn:
            rem = remediations.get(conn, remediation_id)
            policy = self._approval_policy(rem["playbook"]) if rem else None
            started = approvals.approve(
                conn, remediation_id, policy, actor=actor, note=note, now=now
            )
        if started:
            self.on_work()
        return self.get_remediation(remediation_id)

    def reject(self, remediation_id: str, *, actor: str, reason: str = "") -> dict[str, Any]:
        """Refuse a remediation that waits for approval; nothing runs."""
        now = datetime.now(UTC)
        with self.db.write() as conn:
            rem = remediations.get(conn, remediation_id)
            if rem is not None and not approvals.allowed(
                self._approval_policy(rem["playbook"]), actor
            ):
                raise ForbiddenError(f"{actor} is not one of the approvers of {remediation_id}")
            approvals.reject(conn, remediation_id, actor=actor, reason=reason, now=now)
        return self.get_remediation(remediation_id)

    def _approval_policy(self, playbook: str) -> ApprovalSpec | None:
        found = next((p for p in self.playbooks if p.name == playbook), None)
        return found.approval if found else None

    def read_link(self, token: str) -> tuple[LinkRequest, dict[str, Any]]:
        """What a signed link asks for, and the remediation it names."""
        if self.links is None:
            raise NotFoundError("links are not configured")
        request = self.links.read(token)
        return request, self.get_remediation(request.remediation_id)

    def follow_link(self, token: str) -> dict[str, Any]:
        """Do what a signed link asks (approve or reject); the link is recorded as the actor."""
        request, _ = self.read_link(token)
        actor = f"link:{request.verb}"
        if request.verb == "approve":
            return self.approve(request.remediation_id, actor=actor, note="from a signed link")
        return self.reject(request.remediation_id, actor=actor, reason="from a signed link")

    @staticmethod
    def _expect(conn: Any, remediation_id: str, state: RemediationState) -> None:
        rem = remediations.get(conn, remediation_id, lock=True)
        if rem is None:
            raise NotFoundError(f"no remediation {remediation_id}")
        if rem["state"] != state.value:
            raise ConflictError(
                f"remediation {remediation_id} is {rem['state']}, not {state.value}"
            )

    # -- tasks -------------------------------------------------------------------------

    def list_tasks(self, *, status: str | None = "open", limit: int = 100) -> list[dict[str, Any]]:
        """Guided tasks, newest first."""
        if status not in (None, "open", "done"):
            raise InputError(f"status: {status!r} is not open or done")
        with self.db.read() as conn:
            return tasks.list_by_status(conn, status, limit=limit)

    def complete_task(self, task_id: str, *, actor: str, note: str = "") -> dict[str, Any]:
        """Mark a guided task done; its step succeeds and the remediation goes on."""
        now = datetime.now(UTC)
        with self.db.write() as conn:
            task = tasks.get(conn, task_id)
            if task is None:
                raise NotFoundError(f"no task {task_id}")
            if not tasks.complete(conn, task_id, by=actor, note=note, now=now):
                raise ConflictError(f"task {task_id} is already {task['status']}")
            rid, key = task["remediation_id"], task["step_key"]
            if (
                rid
                and key
                and remediations.update_step(
                    conn,
                    rid,
                    key,
                    expect_state=StepState.WAITING.value,
                    state=StepState.SUCCEEDED.value,
                    finished_at=now,
                )
            ):
                remediations.record(
                    conn,
                    rid,
                    key,
                    StepState.WAITING.value,
                    StepState.SUCCEEDED.value,
                    reason="task completed" + (f": {note}" if note else ""),
                    actor=actor,
                    now=now,
                )
                planner.advance(conn, rid, now)
            done = tasks.get(conn, task_id)
        self.on_work()
        assert done is not None
        return done

    def get_task(self, task_id: str) -> dict[str, Any]:
        """One guided task."""
        with self.db.read() as conn:
            task = tasks.get(conn, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return task

    def tick_task_step(self, task_id: str, step: int, *, done: bool, actor: str) -> dict[str, Any]:
        """Tick (or untick) one checklist item of an open task; who and when are kept."""
        now = datetime.now(UTC)
        with self.db.write() as conn:
            task = tasks.get(conn, task_id)
            if task is None:
                raise NotFoundError(f"no task {task_id}")
            if task["status"] != "open":
                raise ConflictError(f"task {task_id} is already {task['status']}")
            if not 0 <= step < len(task["steps"]):
                raise InputError(f"task {task_id} has no checklist item {step + 1}")
            ticked = tasks.set_step_done(conn, task_id, step, done=done, by=actor, now=now)
        assert ticked is not None
        return ticked

    # -- containments and decisions ----------------------------------------------------

    def list_containments(
        self, *, include_removed: bool = False, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Active containments (or all, newest first)."""
        with self.db.read() as conn:
            return containments.list_all(conn, include_removed=include_removed, limit=limit)

    def undo_containment(self, containment_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Lift a containment before its expiry; its step is undone on the target it used."""
        now = datetime.now(UTC)
        with self.db.write() as conn:
            row = overrides.request_undo(conn, containment_id, actor=actor, reason=reason, now=now)
        self._refresh_decisions()
        self.on_work()
        return row

    def extend_containment(
        self,
        containment_id: str,
        *,
        actor: str,
        until: datetime | None = None,
        by: timedelta | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Move a temporary containment's expiry to `until`, or `by` later than it was."""
        if (until is None) == (by is None):
            raise InputError("give either a new expiry time or a duration to extend by")
        now = datetime.now(UTC)
        with self.db.write() as conn:
            if by is not None:
                current = containments.get(conn, containment_id)
                expires = current["expires_at"] if current else None
                try:
                    until = (expires or now) + by
                except OverflowError:
                    raise InputError(f"extending by {by} goes past the year 9999") from None
            assert until is not None
            row = overrides.extend(
                conn, containment_id, until=until, actor=actor, note=note, now=now
            )
        self._refresh_decisions()
        self.on_work()
        return row

    def _decisions_stale(self) -> bool:
        return time.monotonic() - self._decisions_at > DECISION_STALENESS

    def _refresh_decisions(self) -> None:
        # Follow the change stream (other processes' changes) into the in-memory list.
        self._decisions_at = time.monotonic()
        refresh_decisions(self.db, self.decisions)

    def decide(self, request: Request) -> Verdict:
        """Allow, deny or throttle one request, from the in-memory list."""
        if self._decisions_stale():
            self._refresh_decisions()
        return self.decisions.check(request)

    def decide_now(self, request: Request) -> Verdict | None:
        """`decide` when the in-memory list is fresh; None when it must be refreshed first."""
        if self._decisions_stale():
            return None
        return self.decisions.check(request)

    async def decide_async(self, request: Request) -> Verdict:
        """`decide` for the event loop: the change stream is read in a thread, not on it."""
        if self._decisions_stale():
            # Marked here, on the loop, not once the thread runs: the requests that come in
            # meanwhile answer from the list as it is, instead of each reading it again.
            self._decisions_at = time.monotonic()
            await asyncio.to_thread(self._refresh_decisions)
        return self.decisions.check(request)

    def stream(self, cursor: int, *, limit: int = 1000) -> dict[str, Any]:
        """Changes after `cursor`; cursor 0 starts with a snapshot of the active list."""
        with self.db.read() as conn:
            if cursor <= 0:
                head = containments.cursor(conn)
                active = containments.active(
                    conn, now=datetime.now(UTC), target=containments.BUILTIN
                )
                return {"cursor": head, "snapshot": True, "added": active, "removed": []}
            changes = containments.changes_since(conn, cursor, limit=limit)
        added = [c for c in changes if c["op"] == "add"]
        removed = [c["id"] for c in changes if c["op"] == "remove"]
        next_cursor = changes[-1]["seq"] if changes else cursor
        return {"cursor": next_cursor, "snapshot": False, "added": added, "removed": removed}

    # -- effectiveness -----------------------------------------------------------------

    def effectiveness(self, *, since: datetime, until: datetime | None = None) -> Effectiveness:
        """How well remediation worked for what was opened in [since, until)."""
        now = datetime.now(UTC)
        until = until or now
        if since >= until:
            raise InputError(
                f"the period is empty: {since.isoformat()} is not before {until.isoformat()}"
            )
        with self.db.read() as conn:
            return measure(
                conn,
                playbooks={p.name: p.mode.value for p in self.playbooks},
                since=since,
                until=until,
                now=now,
            )

    def effectiveness_snapshot(self, span: timedelta) -> Effectiveness | None:
        """The latest measurement of the last `span`, from the background (None: under way)."""
        return self.snapshots.latest(span)

    # -- catalog and health ------------------------------------------------------------

    @staticmethod
    def actions() -> list[dict[str, Any]]:
        """The action catalog with parameters and an example."""
        out = []
        for name, action in registry.CATALOG.items():
            schema = action.params.model_json_schema()
            out.append(
                {
                    "name": name,
                    "summary": action.summary,
                    "target_types": list(action.target_types),
                    "idempotent": action.idempotent,
                    "reversible": action.reversible,
                    "verifiable": action.verifiable,
                    "parameters": schema.get("properties", {}),
                    "required": schema.get("required", []),
                    "example": action.example,
                }
            )
        return out

    async def settle(self, timeout: float, until: Callable[[], bool] | None = None) -> bool:
        """Run the engine here until no job is due (expiry undos wait for `serve`), or until
        `until()` holds, at most `timeout` seconds; False when time ran out first. What a
        command that ingests does before it answers."""
        worker = Worker(self.db, self.config, self.decisions)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                await asyncio.sleep(0.02)
                if until is not None:
                    if until():
                        return True
                elif worker.idle.is_set() and await asyncio.to_thread(self.pending_work) == 0:
                    return True
            return False
        finally:
            stop.set()
            await task

    def pending_work(self) -> int:
        """Jobs due now or soon that are not expiry undos (those wait for their time)."""
        with self.db.read() as conn:
            return jobs.pending_count(conn, exclude_kind=planner.UNDO_STEP)

    def health(self) -> dict[str, Any]:
        """Database reachable, engine running, playbooks loaded, how much work is due."""
        with self.db.read() as conn:
            due = jobs.due_count(conn, datetime.now(UTC))
        engine = self.engine_state()
        status = "ok" if engine in ("running", "absent") else "degraded"
        return {
            "status": status,
            "engine": engine,
            "playbooks": len(self.playbooks),
            "due_jobs": due,
        }
