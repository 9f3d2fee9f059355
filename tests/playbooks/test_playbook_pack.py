"""The default pack: loads, lints clean, and handles every Defender for APIs finding type."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from clampdown.actions.contract import Action
from clampdown.model import ApiRef, Finding, FindingContext, Kind, Mode, Severity
from clampdown.playbooks import Matcher, Playbook, lint, load_default_pack
from clampdown.playbooks.schema import CONTAINMENT_ACTIONS
from clampdown.targets.settings import BuiltinTarget

MakeFinding = Callable[..., Finding]

ALERTS = {
    # alert type: (playbook with an IP, severity Defender gives it)
    "API_AccessFromSuspiciousIP": ("block-suspicious-ip", Severity.HIGH),
    "API_AccessFromTorExitNode": ("block-tor-and-exploit-user-agent", Severity.MEDIUM),
    "API_AccessFromSuspiciousUserAgent": ("block-tor-and-exploit-user-agent", Severity.MEDIUM),
    "API_SpikeInAPITraffic": ("throttle-ip-on-api", Severity.MEDIUM),
    "API_SpikeInPayload": ("throttle-ip-on-api", Severity.MEDIUM),
    "API_SpikeInLatency": ("throttle-ip-on-api", Severity.MEDIUM),
    "API_ParameterEnumeration": ("throttle-ip-on-api", Severity.MEDIUM),
    "API_SprayInRequests": ("throttle-ip-across-apis", Severity.MEDIUM),
    "API_PopulationSpikeInAPITraffic": ("investigate-population-spike", Severity.MEDIUM),
    "API_DistributedParameterEnumeration": (
        "investigate-distributed-enumeration",
        Severity.MEDIUM,
    ),
    "API_UnseenParamType": ("investigate-unseen-parameters", Severity.MEDIUM),
    "API_UnseenParam": ("investigate-unseen-parameters", Severity.MEDIUM),
}
SINGLE_IP = [t for t, (name, _) in ALERTS.items() if name.startswith(("block", "throttle"))]
RECOMMENDATIONS = {
    "Recommendation_UnauthenticatedEndpoint": "secure-unauthenticated-endpoint",
    "Recommendation_UnusedEndpoint": "retire-unused-endpoint",
    "Recommendation_SubscriptionScopedToAllApis": "scope-subscription-to-apis",
    "Recommendation_8b4d2b1e-1234-4d7a-9c1e-0f5b1c2d3e4f": "review-api-recommendation",
}


@pytest.fixture(scope="module")
def pack() -> list[Playbook]:
    return load_default_pack()


@pytest.fixture(scope="module")
def matcher(pack: list[Playbook]) -> Matcher:
    return Matcher(pack)


def names(matcher: Matcher, finding: Finding) -> list[str]:
    result = matcher.evaluate(finding)
    assert result.errors == []
    return [p.name for p in result.playbooks]


def test_pack_loads_with_unique_names(pack: list[Playbook]) -> None:
    assert len({p.name for p in pack}) == len(pack) >= 10
    assert all(p.path.startswith("clampdown/playbooks/pack/") for p in pack)


def test_pack_lints_clean_with_only_the_builtin_target(actions: dict[str, type[Action]]) -> None:
    problems = lint([], actions=actions, targets={"builtin": BuiltinTarget()}, default_pack=True)
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize("alert_type", ALERTS)
def test_each_alert_type_with_an_ip(
    matcher: Matcher, make_finding: MakeFinding, alert_type: str
) -> None:
    expected, severity = ALERTS[alert_type]
    finding = make_finding(type=alert_type, severity=severity)
    assert names(matcher, finding) == [expected]


@pytest.mark.parametrize("alert_type", ALERTS)
def test_each_alert_type_without_an_ip(
    matcher: Matcher, make_finding: MakeFinding, alert_type: str
) -> None:
    expected, severity = ALERTS[alert_type]
    finding = make_finding(type=alert_type, severity=severity, ips=[], apis=[])
    if alert_type in SINGLE_IP:
        expected = "investigate-alert-without-ip"
    assert names(matcher, finding) == [expected]


@pytest.mark.parametrize("recommendation", RECOMMENDATIONS)
def test_each_recommendation(
    matcher: Matcher, make_finding: MakeFinding, recommendation: str
) -> None:
    finding = make_finding(
        kind=Kind.RECOMMENDATION, type=recommendation, severity=Severity.LOW, ips=[]
    )
    assert names(matcher, finding) == [RECOMMENDATIONS[recommendation]]


def test_unknown_alert_types_match_nothing(matcher: Matcher, make_finding: MakeFinding) -> None:
    assert names(matcher, make_finding(type="API_SomethingNew")) == []
    recommendation_as_alert = make_finding(type="Recommendation_UnusedEndpoint")
    assert names(matcher, recommendation_as_alert) == []


def test_blocking_and_throttling_need_an_ip(pack: list[Playbook]) -> None:
    for playbook in pack:
        uses = {step.uses for step in playbook.steps}
        if uses & {"gateway.block", "gateway.throttle"}:
            assert playbook.match.when is not None, playbook.name
            assert "size(finding.ips) > 0" in playbook.match.when.source, playbook.name
            assert playbook.mode is Mode.AUTOMATIC
            containing = [s for s in playbook.steps if s.uses in CONTAINMENT_ACTIONS]
            assert all(s.expires is not None for s in containing), playbook.name


def test_modes(pack: list[Playbook]) -> None:
    modes = {p.name: p.mode for p in pack}
    assert modes["retire-unused-endpoint"] is Mode.APPROVAL
    assert modes["secure-unauthenticated-endpoint"] is Mode.GUIDED
    assert modes["investigate-population-spike"] is Mode.GUIDED


def _render_all(playbook: Playbook, finding: Finding) -> dict[str, dict[str, Any]]:
    rendered = {}
    statuses: dict[str, Any] = {}
    for step in playbook.steps:
        context = playbook.context(finding, statuses)
        if step.should_run(context):
            rendered[step.id] = step.render(context)
        statuses[step.id] = {"status": "succeeded", "output": {}}
    return rendered


@pytest.mark.parametrize("finding_type", [*ALERTS, *RECOMMENDATIONS])
@pytest.mark.parametrize("with_entities", [True, False])
def test_rendered_parameters_are_valid(
    matcher: Matcher,
    make_finding: MakeFinding,
    actions: dict[str, type[Action]],
    finding_type: str,
    with_entities: bool,
) -> None:
    """Every step of the matched playbook renders to parameters its action accepts."""
    kind = Kind.RECOMMENDATION if finding_type.startswith("Recommendation_") else Kind.ALERT
    entities: dict[str, Any] = {} if with_entities else {"ips": [], "apis": [], "url": None}
    finding = make_finding(type=finding_type, kind=kind, **entities)
    [playbook] = matcher.match(finding)
    rendered = _render_all(playbook, finding)
    assert rendered
    for step in playbook.steps:
        if step.id in rendered:
            actions[step.uses].params.model_validate(rendered[step.id])


def test_block_scope_follows_the_api(matcher: Matcher, make_finding: MakeFinding) -> None:
    api = ApiRef(id="/subscriptions/1/apis/orders")
    finding = make_finding(type="API_AccessFromTorExitNode", apis=[api])
    [playbook] = matcher.match(finding)
    assert _render_all(playbook, finding)["block"]["scope"] == api.id
    no_api = make_finding(type="API_AccessFromTorExitNode", apis=[])
    assert _render_all(playbook, no_api)["block"]["scope"] == "*"
    suspicious = make_finding(type="API_AccessFromSuspiciousIP", apis=[api])
    [gateway_wide] = matcher.match(suspicious)
    assert _render_all(gateway_wide, suspicious)["block"]["scope"] == "*"


def test_throttles_group_by_type_and_ip(matcher: Matcher, make_finding: MakeFinding) -> None:
    finding = make_finding(type="API_SpikeInPayload", ips=["198.51.100.9"])
    [playbook] = matcher.match(finding)
    assert playbook.group_key(finding) == "API_SpikeInPayload/198.51.100.9"
    assert playbook.group_window.total_seconds() == 3600


def test_unused_endpoint_without_api_only_opens_the_task(
    matcher: Matcher, make_finding: MakeFinding
) -> None:
    finding = make_finding(kind=Kind.RECOMMENDATION, type="Recommendation_UnusedEndpoint", apis=[])
    [playbook] = matcher.match(finding)
    assert list(_render_all(playbook, finding)) == ["remove"]


def test_every_playbook_tells_the_owner_only_on_their_own_channel(pack: list[Playbook]) -> None:
    """One notify step per playbook, run only when an ownership rule gave a channel, sent to it."""
    for playbook in pack:
        [tell] = [s for s in playbook.steps if s.uses == "notify.send"]
        assert tell.id == "tell-owner", playbook.name
        assert tell.if_ is not None
        assert tell.if_.source == 'finding.channel != ""'
        assert tell.with_["target"] == "${{ finding.channel }}", playbook.name
        assert tell.on_failure.value == "continue", playbook.name


@pytest.mark.parametrize("finding_type", [*ALERTS, *RECOMMENDATIONS])
def test_without_a_channel_no_message_is_planned(
    matcher: Matcher, make_finding: MakeFinding, finding_type: str
) -> None:
    kind = Kind.RECOMMENDATION if finding_type.startswith("Recommendation_") else Kind.ALERT
    finding = make_finding(type=finding_type, kind=kind)
    [playbook] = matcher.match(finding)
    assert "tell-owner" not in _render_all(playbook, finding)


def test_sensitive_apis_get_the_longer_block(matcher: Matcher, make_finding: MakeFinding) -> None:
    sensitive = make_finding(context=FindingContext(owner="payments", sensitivity="critical"))
    [playbook] = matcher.match(sensitive)
    assert set(_render_all(playbook, sensitive)) == {"block-sensitive"}
    steps = {s.id: s for s in playbook.steps}
    assert steps["block-sensitive"].expires == timedelta(hours=24)
    assert steps["block"].expires == timedelta(hours=1)
    plain = make_finding(context=FindingContext(owner="payments", sensitivity="medium"))
    assert set(_render_all(playbook, plain)) == {"block"}
