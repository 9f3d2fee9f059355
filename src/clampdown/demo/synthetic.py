"""Synthetic remediation history, written the way the engine would have written it.

Findings are drawn from the catalogue (alert and recommendation types, APIs, clients),
matched against real playbooks (the default pack, or any given) and their steps rendered by
those playbooks; what happened next is drawn at random: contained then expired, undone early
by a person, failed after retries, approved or rejected, a guided task done or still open.
The rows follow the engine's conventions: the states a remediation passes through, history
entries and who made them, repeats joining an open group, containments with their change
events, tasks, and the undo jobs of what is still in force. Nothing happens after `now`
except expiries and due dates. Safety rails and approval policies are not simulated.

`clampdown demo` uses it for a week of history labelled as demo data; bench/seed.py for a
large store.
"""

from __future__ import annotations

import gc
import heapq
import ipaddress
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from clampdown.actions import registry
from clampdown.actions.gateway import EndpointParams, SubjectParams
from clampdown.demo import catalogue as cat
from clampdown.durations import parse_duration
from clampdown.errors import ExpressionError
from clampdown.model import ApiRef, ContainmentKind, Finding, Mode
from clampdown.playbooks import Matcher, Playbook
from clampdown.store import bulk
from clampdown.store.db import Database

Row = dict[str, Any]
SYSTEM, ENGINE = "system", "engine"
UNDO_STEP = "undo_step"  # the engine's job kind for an expiry undo (engine.planner.UNDO_STEP)
_CONTAINING = {
    "gateway.block": ContainmentKind.BLOCK,
    "gateway.throttle": ContainmentKind.THROTTLE,
    "gateway.disable_endpoint": ContainmentKind.DISABLE,
}
# Remediation and step states, as plain strings (model.RemediationState, model.StepState).
PLANNED, AWAITING, RUNNING, VERIFYING = "planned", "awaiting_approval", "running", "verifying"
SUCCEEDED, FAILED, REJECTED, ROLLED_BACK = "succeeded", "failed", "rejected", "rolled_back"
EXPIRED, DRY_RUN = "expired", "dry_run"
PENDING, WAITING, SKIPPED, UNDONE = "pending", "waiting", "skipped", "undone"
_NOT_JOINABLE = (FAILED, EXPIRED, ROLLED_BACK)  # as store.remediations


@dataclass(frozen=True)
class Profile:
    """What the history looks like and how it is labelled."""

    source: str = "synthetic"
    """The `source` of every finding (their source ids are `<source>-<finding id>`)."""
    people: tuple[str, ...] = ("token:oncall", "cli:alice", "cli:bob")
    """Who approves, rejects, undoes early and completes tasks."""
    label: str = ""
    """Appended to every recorded reason and note, e.g. " (demo data)"."""
    weights: tuple[tuple[str, float], ...] = ()
    """(finding type, weight) replacing the catalogue's weight of that type."""
    networks: tuple[str, ...] = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    """Where client addresses come from (the top 16 addresses of each are never used)."""
    expiries: tuple[tuple[float, float], ...] = ()
    """(seconds, weight) replacing the playbooks' own containment expiries; empty: as written."""
    failure_rate: float = 0.03
    override_rate: float = 0.05
    rejection_rate: float = 0.2
    open_approvals: int = 50
    """At most this many remediations are left waiting for approval."""
    open_tasks: int = 8
    """At most this many guided tasks are left open."""
    open_window: timedelta = timedelta(days=2)
    """Only what was created this recently is left waiting."""


@dataclass(frozen=True)
class _Step:
    """A playbook step as rendered for one threat: params, or why it is skipped or fails."""

    key: str
    action: str
    spec: dict[str, Any]
    expires: float | None
    params: dict[str, Any] | None = None
    skip: str | None = None
    error: str | None = None
    containment: dict[str, Any] | None = None
    """The containment row's content (gateway verbs that contain), without id and times."""
    summary: str = "done"


@dataclass(frozen=True)
class _Plan:
    playbook: Playbook
    group_key: str
    steps: tuple[_Step, ...]


@dataclass(frozen=True)
class Threat:
    """One threat (type and main entities): every finding of it shares its fingerprint."""

    data: dict[str, Any]
    fingerprint: str
    plans: tuple[_Plan, ...]


@dataclass
class _Story:
    """One remediation as it happened; its rows are emitted once no repeat can join it."""

    rem: Row
    steps: list[Row]
    history: list[Row] = field(default_factory=list)
    links: list[Row] = field(default_factory=list)
    containments: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    tasks: list[Row] = field(default_factory=list)
    jobs: list[Row] = field(default_factory=list)

    def state_at(self, when: datetime) -> str:
        """The remediation's state at `when` (history is in time order only once emitted)."""
        earlier = [r for r in self.history if r["step_key"] is None and r["at"] <= when]
        if not earlier:
            return ""
        # Of rows at the same time, the one recorded last.
        return str(max(reversed(earlier), key=lambda r: r["at"])["to_state"])


@dataclass
class Drawn:
    """A finding drawn for a time: its row and its threat."""

    row: Row
    threat: Threat


class Synthesizer:
    """Draws findings and what happened to them; deterministic for a given seed and `now`.

    `threats` start the pool of threats (they recur most, being at its head); the rest of the
    pool, `pool` threats in all, is drawn from the catalogue.
    """

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        profile: Profile,
        *,
        seed: int,
        now: datetime,
        threats: Sequence[Finding] = (),
        pool: int = 40,
    ) -> None:
        self.profile = profile
        self.now = now
        self.rng = random.Random(seed)  # noqa: S311 - made-up data, not secrets
        self.outcomes: dict[str, int] = {}
        """Remediations emitted so far, by state."""
        self._seed = seed
        self._matcher = Matcher(playbooks)
        self._networks = [ipaddress.ip_network(n) for n in profile.networks]
        weights = dict(profile.weights)
        self._weights = [weights.get(kind.type, kind.weight) for kind in cat.CATALOGUE]
        self._pool = max(pool, len(threats) + 1)
        self._beyond = 0
        self._reported: set[int] = set()
        self._threats = {i: self._threat(finding) for i, finding in enumerate(threats)}
        self._open: dict[tuple[str, str], _Story] = {}
        self._closing: list[tuple[datetime, int, tuple[str, str], _Story]] = []
        self._seq = 0
        self._waiting_approvals = 0
        self._open_tasks = 0
        self._variants: dict[tuple[int, float], _Plan] = {}

    # -- when and what -------------------------------------------------------------------

    def schedule(self, count: int, since: datetime, until: datetime) -> list[tuple[datetime, int]]:
        """`count` (time, threat index) pairs in [since, until), in time order.

        Busier in the day (UTC) than at night; one finding in ten belongs to a short campaign
        of one threat (repeats that playbooks group); threats at the head of the pool recur.
        """
        rng = self.rng
        span = (until - since).total_seconds()
        out: list[tuple[datetime, int]] = []
        centres = [(rng.uniform(0, span), self._pick()) for _ in range(max(1, count // 80))]
        while len(out) < count:
            if rng.random() < 0.1:
                centre, threat = rng.choice(centres)
                offset = min(max(0.0, rng.gauss(centre, 600)), span - 1)
            else:
                offset, threat = rng.uniform(0, span), self._pick()
                hour = (since + timedelta(seconds=offset)).hour
                if rng.random() > 0.55 + 0.45 * math.sin(math.pi * hour / 24):
                    continue
            out.append((since + timedelta(seconds=offset), threat))
        out.sort(key=lambda pair: pair[0])
        return out

    def _pick(self) -> int:
        return int(self._pool * self.rng.random() ** 2)

    def findings(self, batch: Sequence[tuple[datetime, int]], first_id: int) -> list[Drawn]:
        """The finding rows of scheduled pairs, with ids from `first_id` on.

        Source ids are `<source>-<id>`: unique as long as the ids are.
        """
        out = []
        for finding_id, (at, index) in enumerate(batch, start=first_id):
            threat = self._threat_at(index)
            if threat.data["kind"] == "recommendation" and index in self._reported:
                # Reported once per resource (Defender keeps one assessment each): another
                # resource gets the same recommendation, a threat from beyond the pool.
                self._beyond += 1
                index = self._pool + self._beyond
                threat = self._threat_at(index, threat.data["type"])
            self._reported.add(index)
            sid = f"{self.profile.source}-{finding_id:06d}"
            # Detectors report minutes after the activity began (time to acknowledge).
            began = timedelta(minutes=self.rng.triangular(3, 90, 15))
            stamps = {
                "first_seen": _iso(at - began),
                "last_seen": _iso(at - began / 4),
                "reported_at": _iso(at - began / 8),
            }
            data = {**threat.data, "source_id": sid, **stamps}
            data["raw"] = {**data["raw"], "id": sid, **stamps}
            row = {
                "id": finding_id,
                "source": data["source"],
                "source_id": sid,
                "shape": data["shape"],
                "kind": data["kind"],
                "type": data["type"],
                "severity": data["severity"],
                "fingerprint": threat.fingerprint,
                "title": data["title"],
                "received_at": at,
                "data": data,
            }
            out.append(Drawn(row, threat))
        return out

    def _threat_at(self, index: int, type_: str | None = None) -> Threat:
        threat = self._threats.get(index)
        if threat is None:
            # Its own generator, so that a threat does not depend on the order of draws.
            rng = random.Random(self._seed * 1_000_003 + index)  # noqa: S311 - made-up data
            threat = self._threats[index] = self._threat(self._draw_finding(rng, type_))
        return threat

    def _draw_finding(self, rng: random.Random, type_: str | None) -> Finding:
        kind = rng.choices(cat.CATALOGUE, weights=self._weights)[0]
        if type_ is not None:
            kind = next(k for k in cat.CATALOGUE if k.type == type_)
        if kind.posture:
            api, operation, endpoint = _versioned(rng.choice(cat.POSTURE_APIS), rng)
        else:
            api, operation, endpoint = rng.choice(cat.APIS)
        recommendation = kind.kind == "recommendation"
        hostile = kind.type == "API_AccessFromSuspiciousUserAgent"
        ips = []
        if rng.random() < kind.with_ip:
            network = rng.choice(self._networks)
            ips.append(str(network[rng.randrange(1, network.num_addresses - 16)]))
        return Finding(
            source=self.profile.source,
            source_id="-",
            shape="generic",
            kind=kind.kind,
            type=kind.type,
            title=kind.title.format(endpoint=endpoint),
            description=kind.description.format(endpoint=endpoint),
            severity=rng.choice(kind.severities),
            status="unhealthy" if recommendation else "active",
            ips=ips,
            apis=[
                ApiRef(
                    id=f"{cat.APIM}/apis/{api}/operations/{operation}",
                    service=cat.SERVICE,
                    api=api,
                    operation=operation,
                )
            ],
            endpoint=endpoint,
            user_agent=None
            if recommendation
            else rng.choice(cat.HOSTILE_USER_AGENTS if hostile else cat.USER_AGENTS),
        )

    def _threat(self, finding: Finding) -> Threat:
        view = finding.expression_view()
        plans = []
        for playbook in self._matcher.match(finding):
            steps = tuple(self._render(playbook, view))
            group_key = playbook.group_key_or_fingerprint(view, finding.fingerprint)
            plans.append(_Plan(playbook, group_key, steps))
        data = finding.model_dump(mode="json")
        data.update(source=self.profile.source, shape="generic", raw=self._payload(finding))
        return Threat(data, finding.fingerprint, tuple(plans))

    def _payload(self, finding: Finding) -> dict[str, Any]:
        """The finding in Clampdown's generic shape, as a detector would have sent it."""
        payload: dict[str, Any] = {
            "schema": "clampdown.finding/v1",
            "source": self.profile.source,
            "id": "-",
            "type": finding.type,
            "kind": finding.kind.value,
            "title": finding.title,
            "description": finding.description,
            "severity": finding.severity.value,
            "status": finding.status,
            "ips": list(finding.ips),
            "apis": [api.id for api in finding.apis],
        }
        for name in ("endpoint", "user_agent", "url"):
            if value := getattr(finding, name):
                payload[name] = value
        return payload

    def _render(self, playbook: Playbook, view: dict[str, Any]) -> Iterator[_Step]:
        ctx = playbook.context(view)
        for step in playbook.steps:
            spec = step.as_spec()
            base = _Step(step.id, step.uses, spec, spec["expires"])
            try:
                if not step.should_run(ctx):
                    yield replace(base, skip=f"if: {spec['if']} was false")
                    continue
                validated = registry.get(step.uses).params.model_validate(step.render(ctx))
            except ExpressionError as exc:
                yield replace(base, error=str(exc))
                continue
            except ValidationError as exc:
                yield replace(base, error=f"invalid parameters: {exc.errors()[0]['msg']}")
                continue
            params = validated.model_dump(mode="json")
            kind = _CONTAINING.get(step.uses)
            if kind is None or not isinstance(validated, SubjectParams | EndpointParams):
                yield replace(base, params=params)
                continue
            spec_ = validated.containment(kind)
            target = validated.target
            summary = f"{kind.value} {spec_.subject_type.value} {spec_.subject} on {spec_.scope}"
            containment = {
                "target": target,
                "kind": kind.value,
                "subject_type": spec_.subject_type.value,
                "subject": spec_.subject,
                "scope": spec_.scope,
                "rate": spec_.rate,
                "period_seconds": spec_.period_seconds,
                "reason": spec_.reason + self.profile.label,
            }
            if target != "builtin":
                summary += f" at {target}"
            yield replace(base, params=params, containment=containment, summary=summary)

    # -- what happened -------------------------------------------------------------------

    def remediate(self, drawn: Sequence[Drawn]) -> bulk.Rows:
        """The remediations of drawn findings, in time order; rows ready to insert.

        A remediation whose group is still open at the last finding is kept back (until a
        later call or `finish`), so that later repeats can join it.
        """
        rows = bulk.Rows()
        for item in drawn:
            at, finding_id = item.row["received_at"], item.row["id"]
            while self._closing and self._closing[0][0] <= at:
                _, _, key, story = heapq.heappop(self._closing)
                if self._open.get(key) is story:
                    self._emit(self._open.pop(key), rows)
            for plan in item.threat.plans:
                key = (plan.playbook.name, plan.group_key)
                open_ = self._open.pop(key, None)
                if open_ is not None and open_.state_at(at) not in _NOT_JOINABLE:
                    self._open[key] = open_
                    self._join(open_, finding_id, at)
                    continue
                if open_ is not None:
                    self._emit(open_, rows)
                story = self._story(plan, finding_id, at)
                until = story.rem["group_until"]
                if until is None:
                    self._emit(story, rows)
                    continue
                self._open[key] = story
                self._seq += 1
                heapq.heappush(self._closing, (until, self._seq, key, story))
        return rows

    def finish(self) -> bulk.Rows:
        """The rows of every remediation still kept back."""
        rows = bulk.Rows()
        for story in self._open.values():
            self._emit(story, rows)
        self._open.clear()
        self._closing.clear()
        return rows

    def _emit(self, story: _Story, rows: bulk.Rows) -> None:
        story.history.sort(key=lambda row: row["at"])  # stable: same-time rows keep their order
        rem = story.rem
        rem["state"] = next(r["to_state"] for r in reversed(story.history) if not r["step_key"])
        rem["updated_at"] = max(rem["updated_at"], story.history[-1]["at"])
        self.outcomes[rem["state"]] = self.outcomes.get(rem["state"], 0) + 1
        rows.remediations.append(rem)
        rows.remediation_findings.extend(story.links)
        rows.steps.extend(story.steps)
        rows.history.extend(story.history)
        rows.containments.extend(story.containments)
        rows.containment_events.extend(story.events)
        rows.tasks.extend(story.tasks)
        rows.jobs.extend(story.jobs)

    def _join(self, story: _Story, finding_id: int, at: datetime) -> None:
        state = story.state_at(at)
        story.links.append(
            {"remediation_id": story.rem["id"], "finding_id": finding_id, "added_at": at}
        )
        story.rem["finding_count"] += 1
        why = f"repeat finding {finding_id} joined the group"
        self._note(story, None, state, state, why, at, SYSTEM)

    def _story(self, plan: _Plan, finding_id: int, at: datetime) -> _Story:
        playbook = plan.playbook
        rid = self._id(at)
        rem = {
            "id": rid,
            "playbook": playbook.name,
            "mode": playbook.mode.value,
            "state": PLANNED,
            "finding_id": finding_id,
            "group_key": plan.group_key,
            "group_until": at + playbook.group_window if playbook.group_window else None,
            "finding_count": 1,
            "created_at": at,
            "updated_at": at,
        }
        if self.profile.expiries:
            plan = self._with_expiry(plan)
        story = _Story(rem, [_step_row(rid, i, s) for i, s in enumerate(plan.steps)])
        story.links.append({"remediation_id": rid, "finding_id": finding_id, "added_at": at})
        matched = f"finding {finding_id} matched playbook {playbook.name}"
        self._note(story, None, None, PLANNED, matched, at)
        if playbook.mode is Mode.DRY_RUN:
            for row, step in zip(story.steps, plan.steps, strict=True):
                row.update(state=SKIPPED, params=step.params, error=step.error)
            self._note(
                story, None, PLANNED, DRY_RUN, "dry run: steps rendered, nothing executed", at
            )
            return story
        if playbook.mode is Mode.APPROVAL:
            self._note(story, None, PLANNED, AWAITING, "the playbook asks for approval", at)
            started = self._decide_approval(story, at)
            if started is None:
                return story
        else:
            self._note(story, None, PLANNED, RUNNING, f"{playbook.mode.value} mode", at)
            started = at
        self._run(story, plan, started + _ms(self.rng, 2, 40))
        return story

    def _with_expiry(self, plan: _Plan) -> _Plan:
        """The plan with its expiring steps lasting a duration drawn from the profile."""
        choices, weights = zip(*self.profile.expiries, strict=True)
        seconds: float = self.rng.choices(choices, weights=weights)[0]
        variant = self._variants.get((id(plan), seconds))
        if variant is None:
            steps = tuple(
                replace(s, expires=seconds, spec={**s.spec, "expires": seconds}) if s.expires else s
                for s in plan.steps
            )
            variant = _Plan(plan.playbook, plan.group_key, steps)
            self._variants[(id(plan), seconds)] = variant
        return variant

    def _decide_approval(self, story: _Story, at: datetime) -> datetime | None:
        """Approved or rejected after a wait, or still waiting; when it runs, if it does."""
        rng, profile = self.rng, self.profile
        if rng.random() < 0.7:
            wait = timedelta(hours=rng.expovariate(0.5))
        else:
            wait = timedelta(days=rng.uniform(1, 10))
        decided = at + wait
        if decided >= self.now:
            if self._may_stay_open(at, self._waiting_approvals, profile.open_approvals):
                self._waiting_approvals += 1
                return None
            decided = at + (self.now - at) * rng.uniform(0.3, 0.95)
        person = rng.choice(profile.people)
        if rng.random() < profile.rejection_rate:
            for row in story.steps:
                row["state"] = SKIPPED
            why = f"rejected: {rng.choice(cat.REJECTIONS)}"
            self._note(story, None, AWAITING, REJECTED, why, decided, person)
            return None
        note = rng.choice(cat.APPROVAL_NOTES)
        why = "approved" + (f": {note}" if note else "")
        self._note(story, None, AWAITING, RUNNING, why, decided, person)
        return decided

    def _may_stay_open(self, created: datetime, count: int, cap: int) -> bool:
        return count < cap and self.now - created < self.profile.open_window

    def _run(self, story: _Story, plan: _Plan, at: datetime) -> None:
        """Run the steps in order from `at`, as the executor does, then verify."""
        for index, (row, step) in enumerate(zip(story.steps, plan.steps, strict=True)):
            if step.skip is not None:
                self._step_to(story, row, SKIPPED, step.skip, at, finished_at=at)
                continue
            if step.error is not None:
                self._fail(story, index, step.error, at)
                return
            if step.action == "task.create":
                done = self._task(story, row, step, at)
                if done is None:
                    return
                at = done + _ms(self.rng, 5, 60)
                continue
            failing = (
                plan.playbook.mode is Mode.AUTOMATIC
                and self.rng.random() < self.profile.failure_rate
            )
            ok, at = self._call(story, row, step, at, fail=failing)
            if not ok:
                self._fail(
                    story, index, f"gave up after {row['attempts']} attempts: {cat.TRANSIENT}", at
                )
                return
        self._verify(story, at)

    def _call(
        self, story: _Story, row: Row, step: _Step, at: datetime, *, fail: bool
    ) -> tuple[bool, datetime]:
        """The attempts of one action call: whether it took effect, and when it ended."""
        rng = self.rng
        retries = 5 if fail else (1 if rng.random() < 0.05 else 0)
        row.update(params=step.params, started_at=at)
        if step.expires:
            row["expires_at"] = at + timedelta(seconds=step.expires)
        for attempt in range(1, retries + 2):
            row["attempts"] = attempt
            self._step_to(story, row, RUNNING, f"attempt {attempt}", at)
            if attempt <= retries:
                at += timedelta(seconds=11)
                delay = rng.uniform(0.05, min(300.0, 0.5 * 2 ** (attempt - 1)))
                retry = f"{cat.TRANSIENT}; retry in {delay:.2f}s"
                self._step_to(story, row, PENDING, retry, at, error=cat.TRANSIENT)
                at += timedelta(seconds=delay)
        if fail:
            return False, at + timedelta(seconds=11)
        done = at + _ms(rng, 2, 15)
        output: Row = {}
        undo: Row | None = None
        if step.containment is not None:
            cid = self._id(at)
            created = at + (done - at) / 2
            story.containments.append(
                {
                    **step.containment,
                    "id": cid,
                    "key": row["idempotency_key"],
                    "remediation_id": story.rem["id"],
                    "created_by": ENGINE,
                    "created_at": created,
                    "expires_at": row["expires_at"],
                    "removed_at": None,
                    "removed_reason": None,
                }
            )
            if step.containment["target"] == "builtin":
                story.events.append({"containment_id": cid, "op": "add", "at": created})
            output = undo = {"containment_id": cid}
        result = {
            "output": output,
            "undo": undo,
            "summary": step.summary,
            "waiting": False,
            "closed": False,
        }
        self._step_to(story, row, SUCCEEDED, step.summary, done, result=result)
        row.update(error=None, finished_at=done)
        return True, done

    def _task(self, story: _Story, row: Row, step: _Step, at: datetime) -> datetime | None:
        """Open a guided task; when a person completed it (None while it stays open)."""
        rng, params = self.rng, step.params or {}
        tid = self._id(at)
        row.update(params=params, started_at=at, attempts=1)
        self._step_to(story, row, RUNNING, "attempt 1", at)
        opened = at + _ms(rng, 2, 15)
        due = parse_duration(params["due"]) if params.get("due") else None
        task = {
            "id": tid,
            "key": row["idempotency_key"],
            "remediation_id": story.rem["id"],
            "step_key": row["key"],
            "title": params.get("title", ""),
            "why": params.get("why", ""),
            "steps": list(params.get("steps") or []),
            "links": list(params.get("links") or []),
            "evidence": list(params.get("evidence") or []),
            "owner": params.get("owner", ""),
            "due_at": opened + due if due else None,
            "status": "open",
            "created_at": opened,
            "completed_at": None,
            "completed_by": None,
            "note": None,
        }
        story.tasks.append(task)
        result = {
            "output": {"task_id": tid},
            "undo": None,
            "summary": "task opened",
            "waiting": True,
            "closed": False,
        }
        self._step_to(story, row, WAITING, "task opened", opened, result=result)
        done = opened + (due or timedelta(days=3)) * rng.uniform(0.05, 1.3)
        if done >= self.now:
            if self._may_stay_open(opened, self._open_tasks, self.profile.open_tasks):
                self._open_tasks += 1
                return None
            done = opened + (self.now - opened) * rng.uniform(0.3, 0.95)
        person, note = rng.choice(self.profile.people), rng.choice(cat.TASK_NOTES)
        task.update(
            status="done", completed_at=done, completed_by=person, note=note + self.profile.label
        )
        why = f"task completed: {note}"
        self._step_to(story, row, SUCCEEDED, why, done, person, finished_at=done)
        return done

    def _verify(self, story: _Story, at: datetime) -> None:
        """Every step ran: verified; then what expires is undone on schedule, or early."""
        self._note(story, None, RUNNING, VERIFYING, "every step ran", at)
        verified = at + _ms(self.rng, 1, 5)
        self._note(story, None, VERIFYING, SUCCEEDED, "verified", verified)
        held = [
            (row, c)
            for row in story.steps
            for c in story.containments
            if c["key"] == row["idempotency_key"] and row["expires_at"] is not None
        ]
        if held:
            self._lift(story, held, verified)

    def _lift(self, story: _Story, held: list[tuple[Row, Row]], verified: datetime) -> None:
        rng, profile = self.rng, self.profile
        ends = min(row["expires_at"] for row, _ in held)
        early = verified + (ends - verified) * rng.uniform(0.02, 0.8)
        if rng.random() < profile.override_rate and early < self.now:
            person, why = rng.choice(profile.people), rng.choice(cat.UNDO_REASONS)
            asked = f"undo requested: {why}"
            undone = early
            for row, containment in held:
                self._step_to(story, row, SUCCEEDED, asked, early, person)
                undone = early + _ms(rng, 20, 200)
                self._undo(story, row, containment, undone, f"undone early ({asked})", person)
            why = "a containment was undone early at a person's request"
            self._note(story, None, SUCCEEDED, ROLLED_BACK, why, undone, person)
            return
        last = verified
        for row, containment in held:
            undone = row["expires_at"] + _ms(rng, 5, 400)
            if undone < self.now:
                self._undo(story, row, containment, undone, "expired: undone on schedule", ENGINE)
                last = max(last, undone)
                continue
            story.jobs.append(
                {
                    "kind": UNDO_STEP,
                    "remediation_id": story.rem["id"],
                    "step_key": row["key"],
                    "due_at": row["expires_at"],
                    "lease_until": None,
                    "lease_owner": None,
                    "attempts": 0,
                    "created_at": row["finished_at"],
                }
            )
        if not story.jobs:
            why = "every temporary containment expired and was undone"
            self._note(story, None, SUCCEEDED, EXPIRED, why, last)

    def _undo(
        self, story: _Story, row: Row, containment: Row, at: datetime, reason: str, actor: str
    ) -> None:
        self._step_to(story, row, UNDONE, reason, at, actor)
        why = f"undo of {story.rem['id']}/{row['key']}{self.profile.label}"
        containment.update(removed_at=at, removed_reason=why)
        if containment["target"] == "builtin":
            story.events.append({"containment_id": containment["id"], "op": "remove", "at": at})

    def _fail(self, story: _Story, index: int, error: str, at: datetime) -> None:
        row = story.steps[index]
        self._step_to(story, row, FAILED, error, at, error=error, finished_at=at)
        for later in story.steps[index + 1 :]:
            if later["state"] == PENDING:
                self._step_to(story, later, SKIPPED, "an earlier step failed", at)
        self._note(story, None, RUNNING, FAILED, f"step {row['key']} failed: {error}", at)

    # -- rows ----------------------------------------------------------------------------

    def _step_to(
        self,
        story: _Story,
        row: Row,
        state: str,
        reason: str,
        at: datetime,
        actor: str = ENGINE,
        **values: Any,
    ) -> None:
        before = row["state"]
        row.update(values, state=state)
        self._note(story, row["key"], before, state, reason, at, actor)

    def _note(
        self,
        story: _Story,
        step_key: str | None,
        from_state: str | None,
        to_state: str,
        reason: str,
        at: datetime,
        actor: str | None = None,
    ) -> None:
        story.history.append(
            {
                "remediation_id": story.rem["id"],
                "step_key": step_key,
                "at": at,
                "from_state": from_state,
                "to_state": to_state,
                "reason": reason + self.profile.label,
                "actor": actor or (SYSTEM if from_state in (None, PLANNED) else ENGINE),
            }
        )

    def _id(self, at: datetime) -> str:
        """32 hex digits like the engine's uuid4 ids, but starting with the time (as UUIDv7
        does): rows of a large history then go to the end of their indexes, not all over."""
        return f"{int(at.timestamp() * 1000):012x}{self.rng.getrandbits(80):020x}"


def fill(
    db: Database,
    synthesizer: Synthesizer,
    *,
    count: int,
    since: datetime,
    until: datetime,
    batch: int = 5000,
) -> dict[str, int]:
    """Draw `count` findings over [since, until), with what happened to them, and store them.

    One transaction per batch. Finding ids are taken after the highest one stored, so nothing
    else may add findings meanwhile. Returns how many rows each table got.
    """
    schedule = synthesizer.schedule(count, since, until)
    totals: dict[str, int] = {}
    next_id = db.run(bulk.next_finding_id)
    with _no_collection():
        for first in range(0, len(schedule), batch):
            drawn = synthesizer.findings(schedule[first : first + batch], next_id)
            next_id += len(drawn)
            rows = synthesizer.remediate(drawn)
            if first + batch >= len(schedule):
                rows.extend(synthesizer.finish())
            with db.write() as conn:
                bulk.prepare(conn)
                bulk.add_findings(conn, [d.row for d in drawn])
                bulk.add(conn, rows)
            for name, n in {"findings": len(drawn), **rows.counts()}.items():
                totals[name] = totals.get(name, 0) + n
    with db.write() as conn:
        bulk.follow_ids(conn)
    return totals


@contextmanager
def _no_collection() -> Iterator[None]:
    # Millions of new, long-lived dicts: the cyclic collector would rescan them again and
    # again for nothing (they hold no cycles), a third of the time of a large fill.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _step_row(rid: str, position: int, step: _Step) -> Row:
    return {
        "remediation_id": rid,
        "key": step.key,
        "position": position,
        "action": step.action,
        "spec": step.spec,
        "state": PENDING,
        "attempts": 0,
        "idempotency_key": f"{rid}-{position}",
        "params": None,
        "result": None,
        "error": None,
        "expires_at": None,
        "started_at": None,
        "finished_at": None,
    }


def _versioned(api: tuple[str, str, str], rng: random.Random) -> tuple[str, str, str]:
    """One of the versions of an old operation (they pile up), so that resources vary."""
    name, operation, endpoint = api
    version = rng.randrange(1, 25)
    if version == 1:
        return api
    method, path = endpoint.split(" ", 1)
    return name, f"{operation}V{version}", f"{method} /v{version}{path}"


def _ms(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(milliseconds=rng.uniform(low, high))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
