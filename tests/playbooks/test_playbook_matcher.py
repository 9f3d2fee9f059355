"""Which playbooks match a finding, and in which order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from clampdown.model import Finding, Kind, Severity
from clampdown.playbooks import Matcher, Playbook, load_playbooks

Write = Callable[[str, str], Path]
Yaml = Callable[..., str]
MakeFinding = Callable[..., Finding]


@pytest.fixture
def build(write: Write, playbook_yaml: Yaml) -> Callable[..., Matcher]:
    """A Matcher over playbooks given as name -> (match body, priority)."""

    def build(**playbooks: tuple[str, int]) -> Matcher:
        text = "---\n".join(
            playbook_yaml(name.replace("_", "-"), match=match, priority=priority)
            for name, (match, priority) in playbooks.items()
        )
        return Matcher(load_playbooks([write("pbs.yaml", text)]))

    return build


def names(matcher: Matcher, finding: Finding) -> list[str]:
    return [p.name for p in matcher.match(finding)]


def test_priority_then_name(build: Callable[..., Matcher], finding: Finding) -> None:
    matcher = build(
        low=("types: ['*']", -1),
        b=("types: ['*']", 0),
        a=("types: [API_AccessFromSuspiciousIP]", 0),
        high=("types: ['API_*']", 10),
    )
    assert names(matcher, finding) == ["high", "a", "b", "low"]
    assert len(matcher) == 4


def test_exact_types_and_globs(build: Callable[..., Matcher], make_finding: MakeFinding) -> None:
    matcher = build(
        exact=("types: [API_SpikeInAPITraffic]", 0),
        spike=("types: ['API_Spike*']", 0),
        single=("types: ['API_Spike?nAPITraffic']", 0),
        charset=("types: ['API_[ST]*']", 0),
        lower=("types: ['api_*']", 0),
        other=("types: [API_Other, 'X*']", 0),
    )
    assert names(matcher, make_finding(type="API_SpikeInAPITraffic")) == [
        "charset",
        "exact",
        "single",
        "spike",
    ]
    assert names(matcher, make_finding(type="API_SpikeInPayload")) == ["charset", "spike"]
    assert names(matcher, make_finding(type="API_Other")) == ["other"]
    assert names(matcher, make_finding(type="XYZ")) == ["other"]
    assert names(matcher, make_finding(type="")) == []
    # Cached answers are the same answers.
    assert names(matcher, make_finding(type="API_SpikeInPayload")) == ["charset", "spike"]


def test_long_types_are_fine(build: Callable[..., Matcher], make_finding: MakeFinding) -> None:
    matcher = build(star=("types: ['A*']", 0))
    assert names(matcher, make_finding(type="A" * 100_000)) == ["star"]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.INFORMATIONAL, ["at-most-low"]),
        (Severity.LOW, ["at-most-low", "only-low"]),
        (Severity.MEDIUM, ["medium-up"]),
        (Severity.HIGH, ["bare-high", "medium-up"]),
        (Severity.CRITICAL, ["above-high", "bare-high", "medium-up"]),
    ],
)
def test_severity_thresholds(
    build: Callable[..., Matcher],
    make_finding: MakeFinding,
    severity: Severity,
    expected: list[str],
) -> None:
    matcher = build(
        medium_up=("severity: '>= medium'", 0),
        bare_high=("severity: high", 0),
        above_high=("severity: '> high'", 0),
        only_low=("severity: '== low'", 0),
        at_most_low=("severity: '<= low'", 0),
    )
    assert names(matcher, make_finding(severity=severity)) == expected


def test_kinds_and_sources(build: Callable[..., Matcher], make_finding: MakeFinding) -> None:
    matcher = build(
        alerts=("kinds: [alert]", 0),
        recs=("kinds: recommendation", 0),
        defender=("sources: [defender]", 0),
        ocsf=("sources: ['ocsf*', 'generic']", 0),
    )
    assert names(matcher, make_finding()) == ["alerts", "defender"]
    rec = make_finding(kind=Kind.RECOMMENDATION, source="ocsf-1")
    assert names(matcher, rec) == ["ocsf", "recs"]
    assert names(matcher, make_finding(source="generic")) == ["alerts", "ocsf"]


def test_when(build: Callable[..., Matcher], make_finding: MakeFinding) -> None:
    matcher = build(
        has_ip=("when: size(finding.ips) > 0", 0),
        no_ip=("when: size(finding.ips) == 0", 0),
        named=("when: playbook.name == 'named' && finding.ip.startsWith('203.')", 0),
        never=("when: false", 0),
    )
    assert names(matcher, make_finding()) == ["has-ip", "named"]
    assert names(matcher, make_finding(ips=[])) == ["no-ip"]


def test_failing_when_is_no_match_and_is_reported(
    build: Callable[..., Matcher], make_finding: MakeFinding
) -> None:
    matcher = build(
        broken=("when: finding.properties['port'] == '22'", 0),
        fine=("types: ['*']", 0),
    )
    finding = make_finding()
    result = matcher.evaluate(finding)
    assert [p.name for p in result.playbooks] == ["fine"]
    [(playbook, error)] = result.errors
    assert playbook.name == "broken"
    assert "pbs.yaml:" in str(error)
    assert "port" in str(error)
    with structlog.testing.capture_logs() as logs:
        assert names(matcher, finding) == ["fine"]
    assert [(e["log_level"], e["playbook"]) for e in logs] == [("warning", "broken")]
    assert names(matcher, make_finding(properties={"port": "22"})) == ["broken", "fine"]


def test_expression_view_is_built_once_and_only_when_needed(
    build: Callable[..., Matcher], monkeypatch: pytest.MonkeyPatch, finding: Finding
) -> None:
    calls = []
    original = Finding.expression_view

    def counting(self: Finding) -> dict[str, Any]:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Finding, "expression_view", counting)
    plain = build(a=("types: ['*']", 0), b=("severity: high", 0))
    assert names(plain, finding) == ["a", "b"]
    assert calls == []
    guarded = build(
        a=("when: size(finding.ips) > 0", 0),
        b=("when: finding.type != ''", 0),
        c=("{kinds: [recommendation], when: 'true'}", 0),
    )
    assert names(guarded, finding) == ["a", "b"]
    assert calls == [1]


def test_index_of_many_playbooks_finds_exact_and_glob_types(
    write: Write, playbook_yaml: Yaml, finding: Finding
) -> None:
    """With 10,000 playbooks the index still returns exactly the right ones (speed: bench/)."""
    [template] = load_playbooks(
        [write("t.yaml", playbook_yaml(match="types: [T]\nwhen: size(finding.ips) > 0"))]
    )
    playbooks: list[Playbook] = []
    for n in range(10_000):
        types = (f"API_Type{n}",) if n % 10 else (f"API_Glob{n}*",)
        match = replace(template.match, types=types)
        playbooks.append(replace(template, name=f"pb-{n}", match=match))
    matcher = Matcher(playbooks)
    findings = [
        finding.model_copy(update={"type": t})
        for t in ("API_Type7", "API_Glob20x", "API_AccessFromSuspiciousIP")
    ]
    assert [names(matcher, f) for f in findings] == [["pb-7"], ["pb-20"], []]
