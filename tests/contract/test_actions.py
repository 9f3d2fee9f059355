"""The contract of every registered action, on every target type it supports.

The matrix comes from the registry: a new action or target type is covered at once, and a
target type without a rig in tests/contract/harness.py fails with "no contract rig for
<type>". Each (action, target type) is checked for: parameters that validate (its example,
rendered against a sample finding) and refusals of unknown and missing ones; a retry with the
same idempotency key having the effect of one call (where the action says a repeat is
harmless); 429, 5xx and vendor refusals classified; no secret in results, errors or logs; and
undo restoring the target's state (where the action is reversible).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from clampdown import logs
from clampdown.actions import registry
from clampdown.actions.contract import Action
from clampdown.errors import PermanentError, PreconditionError, TransientError
from tests.contract.harness import (
    FAULTS,
    LIFTS,
    RIGS,
    Bench,
    Case,
    Rig,
    bench_for,
    cases,
    render_example,
    rig_for,
)

# Contract violations found, kept visible until the action is fixed: (test, case) -> finding.
VIOLATIONS: dict[tuple[str, str], str] = {}


def matrix(test: str, selected: list[Case]) -> list[Any]:
    """`selected` as parameters, a known violation marked as a strict xfail."""
    return [
        pytest.param(
            case,
            id=str(case),
            marks=[pytest.mark.xfail(strict=True, reason=reason)]
            if (reason := VIOLATIONS.get((test, str(case))))
            else [],
        )
        for case in selected
    ]


def can(fault: str) -> Callable[[type[Action], str], bool]:
    """Pairs whose rig can produce `fault` (or that have no rig: they must fail)."""
    return lambda action, kind: kind not in RIGS or fault in RIGS[kind].faults


ALL = cases()
SERVER_LOGGERS = ("mail.log", "aiohttp.server", "aiohttp.access", "aiohttp.web")
REQUIRED = [
    pytest.param(case, field, id=f"{case}-{field}")
    for case in ALL
    for field, info in registry.CATALOG[case.action].params.model_fields.items()
    if info.is_required()
]


@pytest.fixture
def rig(case: Case, tmp_path: Path) -> Rig:
    return rig_for(case.target_type, tmp_path)


@pytest.fixture
def logged(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[[], str]]:
    """Structlog configured as Clampdown does (JSON on stderr), and everything logged so far."""
    saved = structlog.get_config()
    logs.configure(json=True, level=logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    text: list[str] = []

    def read() -> str:
        out, err = capsys.readouterr()
        text.extend([out, err])
        # What the fakes log on their server side is theirs, not Clampdown's.
        ours = [r for r in caplog.records if not r.name.startswith(SERVER_LOGGERS)]
        return "\n".join([*text, *(r.getMessage() for r in ours)])

    yield read
    structlog.configure(**saved)


@pytest.fixture
async def bench(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: Callable[[], str]
) -> AsyncIterator[Bench]:
    """The rig started, and a bench on it; logging set up as Clampdown does."""
    with ExitStack() as stack:
        rig.start(stack)
        async with bench_for(rig, tmp_path, monkeypatch) as ready:
            yield ready


async def prepare(bench: Bench, action: str) -> None:
    """Put the target in the state `action` acts on."""
    bench.rig.prepare(action)
    if action in LIFTS:
        await bench.run(LIFTS[action])


def test_every_target_type_of_the_registry_has_a_rig() -> None:
    types = sorted({kind for action in registry.CATALOG.values() for kind in action.target_types})
    missing = [f"no contract rig for {kind}" for kind in types if kind not in RIGS]
    assert not missing, "\n".join(missing)


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", matrix("example", ALL))
def test_the_example_rendered_against_a_sample_finding_validates(case: Case, rig: Rig) -> None:
    action = registry.CATALOG[case.action]
    rendered = render_example(action, rig.finding())
    params = action.params.model_validate(rendered)
    assert params.target == action.example["target"]


@pytest.mark.parametrize("case", matrix("unknown", ALL))
def test_an_unknown_parameter_is_refused(case: Case, rig: Rig) -> None:
    model = registry.CATALOG[case.action].params
    valid = rig.params(case.action)
    model.model_validate(valid)
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**valid, "no_such_parameter": "x"})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("extra_forbidden", ("no_such_parameter",))
    ]


@pytest.mark.parametrize(("case", "field"), REQUIRED)
def test_a_missing_required_parameter_is_refused_by_name(case: Case, field: str, rig: Rig) -> None:
    values = rig.params(case.action)
    assert field in values, f"the rig's params for {case} lack the required {field!r}"
    del values[field]
    with pytest.raises(ValidationError) as caught:
        registry.CATALOG[case.action].params.model_validate(values)
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("missing", (field,))]
    assert field in str(caught.value)


# --- idempotency -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", matrix("retry", cases(lambda action, kind: action.idempotent_on(kind)))
)
async def test_a_retry_with_the_same_key_has_the_effect_of_one_call(
    case: Case, bench: Bench
) -> None:
    await prepare(bench, case.action)
    before = bench.rig.snapshot(bench)
    step, _, _ = await bench.run(case.action)
    once = bench.rig.snapshot(bench)
    assert once != before, f"{case} changed nothing at the target: the rig does not exercise it"
    await bench.run(case.action, step)
    assert bench.rig.snapshot(bench) == once


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", matrix("throttle", cases(can("throttle"))))
async def test_throttling_is_transient_with_the_servers_retry_after(
    case: Case, bench: Bench
) -> None:
    await prepare(bench, case.action)
    expected = bench.rig.throttle(7)
    error = await bench.failure(case.action)
    assert isinstance(error, TransientError), repr(error)
    assert error.retry_after == expected


@pytest.mark.parametrize("case", matrix("server_error", cases(can("server_error"))))
async def test_a_server_error_is_transient(case: Case, bench: Bench) -> None:
    await prepare(bench, case.action)
    bench.rig.server_error()
    error = await bench.failure(case.action)
    assert isinstance(error, TransientError), repr(error)


@pytest.mark.parametrize("case", matrix("refuse", cases(can("refuse"))))
async def test_a_refusal_is_permanent_and_carries_the_vendors_message(
    case: Case, bench: Bench
) -> None:
    await prepare(bench, case.action)
    message = bench.rig.refuse()
    error = await bench.failure(case.action)
    assert isinstance(error, PermanentError | PreconditionError), repr(error)
    assert message in str(error)


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", matrix("secrets", ALL))
async def test_no_secret_appears_in_results_errors_or_logs(
    case: Case, bench: Bench, logged: Callable[[], str]
) -> None:
    action = registry.CATALOG[case.action]
    rig = bench.rig
    await prepare(bench, case.action)
    step, params, result = await bench.run(case.action)
    if action.verifiable:
        await bench.verify(step, params, result)
    if action.reversible:
        await bench.undo(step, params, result)
    if action.closes_on(case.target_type):
        await bench.close(step, params, result)
    for fault in FAULTS:
        if fault in rig.faults:
            await prepare(bench, case.action)
            getattr(rig, fault)(*((1,) if fault == "throttle" else ()))
            await bench.failure(case.action)
    text = bench.said() + "\n" + logged()
    assert '"run done"' in text, "nothing was logged: the capture is broken"
    assert len(bench.errors) == len(rig.faults)
    leaked = [secret for secret in rig.secrets() if secret in text]
    assert not leaked, f"secrets in results, errors or logs: {leaked}"


# --- undo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", matrix("undo", cases(lambda action, kind: action.reversible)))
async def test_undo_restores_the_state_before_the_call(case: Case, bench: Bench) -> None:
    await prepare(bench, case.action)
    before = bench.rig.snapshot(bench)
    step, params, result = await bench.run(case.action)
    assert bench.rig.snapshot(bench) != before, f"{case} changed nothing at the target"
    await bench.undo(step, params, result)
    assert bench.rig.snapshot(bench) == before


@pytest.mark.parametrize(
    "case",
    matrix(
        "retried_undo",
        cases(lambda action, kind: action.reversible and action.idempotent_on(kind)),
    ),
)
async def test_undo_after_a_retried_call_restores_the_state(case: Case, bench: Bench) -> None:
    """The engine keeps the result of the attempt that succeeded: a retry after the first
    attempt took effect (its answer lost) must still leave undo able to reverse it."""
    await prepare(bench, case.action)
    before = bench.rig.snapshot(bench)
    step, _, _ = await bench.run(case.action)
    _, params, retried = await bench.run(case.action, step)
    await bench.undo(step, params, retried)
    assert bench.rig.snapshot(bench) == before
