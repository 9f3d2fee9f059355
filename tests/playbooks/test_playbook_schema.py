"""Durations, severity conditions and field rules of the document schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from clampdown.durations import parse_duration
from clampdown.model import Severity
from clampdown.playbooks import SeverityThreshold
from clampdown.playbooks.schema import PlaybookDocument


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d4h5m6s", timedelta(days=2, hours=4, minutes=5, seconds=6)),
        (90, timedelta(seconds=90)),
        ("90", timedelta(seconds=90)),
        (0, timedelta(0)),
    ],
)
def test_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "1x", "h", "1m1h", "1.5h", "-5", -5, True, 1.5, None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "admitted"),
    [
        (">= medium", {"medium", "high", "critical"}),
        ("high", {"high", "critical"}),
        ("> high", {"critical"}),
        ("== low", {"low"}),
        ("<= low", {"informational", "low"}),
        ("< info", set()),
        ("> critical", set()),
        ("  >=Medium ", {"medium", "high", "critical"}),
    ],
)
def test_severity_thresholds(text: str, admitted: set[str]) -> None:
    threshold = SeverityThreshold.parse(text)
    assert {s.value for s in Severity if threshold.admits(s)} == admitted


@pytest.mark.parametrize("text", ["=> high", "!= low", "severe", ">= ", ""])
def test_bad_severity_thresholds(text: str) -> None:
    with pytest.raises(ValueError, match="severity"):
        SeverityThreshold.parse(text)


def document(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "match": {},
        "mode": "automatic",
        "steps": [{"id": "a", "uses": "task.create", "with": {"target": "builtin"}}],
    }
    base.update(spec)
    return {
        "apiVersion": "clampdown/v1",
        "kind": "Playbook",
        "metadata": {"name": "pb"},
        "spec": base,
    }


def test_defaults() -> None:
    parsed = PlaybookDocument.model_validate(document())
    assert parsed.spec.match.types == ["*"]
    assert parsed.spec.priority == 0
    assert parsed.spec.group.by.source == "${{ finding.fingerprint }}"
    assert parsed.spec.group.window == timedelta(0)


def test_single_pattern_is_a_list() -> None:
    parsed = PlaybookDocument.model_validate(document(match={"types": "API_Spike*"}))
    assert parsed.spec.match.types == ["API_Spike*"]


@pytest.mark.parametrize("when", [True, False, "true"])
def test_boolean_when_is_accepted(when: object) -> None:
    parsed = PlaybookDocument.model_validate(document(match={"when": when}))
    assert parsed.spec.match.when is not None
    assert parsed.spec.match.when.is_constant


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("1 + 1", "must give true or false"),
        ("1 / 0 == 1", "always fails"),
        ("steps.a.status == 'x'", "unknown variable 'steps'"),
        (3, "must be a CEL expression"),
    ],
)
def test_bad_when(when: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlaybookDocument.model_validate(document(match={"when": when}))


@pytest.mark.parametrize(
    "spec",
    [
        {"steps": []},
        {"mode": "sometimes"},
        {"priority": "high"},
        {"priority": True},
        {"surprise": 1},
        {"group": {"window": "soon"}},
        {"steps": [{"id": "Bad Id", "uses": "task.create"}]},
        {"steps": [{"id": "a", "uses": "task.create", "expires": 0}]},
        {"steps": [{"id": "a", "uses": "task.create", "with": ["x"]}]},
        {"steps": [{"id": "a", "uses": "x"}, {"id": "a", "uses": "y"}]},
    ],
)
def test_invalid_specs(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PlaybookDocument.model_validate(document(**spec))


def test_step_with_block_is_compiled() -> None:
    step = {"id": "a", "uses": "task.create", "with": {"target": "b", "title": "${{ finding.ip }}"}}
    parsed = PlaybookDocument.model_validate(document(steps=[step]))
    with_ = parsed.spec.steps[0].with_
    assert with_.raw == step["with"]
    assert with_.compiled["target"] == "b"
    assert with_.compiled["title"].source == "${{ finding.ip }}"
