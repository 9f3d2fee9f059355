"""Executing jobs: run a step, undo it on expiry, verify a remediation's effects.

Every job reads its state fresh from the database, so a job re-run after a crash sees
what was recorded before it. A step is marked `running` (committed) before its action is
called: finding a step still `running` means a call may have reached the target, and a
non-idempotent action is then not called again (at most once), but failed visibly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import aiohttp
import orjson
import structlog
from pydantic import ValidationError

from clampdown.actions import registry
from clampdown.actions.contract import Action, ActionContext, ActionResult, Params
from clampdown.actions.http import TargetHttp
from clampdown.config import Config
from clampdown.engine import planner
from clampdown.engine.decisions import DecisionCache
from clampdown.engine.ports import StoreContainments, StoreTasks
from clampdown.engine.retry import backoff
from clampdown.errors import (
    ActionError,
    ConfigError,
    ExpressionError,
    PermanentError,
    PreconditionError,
    TransientError,
)
from clampdown.model import Finding, RemediationState, StepState
from clampdown.playbooks.expressions import Expression, compile_value, render_value
from clampdown.store import findings, jobs, remediations
from clampdown.store.db import Database
from clampdown.store.jobs import Job

log = structlog.get_logger("clampdown.engine")

ENGINE = "engine"


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


@dataclass
class _Loaded:
    remediation: dict[str, Any]
    step: dict[str, Any] | None
    steps: list[dict[str, Any]]
    finding: Finding


def _now() -> datetime:
    return datetime.now(UTC)


class Executor:
    """Runs claimed jobs; one instance per worker process."""

    def __init__(
        self,
        db: Database,
        config: Config,
        cache: DecisionCache,
        session: aiohttp.ClientSession,
        *,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.cache = cache
        self.session = session
        self.wake = wake

    async def run(self, job: Job) -> None:
        """Do one job; failures are recorded, never raised."""
        try:
            if job.kind == planner.RUN_STEP:
                await self._run_step(job)
            elif job.kind == planner.UNDO_STEP:
                await self._undo_step(job)
            elif job.kind == planner.VERIFY:
                await self._verify(job)
            else:
                await asyncio.to_thread(self._finish_job, job)
        except Exception:
            # A bug must not kill the worker; the lease lapses and the job is tried again.
            log.exception("job crashed", job=job.id, kind=job.kind, remediation=job.remediation_id)

    # -- loading and small writes ------------------------------------------------------

    def _load(self, job: Job) -> _Loaded | None:
        with self.db.read() as conn:
            rem = remediations.get(conn, job.remediation_id)
            if rem is None:
                return None
            steps = remediations.steps(conn, job.remediation_id)
            got = findings.get(conn, rem["finding_id"])
        if got is None:
            return None
        step = next((s for s in steps if s["key"] == job.step_key), None)
        return _Loaded(rem, step, steps, got[0])

    def _finish_job(self, job: Job) -> None:
        with self.db.write() as conn:
            jobs.finish(conn, job.id)

    def _context(self, loaded: _Loaded) -> dict[str, Any]:
        return {
            "finding": loaded.finding.expression_view(),
            "steps": {
                s["key"]: {"status": s["state"], "output": (s["result"] or {}).get("output", {})}
                for s in loaded.steps
            },
            "playbook": {"name": loaded.remediation["playbook"]},
        }

    def _action_context(self, rid: str, step: dict[str, Any], params: Params) -> ActionContext:
        target = self.config.targets.get(params.target)
        if target is None:
            raise PreconditionError(f"no target named {params.target!r} is configured")
        action = registry.CATALOG[step["action"]]
        if target.type not in action.target_types:
            raise PreconditionError(
                f"{action.name} cannot act on target {params.target!r} of type {target.type}"
            )
        url = "" if target.type == "builtin" else _safe_url(target.resolve_url, params.target)
        return ActionContext(
            remediation_id=rid,
            step_id=step["key"],
            idempotency_key=step["idempotency_key"],
            target_name=params.target,
            target=target,
            expires_at=step["expires_at"],
            containments=StoreContainments(self.db, self.cache, actor=ENGINE, remediation_id=rid),
            tasks=StoreTasks(self.db, remediation_id=rid, step_key=step["key"]),
            http=TargetHttp(self.session, url, params.target),
        )

    # -- run_step ----------------------------------------------------------------------

    async def _run_step(self, job: Job) -> None:
        loaded = await asyncio.to_thread(self._load, job)
        if (
            loaded is None
            or loaded.step is None
            or loaded.remediation["state"] != RemediationState.RUNNING.value
            or StepState(loaded.step["state"]).final
            or loaded.step["state"] == StepState.WAITING.value
        ):
            await asyncio.to_thread(self._finish_job, job)
            return
        step, rid = loaded.step, job.remediation_id
        action = registry.get(step["action"]) if step["action"] in registry.CATALOG else None
        if action is None:
            await self._fail(job, step, f"unknown action {step['action']!r}")
            return
        if step["state"] == StepState.RUNNING.value and not action.idempotent:
            await self._fail(
                job,
                step,
                "the worker stopped during this call; it may or may not have reached the "
                "target, and this action is not idempotent, so it is not sent again",
            )
            return
        ctx = self._context(loaded)
        try:
            condition = step["spec"].get("if")
            if condition and not _condition(condition).test(ctx):
                await asyncio.to_thread(self._skip, job, step, f"if: {condition} was false")
                return
            params = action.params.model_validate(_render(step["spec"], ctx))
            expires = step["spec"].get("expires")
            step = await asyncio.to_thread(self._start, job, step, params, expires)
            actx = self._action_context(rid, step, params)
        except ExpressionError as exc:
            await self._fail(job, step, f"expression: {exc}")
            return
        except ValidationError as exc:
            await self._fail(job, step, "parameters: " + _validation_text(exc))
            return
        except (ActionError, ConfigError) as exc:
            await self._fail(job, step, str(exc))
            return
        try:
            async with asyncio.timeout(actx.target.timeout + 1):
                result = await action.run(params, actx)
        except TransientError as exc:
            await self._transient(job, step, str(exc), exc.retry_after)
            return
        except TimeoutError:
            await self._transient(job, step, "timed out", None)
            return
        except (PermanentError, PreconditionError, ConfigError) as exc:
            await self._fail(job, step, str(exc))
            return
        await asyncio.to_thread(self._succeeded, job, step, action, result)

    def _start(
        self, job: Job, step: dict[str, Any], params: Params, expires: float | None
    ) -> dict[str, Any]:
        now = _now()
        expires_at = step["expires_at"] or (now + timedelta(seconds=expires) if expires else None)
        values = {
            "state": StepState.RUNNING.value,
            "attempts": step["attempts"] + 1,
            "params": params.model_dump(mode="json"),
            "started_at": step["started_at"] or now,
            "expires_at": expires_at,
        }
        with self.db.write() as conn:
            remediations.update_step(conn, job.remediation_id, step["key"], **values)
            if step["state"] != StepState.RUNNING.value:
                remediations.record(
                    conn,
                    job.remediation_id,
                    step["key"],
                    step["state"],
                    StepState.RUNNING.value,
                    reason=f"attempt {values['attempts']}",
                    actor=ENGINE,
                    now=now,
                )
        return {**step, **values}

    def _skip(self, job: Job, step: dict[str, Any], reason: str) -> None:
        now = _now()
        with self.db.write() as conn:
            remediations.update_step(
                conn,
                job.remediation_id,
                step["key"],
                state=StepState.SKIPPED.value,
                finished_at=now,
            )
            remediations.record(
                conn,
                job.remediation_id,
                step["key"],
                step["state"],
                StepState.SKIPPED.value,
                reason=reason,
                actor=ENGINE,
                now=now,
            )
            jobs.finish(conn, job.id)
            planner.advance(conn, job.remediation_id, now)

    def _succeeded(
        self, job: Job, step: dict[str, Any], action: Action, result: ActionResult
    ) -> None:
        now = _now()
        state = StepState.WAITING if result.waiting else StepState.SUCCEEDED
        with self.db.write() as conn:
            remediations.update_step(
                conn,
                job.remediation_id,
                step["key"],
                state=state.value,
                result=result.model_dump(mode="json"),
                error=None,
                finished_at=None if result.waiting else now,
            )
            remediations.record(
                conn,
                job.remediation_id,
                step["key"],
                StepState.RUNNING.value,
                state.value,
                reason=result.summary or "done",
                actor=ENGINE,
                now=now,
            )
            jobs.finish(conn, job.id)
            if action.reversible and step["expires_at"] is not None:
                jobs.enqueue(
                    conn,
                    planner.UNDO_STEP,
                    job.remediation_id,
                    step["key"],
                    due_at=step["expires_at"],
                    now=now,
                )
            if not result.waiting:
                planner.advance(conn, job.remediation_id, now)
        self._poke()

    async def _transient(
        self, job: Job, step: dict[str, Any], error: str, retry_after: float | None
    ) -> None:
        engine = self.config.engine
        if step["attempts"] >= engine.max_attempts:
            await self._fail(job, step, f"gave up after {step['attempts']} attempts: {error}")
            return
        delay = backoff(
            step["attempts"],
            initial=engine.backoff_initial,
            maximum=engine.backoff_max,
            retry_after=retry_after,
        )

        def reschedule() -> None:
            now = _now()
            with self.db.write() as conn:
                remediations.update_step(
                    conn,
                    job.remediation_id,
                    step["key"],
                    state=StepState.PENDING.value,
                    error=error,
                )
                remediations.record(
                    conn,
                    job.remediation_id,
                    step["key"],
                    StepState.RUNNING.value,
                    StepState.PENDING.value,
                    reason=f"{error}; retry in {delay:.2f}s",
                    actor=ENGINE,
                    now=now,
                )
                jobs.retry_at(conn, job.id, now + timedelta(seconds=delay))

        await asyncio.to_thread(reschedule)
        self._poke()

    async def _fail(self, job: Job, step: dict[str, Any], error: str) -> None:
        log.warning("step failed", remediation=job.remediation_id, step=step["key"], error=error)

        def fail() -> None:
            now = _now()
            with self.db.write() as conn:
                remediations.update_step(
                    conn,
                    job.remediation_id,
                    step["key"],
                    state=StepState.FAILED.value,
                    error=error,
                    finished_at=now,
                )
                remediations.record(
                    conn,
                    job.remediation_id,
                    step["key"],
                    step["state"],
                    StepState.FAILED.value,
                    reason=error,
                    actor=ENGINE,
                    now=now,
                )
                jobs.finish(conn, job.id)
                _stop_remaining(conn, job.remediation_id, now)
                remediations.set_state(
                    conn,
                    job.remediation_id,
                    from_state=RemediationState.RUNNING.value,
                    to_state=RemediationState.FAILED.value,
                    reason=f"step {step['key']} failed: {error}",
                    actor=ENGINE,
                    now=now,
                )

        await asyncio.to_thread(fail)

    def _poke(self) -> None:
        if self.wake is not None:
            self.wake.set()

    # -- verify ------------------------------------------------------------------------

    async def _verify(self, job: Job) -> None:
        loaded = await asyncio.to_thread(self._load, job)
        if loaded is None or loaded.remediation["state"] != RemediationState.VERIFYING.value:
            await asyncio.to_thread(self._finish_job, job)
            return
        problems = []
        for step in loaded.steps:
            action = registry.CATALOG.get(step["action"])
            if action is None or not action.verifiable:
                continue
            if step["state"] != StepState.SUCCEEDED.value:
                continue
            instance = action()
            params = instance.params.model_validate(step["params"])
            result = ActionResult.model_validate(step["result"])
            try:
                ok = await instance.verify(
                    params, result, self._action_context(job.remediation_id, step, params)
                )
            except ActionError as exc:
                ok, reason = False, str(exc)
            else:
                reason = "not in effect"
            if not ok:
                problems.append(f"{step['key']}: {reason}")

        def finish() -> None:
            now = _now()
            target = RemediationState.FAILED if problems else RemediationState.SUCCEEDED
            reason = "verification failed: " + "; ".join(problems) if problems else "verified"
            with self.db.write() as conn:
                remediations.set_state(
                    conn,
                    job.remediation_id,
                    from_state=RemediationState.VERIFYING.value,
                    to_state=target.value,
                    reason=reason,
                    actor=ENGINE,
                    now=now,
                )
                jobs.finish(conn, job.id)

        await asyncio.to_thread(finish)

    # -- undo on expiry ----------------------------------------------------------------

    async def _undo_step(self, job: Job) -> None:
        loaded = await asyncio.to_thread(self._load, job)
        step = loaded.step if loaded else None
        if loaded is None or step is None or step["state"] != StepState.SUCCEEDED.value:
            await asyncio.to_thread(self._finish_job, job)
            return
        action = registry.get(step["action"])
        params = action.params.model_validate(step["params"])
        result = ActionResult.model_validate(step["result"])
        try:
            await action.undo(
                params, result, self._action_context(job.remediation_id, step, params)
            )
        except TransientError as exc:
            delay = backoff(
                2,
                initial=self.config.engine.backoff_initial,
                maximum=self.config.engine.backoff_max,
                retry_after=exc.retry_after,
            )

            def later() -> None:
                with self.db.write() as conn:
                    jobs.retry_at(conn, job.id, _now() + timedelta(seconds=delay))

            await asyncio.to_thread(later)
            return
        except ActionError as exc:
            error = str(exc)
        else:
            error = ""
        await asyncio.to_thread(self._undone, job, loaded, step, error)

    def _undone(self, job: Job, loaded: _Loaded, step: dict[str, Any], error: str) -> None:
        now = _now()
        rid = job.remediation_id
        with self.db.write() as conn:
            jobs.finish(conn, job.id)
            if error:
                remediations.update_step(conn, rid, step["key"], error=f"undo failed: {error}")
                remediations.record(
                    conn,
                    rid,
                    step["key"],
                    step["state"],
                    step["state"],
                    reason=f"expiry undo failed: {error}",
                    actor=ENGINE,
                    now=now,
                )
                return
            remediations.update_step(conn, rid, step["key"], state=StepState.UNDONE.value)
            remediations.record(
                conn,
                rid,
                step["key"],
                StepState.SUCCEEDED.value,
                StepState.UNDONE.value,
                reason="expired: undone on schedule",
                actor=ENGINE,
                now=now,
            )
            still_held = [
                s
                for s in remediations.steps(conn, rid)
                if s["state"] == StepState.SUCCEEDED.value and s["expires_at"] is not None
            ]
            if not still_held:
                remediations.set_state(
                    conn,
                    rid,
                    from_state=RemediationState.SUCCEEDED.value,
                    to_state=RemediationState.EXPIRED.value,
                    reason="every temporary containment expired and was undone",
                    actor=ENGINE,
                    now=now,
                )


def _stop_remaining(conn: Any, rid: str, now: datetime) -> None:
    for s in remediations.steps(conn, rid):
        if s["state"] == StepState.PENDING.value:
            remediations.update_step(conn, rid, s["key"], state=StepState.SKIPPED.value)
            remediations.record(
                conn,
                rid,
                s["key"],
                StepState.PENDING.value,
                StepState.SKIPPED.value,
                reason="an earlier step failed",
                actor=ENGINE,
                now=now,
            )
    jobs.cancel_for(conn, rid, planner.RUN_STEP)


def _safe_url(resolve: Any, target: str) -> str:
    try:
        return str(resolve())
    except ConfigError as exc:
        raise PreconditionError(f"target {target}: {exc}") from exc


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'with'}: {e['msg']}" for e in exc.errors()
    )
