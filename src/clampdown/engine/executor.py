"""Executing jobs: drive a remediation through its steps, and undo a step when it expires.

A `run` job drives one remediation: it takes the first step that is pending (or was left
running), runs it, records the outcome and goes on with the next step, each outcome and the
start of the next step in one transaction. Every pass reads the state fresh, so a job re-run
after a crash sees what was recorded before it. A step is marked `running` (committed) before
its action is called: a step still `running` when its job is taken up again means a call may
have reached the target, and a non-idempotent action is then failed visibly rather than sent
twice (at most once).

A failed step ends the remediation unless its `on_failure` says otherwise: `continue` goes on
with the next step, `undo_previous` undoes the earlier steps one `rollback` job at a time,
latest first, and the last of those jobs fails the remediation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

import aiohttp
import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy import Connection

from clampdown.actions import registry
from clampdown.actions.contract import Action, ActionContext, ActionResult, Briefing, Params
from clampdown.actions.notify import NotifyParams, NotifySend
from clampdown.config import Config
from clampdown.engine import approvals, closing, detector, overrides, planner, rollback, undoing
from clampdown.engine.briefing import brief
from clampdown.engine.decisions import DecisionCache
from clampdown.engine.ports import StoreContainments, StoreMemos, StoreTasks
from clampdown.engine.retry import backoff
from clampdown.engine.safety import Rails
from clampdown.errors import ActionError, ConfigError, ExpressionError, TransientError
from clampdown.links import Links
from clampdown.metrics.steps import IGNORED, StepMetrics
from clampdown.model import Finding, RemediationState, StepState
from clampdown.playbooks.expressions import Expression, compile_value, render_value
from clampdown.store import findings, jobs, remediations, tasks
from clampdown.store.db import Database
from clampdown.store.jobs import Job
from clampdown.targets.pool import Drivers

log = structlog.get_logger("clampdown.engine")

ENGINE = "engine"
SAFETY = "safety"
_RUNNING = RemediationState.RUNNING.value
_VERIFYING = RemediationState.VERIFYING.value
CONTINUE = "continue"
_SUCCEEDED = StepState.SUCCEEDED.value
_FAILED = StepState.FAILED.value
LEASE_MARGIN = 5.0
"""Seconds a call must end before its job's lease lapses (config checks the same margin)."""


@lru_cache(maxsize=4096)
def _condition(source: str) -> Expression:
    return Expression(source)


@lru_cache(maxsize=4096)
def _compiled_with(frozen: bytes) -> Any:
    return compile_value(orjson.loads(frozen))


def _render(spec: dict[str, Any], ctx: dict[str, Any]) -> Any:
    """Render a step's stored `with` block; compiled once per distinct block."""
    frozen = orjson.dumps(spec["with"], option=orjson.OPT_SORT_KEYS)
    return render_value(_compiled_with(frozen), ctx)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Adopted:
    """A job planned in this process and handed to its worker with what planning knew."""

    job: Job
    finding: Finding | None = None
    rows: tuple[dict[str, Any], list[dict[str, Any]]] | None = None


@dataclass
class _Run:
    """What one pass of a `run` job knows; the finding is read once per job."""

    job: Job
    finding: Finding | None = None
    remediation: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    """History entries of the current transaction, written together at its end."""
    ran_at: datetime | None = None
    """When the last step ended, i.e. when verification began."""
    finding_view: dict[str, Any] | None = field(default=None, repr=False)
    paused: str | None = None
    """Why a safety rail made the remediation wait for a person, in this pass."""

    def view(self) -> dict[str, Any]:
        """The finding as expressions see it, built once per job."""
        if self.finding_view is None:
            assert self.finding is not None
            self.finding_view = self.finding.expression_view()
        return self.finding_view

    def copy(self) -> _Run:
        """An independent copy of the mutable state (rows, job lease); the finding is shared."""
        return replace(
            self,
            job=replace(self.job),
            remediation=dict(self.remediation),
            steps=[dict(step) for step in self.steps],
            notes=[],
        )


@dataclass(frozen=True)
class _Call:
    """A step marked running, with everything needed to call its action."""

    step: dict[str, Any]
    action: Action
    params: Params


@dataclass(frozen=True)
class _Outcome:
    """How a call ended: a result, or an error and whether retrying is allowed."""

    result: ActionResult | None = None
    error: str = ""
    retry: bool = False
    retry_after: float | None = None
    queued: bool = False
    """Not called at all: the target's rate limit gave it a later turn (not an attempt)."""


_VERIFY = object()


class Executor:
    """Runs claimed jobs; one instance per worker."""

    def __init__(
        self,
        db: Database,
        config: Config,
        cache: DecisionCache,
        session: aiohttp.ClientSession,
        *,
        due: Callable[[datetime], None] = lambda when: None,
        metrics: StepMetrics = IGNORED,
    ) -> None:
        self.db = db
        self.config = config
        self.cache = cache
        self.session = session
        self.drivers = Drivers(config.targets, session)
        self.links = Links.from_config(config.links)
        self.rails = Rails(config.safety)
        self._quiet_until = 0.0
        self.due = due
        self.lease = timedelta(seconds=config.engine.lease_seconds)
        self.metrics = metrics

    async def run(self, job: Job, adopted: Adopted | None = None) -> None:
        """Do one job (with what planning knew, when it was planned here); never raises."""
        try:
            if job.kind == planner.RUN:
                run = _Run(job)
                if adopted is not None:
                    run.finding = adopted.finding
                    if adopted.rows is not None:
                        run.remediation, run.steps = adopted.rows
                await self._drive(run)
            elif job.kind in (planner.UNDO_STEP, overrides.UNDO_EARLY):
                await undoing.run(self, job)
            elif job.kind == rollback.ROLLBACK:
                await rollback.run(self, job)
            elif job.kind == planner.CLOSE:
                await closing.close(self, job)
            elif job.kind == planner.APPROVAL_TIMEOUT:
                await approvals.on_timeout(self, job)
            elif job.kind == detector.SETTLE:
                await detector.settle(self, job)
            else:
                await self.db.run_async(lambda conn: jobs.finish(conn, job.id))
        except Exception:
            # A bug must not kill the worker; the lease lapses and the job is tried again.
            log.exception("job crashed", job=job.id, kind=job.kind, remediation=job.remediation_id)

    # -- run: one step after the other ----------------------------------------------------

    async def _drive(self, run: _Run) -> None:
        run, nxt = await self.db.run_async(partial(self._advance, run=run, previous=None))
        while isinstance(nxt, _Call):
            began = time.perf_counter()
            previous = (nxt, await self._call(run, nxt))
            self.metrics.step_ended(
                run.remediation,
                run.steps,
                nxt.step,
                previous[1],
                seconds=time.perf_counter() - began,
                max_attempts=self.max_attempts(nxt.step),
            )
            run, nxt = await self.db.run_async(partial(self._advance, run=run, previous=previous))
        if nxt is _VERIFY:
            await self._verify(run)
        if run.paused is not None:
            await self._announce(run, run.paused)

    def _advance(
        self, conn: Connection, run: _Run, previous: tuple[_Call, _Outcome] | None
    ) -> tuple[_Run, object]:
        """Record the previous call's outcome and start the next step, in one transaction.

        Returns the run's new state with the next `_Call`, `_VERIFY` when every step is done,
        or None when the job has ended (finished, waiting for a person or a retry, or failed).
        """
        # Work on a copy: if the transaction is rolled back and this runs again, it must start
        # from the state as it was, not as the failed attempt left it in memory.
        run = run.copy()
        now = _now()
        if not jobs.hold(conn, run.job, now + self.lease):
            # Another worker took the job over (our lease lapsed): it carries on, we stop.
            log.warning("job taken over by another worker", job=run.job.id)
            return run, None
        try:
            if previous is not None and not self._record(conn, run, *previous, now=now):
                return run, None
            return run, self._next(conn, run, now)
        finally:
            self._flush(conn, run)

    @staticmethod
    def _flush(conn: Connection, run: _Run) -> None:
        """Write the noted step transitions (before any later remediation transition)."""
        remediations.record_rows(conn, run.notes)
        run.notes = []

    def _load(self, conn: Connection, run: _Run) -> bool:
        if run.steps:
            # This job holds the remediation: the rows it keeps up to date are current.
            return True
        rem = remediations.get(conn, run.job.remediation_id)
        if rem is None:
            return False
        run.remediation = rem
        run.steps = remediations.steps(conn, rem["id"])
        if run.finding is None:
            got = findings.get(conn, rem["finding_id"])
            if got is None:
                return False
            run.finding = got[0]
        return True

    def _next(self, conn: Connection, run: _Run, now: datetime) -> object:
        job = run.job
        if not self._load(conn, run):
            jobs.finish(conn, job.id)
            return None
        state = run.remediation["state"]
        if state == _VERIFYING:
            return _VERIFY
        if (
            state != _RUNNING
            or any(s["state"] == StepState.WAITING.value for s in run.steps)
            or rollback.rolling_back(run.steps)
        ):
            jobs.finish(conn, job.id)
            return None
        for step in run.steps:
            if step["state"] not in (StepState.PENDING.value, StepState.RUNNING.value):
                continue
            action = registry.get(step["action"]) if step["action"] in registry.CATALOG else None
            problem = self._refuse(run, step, action)
            if problem is None:
                assert action is not None
                try:
                    condition = step["spec"].get("if")
                    ctx = self._context(run, step)
                    if condition and not _condition(condition).test(ctx):
                        self._set_step(
                            conn, run, step, StepState.SKIPPED, f"if: {condition} was false", now
                        )
                        continue
                    params = action.params.model_validate(_render(step["spec"], ctx))
                except ExpressionError as exc:
                    problem = f"expression: {exc}"
                except ValidationError as exc:
                    problem = "parameters: " + _validation_text(exc)
                else:
                    expires = bool(step["spec"].get("expires")) or step["expires_at"] is not None
                    verdict = self.rails.check(
                        conn,
                        remediation=run.remediation,
                        action=action.name,
                        params=params,
                        target=params.target,
                        expires=expires,
                        now=now,
                    )
                    if verdict.skip is not None:
                        log.warning(
                            "safety rail", remediation=run.job.remediation_id, why=verdict.skip
                        )
                        self._set_step(conn, run, step, StepState.SKIPPED, verdict.skip, now)
                        continue
                    if verdict.wait is not None:
                        self._pause(conn, run, verdict.wait, now)
                        return None
                    return self._start(conn, run, step, action, params, now)
            if not self._step_failed(conn, run, step, problem, now):
                return None
        # Every step ran. The move to verifying is written with the verdict, in one transaction;
        # a crash before it leaves the remediation running with no step left: verified again.
        run.ran_at = now
        return _VERIFY

    def _pause(self, conn: Connection, run: _Run, why: str, now: datetime) -> None:
        """A safety rail holds the remediation: it waits for a person's approval."""
        self._flush(conn, run)
        remediations.set_state(
            conn,
            run.job.remediation_id,
            from_state=_RUNNING,
            to_state=RemediationState.AWAITING_APPROVAL.value,
            reason=why,
            actor=SAFETY,
            now=now,
        )
        run.remediation["state"] = RemediationState.AWAITING_APPROVAL.value
        run.paused = why
        jobs.finish(conn, run.job.id)

    async def _announce(self, run: _Run, why: str) -> None:
        """Tell the configured channel that automation paused (once per budget window)."""
        name = self.config.safety.announce
        clock = asyncio.get_running_loop().time()
        if name is None or clock < self._quiet_until:
            return
        self._quiet_until = clock + self.rails.window.total_seconds()
        rid = run.job.remediation_id
        await self.tell(
            run.remediation,
            name,
            title="Automatic containment paused",
            text=f"{why}. Remediation {rid} ({run.remediation['playbook']}) waits for approval.",
        )

    async def tell(
        self, remediation: dict[str, Any], target: str, *, title: str, text: str
    ) -> None:
        """Send people a message about a remediation (with its links) outside its steps."""
        rid = remediation["id"]

        def load() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            with self.db.read() as conn:
                got = findings.get(conn, remediation["finding_id"])
                return remediations.steps(conn, rid), got[0].expression_view() if got else {}

        steps, view = await asyncio.to_thread(load)
        briefing = brief(remediation, steps, view, self.links)
        params = NotifyParams(target=target, title=title, text=text)
        step = {
            "key": "notice",
            "action": NotifySend.name,
            "idempotency_key": f"{rid}-notice-{len(steps)}",
            "expires_at": None,
        }
        try:
            await NotifySend().run(params, self.action_context(rid, step, params, briefing))
        except (ActionError, ConfigError) as exc:
            log.error("message about a remediation failed", target=target, error=str(exc))

    @staticmethod
    def now() -> datetime:
        """The engine's clock."""
        return _now()

    def _idempotent(self, action: Action, target_name: str) -> bool:
        target = self.config.targets.get(target_name)
        return action.idempotent_on(target.type) if target else action.idempotent

    def _refuse(self, run: _Run, step: dict[str, Any], action: Action | None) -> str | None:
        if action is None:
            return f"unknown action {step['action']!r}"
        target = str((step["params"] or {}).get("target", ""))
        if step["state"] == StepState.RUNNING.value and not self._idempotent(action, target):
            return (
                "the worker stopped during this call; it may or may not have reached the "
                "target, and this action is not idempotent, so it is not sent again"
            )
        return None

    def _briefing(self, run: _Run) -> Briefing:
        return brief(run.remediation, run.steps, run.view(), self.links)

    def _context(self, run: _Run, step: dict[str, Any]) -> dict[str, Any]:
        return {
            "finding": run.view(),
            "steps": {
                s["key"]: {"status": s["state"], "output": (s["result"] or {}).get("output", {})}
                for s in run.steps
            },
            "playbook": {"name": run.remediation["playbook"]},
            # The values the step read when it was planned, so a rerun sees the same ones.
            "vars": step["spec"].get("vars") or {},
            # The rung the remediation was planned at (playbooks with a response ladder).
            "ladder": step["spec"].get("ladder") or {},
        }

    def max_attempts(self, step: dict[str, Any]) -> int:
        retries = step["spec"].get("retries")
        return self.config.engine.max_attempts if retries is None else int(retries) + 1

    def _call_timeout(self, step: dict[str, Any], target_timeout: float) -> float:
        """Seconds one call of `step` may take: its `timeout`, else the target's plus one,
        never so long that the job's lease could lapse while the call runs."""
        wanted = step["spec"].get("timeout")
        limit = float(wanted) if wanted else target_timeout + 1
        return min(limit, self.lease.total_seconds() - LEASE_MARGIN)

    def _start(
        self,
        conn: Connection,
        run: _Run,
        step: dict[str, Any],
        action: Action,
        params: Params,
        now: datetime,
    ) -> _Call:
        expires = step["spec"].get("expires")
        values = {
            "attempts": step["attempts"] + 1,
            "params": params.model_dump(mode="json"),
            "started_at": step["started_at"] or now,
            "expires_at": step["expires_at"]
            or (now + timedelta(seconds=expires) if expires else None),
        }
        self._move(
            conn, run, step, StepState.RUNNING, f"attempt {values['attempts']}", now, **values
        )
        return _Call(step, action, params)

    def _move(
        self,
        conn: Connection,
        run: _Run,
        step: dict[str, Any],
        state: StepState,
        reason: str,
        now: datetime,
        **values: Any,
    ) -> None:
        """Change a step (in the database and in memory) and note the transition."""
        remediations.update_step(
            conn, run.job.remediation_id, step["key"], state=state.value, **values
        )
        if step["state"] != state.value:
            run.notes.append(
                {
                    "remediation_id": run.job.remediation_id,
                    "step_key": step["key"],
                    "at": now,
                    "from_state": step["state"],
                    "to_state": state.value,
                    "reason": reason,
                    "actor": ENGINE,
                }
            )
        step.update(values, state=state.value)

    async def _call(self, run: _Run, call: _Call) -> _Outcome:
        pacer = self.drivers.pacer(call.params.target)
        if pacer is not None:
            # Wait for the target's turn, but not so long that the lease could lapse first.
            timeout = self.config.targets[call.params.target].timeout
            if call.step["spec"].get("timeout"):
                timeout = self._call_timeout(call.step, timeout)
            wait = pacer.reserve(longest=max(0.0, self.lease.total_seconds() - timeout - 3))
            if wait is None:
                turn = pacer.free_in()
                return _Outcome(
                    error=f"target {call.params.target} is at its rate limit",
                    retry_after=turn,
                    queued=True,
                )
            await asyncio.sleep(wait)
        limit = 0.0
        try:
            actx = self.action_context(
                run.job.remediation_id, call.step, call.params, self._briefing(run)
            )
            limit = self._call_timeout(call.step, actx.target.timeout)
            async with asyncio.timeout(limit):
                return _Outcome(result=await call.action.run(call.params, actx))
        except TransientError as exc:
            retry = self._idempotent(call.action, call.params.target) or not exc.maybe_delivered
            return _Outcome(error=_once(str(exc), retry), retry=retry, retry_after=exc.retry_after)
        except TimeoutError:
            retry = self._idempotent(call.action, call.params.target)
            return _Outcome(error=_once(f"timed out after {limit:g}s", retry), retry=retry)
        except (ActionError, ConfigError) as exc:
            return _Outcome(error=str(exc))

    def _record(
        self, conn: Connection, run: _Run, call: _Call, outcome: _Outcome, *, now: datetime
    ) -> bool:
        """Store a call's outcome; True when the remediation goes on in this job."""
        # The call's step belongs to the previous copy of the run: use this copy's row.
        rid = run.job.remediation_id
        step = next(s for s in run.steps if s["key"] == call.step["key"])
        if outcome.result is not None:
            result = outcome.result
            if result.waiting and _task_already_done(conn, result):
                # The person finished before this step was recorded as waiting for them.
                result = result.model_copy(update={"waiting": False})
            state = StepState.WAITING if result.waiting else StepState.SUCCEEDED
            self._move(
                conn,
                run,
                step,
                state,
                result.summary or "done",
                now,
                result=result.model_dump(mode="json"),
                error=None,
                finished_at=None if result.waiting else now,
            )
            if call.action.reversible and step["expires_at"] is not None:
                jobs.enqueue(
                    conn, planner.UNDO_STEP, rid, step["key"], due_at=step["expires_at"], now=now
                )
                self.due(step["expires_at"])
            if result.waiting:
                jobs.finish(conn, run.job.id)
                return False
            return True
        if outcome.queued:
            turn = outcome.retry_after or 0.0
            reason = f"{outcome.error}; its turn comes in {turn:.2f}s"
            self._move(
                conn, run, step, StepState.PENDING, reason, now, attempts=step["attempts"] - 1
            )
            jobs.retry_at(conn, run.job.id, now + timedelta(seconds=turn))
            self.due(now + timedelta(seconds=turn))
            return False
        if outcome.retry and step["attempts"] < self.max_attempts(step):
            delay = self.delay(step["attempts"], outcome.retry_after)
            reason = f"{outcome.error}; retry in {delay:.2f}s"
            self._move(conn, run, step, StepState.PENDING, reason, now, error=outcome.error)
            jobs.retry_at(conn, run.job.id, now + timedelta(seconds=delay))
            self.due(now + timedelta(seconds=delay))
            return False
        error = outcome.error
        if outcome.retry:
            error = f"gave up after {step['attempts']} attempts: {error}"
        return self._step_failed(conn, run, step, error, now)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt `attempt + 1`: backoff with jitter, at least Retry-After."""
        engine = self.config.engine
        return backoff(
            attempt,
            initial=engine.backoff_initial,
            maximum=engine.backoff_max,
            retry_after=retry_after,
        )

    def _set_step(
        self,
        conn: Connection,
        run: _Run,
        step: dict[str, Any],
        state: StepState,
        reason: str,
        now: datetime,
    ) -> None:
        self._move(conn, run, step, state, reason, now, finished_at=now)

    def _step_failed(
        self, conn: Connection, run: _Run, step: dict[str, Any], error: str, now: datetime
    ) -> bool:
        """Fail the step and do what its `on_failure` says; True when the job goes on."""
        rid = run.job.remediation_id
        policy = step["spec"].get("on_failure") or "stop"
        log.warning("step failed", remediation=rid, step=step["key"], error=error, then=policy)
        if policy == CONTINUE:
            reason = f"{error} (on_failure: continue, the next step runs)"
            self._move(conn, run, step, StepState.FAILED, reason, now, error=error, finished_at=now)
            return True
        self._move(conn, run, step, StepState.FAILED, error, now, error=error, finished_at=now)
        for other in run.steps:
            if other["state"] == StepState.PENDING.value:
                self._move(conn, run, other, StepState.SKIPPED, "an earlier step failed", now)
        self._flush(conn, run)
        undo = (
            rollback.to_undo(run.steps, before=step["position"])
            if policy == rollback.UNDO_PREVIOUS
            else None
        )
        if undo is not None:
            remediations.record(
                conn,
                rid,
                None,
                _RUNNING,
                _RUNNING,
                reason=f"step {step['key']} failed: {error}; undoing the earlier steps, "
                "latest first (on_failure: undo_previous)",
                actor=ENGINE,
                now=now,
            )
            jobs.enqueue(conn, rollback.ROLLBACK, rid, undo["key"], due_at=now, now=now)
            self.due(now)
        else:
            reason = f"step {step['key']} failed: {error}"
            if policy == rollback.UNDO_PREVIOUS:
                reason += "; no earlier step to undo"
            self.end_failed(conn, rid, reason, run.steps, now)
        jobs.finish(conn, run.job.id)
        return False

    def end_failed(
        self, conn: Connection, rid: str, reason: str, steps: list[dict[str, Any]], now: datetime
    ) -> None:
        remediations.set_state(
            conn,
            rid,
            from_state=_RUNNING,
            to_state=RemediationState.FAILED.value,
            reason=reason,
            actor=ENGINE,
            now=now,
        )
        closing.enqueue_if_ended(
            conn, rid, RemediationState.FAILED.value, steps, now, self.config.targets
        )

    def action_context(
        self,
        rid: str,
        step: dict[str, Any],
        params: Params,
        briefing: Briefing | None = None,
    ) -> ActionContext:
        """Everything an action may use for one call of `step`."""
        target = self.config.targets.get(params.target)
        if target is None:
            raise ConfigError(f"no target named {params.target!r} is configured")
        action = registry.CATALOG[step["action"]]
        if target.type not in action.target_types:
            raise ConfigError(
                f"{action.name} cannot act on target {params.target!r} of type {target.type}"
            )
        return ActionContext(
            remediation_id=rid,
            step_id=step["key"],
            idempotency_key=step["idempotency_key"],
            target_name=params.target,
            target=target,
            expires_at=step["expires_at"],
            containments=StoreContainments(
                self.db, self.cache, actor=ENGINE, remediation_id=rid, target=params.target
            ),
            tasks=StoreTasks(self.db, remediation_id=rid, step_key=step["key"]),
            http=self.drivers.http(params.target),
            driver=self.drivers.get(params.target),
            briefing=briefing,
            memo=StoreMemos(self.db, key=step["idempotency_key"]),
        )

    # -- verify ----------------------------------------------------------------------------

    async def _verify(self, run: _Run) -> None:
        """Check every verifiable effect still in place, then end the remediation."""
        rid = run.job.remediation_id
        # A person may have undone a step while the others ran: judge what is there now.
        run.steps = await self.db.run_async(lambda conn: remediations.steps(conn, rid))
        problems = []
        now = _now()
        undone = False
        early = any(
            s["state"] == StepState.UNDONE.value
            and (s["expires_at"] is None or s["expires_at"] > now)
            for s in run.steps
        )
        for step in run.steps:
            action = registry.CATALOG.get(step["action"])
            # An effect whose expiry has come is not expected to be in force any more.
            lapsed = step["expires_at"] is not None and step["expires_at"] <= now
            undone = undone or step["state"] == StepState.UNDONE.value or lapsed
            if lapsed:
                continue
            if (
                action is None
                or not action.verifiable
                or step["state"] != StepState.SUCCEEDED.value
            ):
                continue
            instance = action()
            params = instance.params.model_validate(step["params"])
            result = ActionResult.model_validate(step["result"])
            try:
                ctx = self.action_context(run.job.remediation_id, step, params)
                ok, reason = await instance.verify(params, result, ctx), "not in effect"
            except (ActionError, ConfigError) as exc:
                ok, reason = False, str(exc)
            if not ok:
                problems.append(f"{step['key']}: {reason}")
        held = any(
            s["state"] == StepState.SUCCEEDED.value
            and s["expires_at"] is not None
            and s["expires_at"] > now
            for s in run.steps
        )
        # Steps that failed with `on_failure: continue`: the remediation still achieved
        # something if any other step succeeded, and says which steps it passed over.
        failed = [s["key"] for s in run.steps if s["state"] == _FAILED]
        achieved = any(s["state"] in (_SUCCEEDED, StepState.UNDONE.value) for s in run.steps)
        if failed and not achieved:
            target = RemediationState.FAILED
            reason = f"no step succeeded; failed: {', '.join(failed)}"
        elif problems:
            target, reason = RemediationState.FAILED, "verification failed: " + "; ".join(problems)
        elif early and not held:
            target = RemediationState.ROLLED_BACK
            reason = "a containment was undone early at a person's request"
        elif undone and not held:
            # The expiry came before the last step finished: nothing is held any more.
            target, reason = RemediationState.EXPIRED, "every temporary containment already expired"
        else:
            target, reason = RemediationState.SUCCEEDED, "verified"
        if failed and achieved:
            reason += f"; passed over failed steps: {', '.join(failed)} (on_failure: continue)"

        def finish(conn: Connection) -> None:
            rid, now = run.job.remediation_id, _now()
            if not jobs.hold(conn, run.job, now + self.lease):
                return
            verdict = (target.value, reason, now)
            if run.remediation["state"] == _RUNNING:
                began = (_VERIFYING, "every step ran", run.ran_at or now)
                remediations.move(conn, rid, _RUNNING, [began, verdict], actor=ENGINE)
            else:
                remediations.move(conn, rid, _VERIFYING, [verdict], actor=ENGINE)
            closing.enqueue_if_ended(conn, rid, target.value, run.steps, now, self.config.targets)
            jobs.finish(conn, run.job.id)

        await self.db.run_async(finish)

    # -- undo ------------------------------------------------------------------------------

    async def call_undo(self, rid: str, step: dict[str, Any]) -> tuple[str, float | None, bool]:
        """Undo a step's effect: (error or "", retry_after, whether the error is transient)."""
        action = registry.get(step["action"])
        params = action.params.model_validate(step["params"])
        result = ActionResult.model_validate(step["result"])
        try:
            ctx = self.action_context(rid, step, params)
            await action.undo(params, result, ctx)
        except TransientError as exc:
            return str(exc), exc.retry_after, True
        except (ActionError, ConfigError) as exc:
            return str(exc), None, False
        return "", None, False


def _task_already_done(conn: Connection, result: ActionResult) -> bool:
    task_id = result.output.get("task_id")
    if not isinstance(task_id, str):
        return False
    task = tasks.get(conn, task_id)
    return task is not None and task["status"] == "done"


def _once(error: str, retry: bool) -> str:
    if retry:
        return error
    return (
        f"{error}; it may have reached the target and this action is not idempotent, "
        "so it is not sent again"
    )


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'with'}: {e['msg']}" for e in exc.errors()
    )
