"""Ownership rules and the enricher: which rule a finding's API falls under, and what it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clampdown.config import Config, load_config
from clampdown.errors import ConfigError
from clampdown.model import ApiCollection, ApiRef, Finding, FindingContext, Kind, Severity
from clampdown.ownership import Enricher, FactsCache, OwnershipRule, api_key
from clampdown.sources import normalize
from tests.conftest import sample

SERVICE = (
    "/subscriptions/6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10/resourceGroups/rg-payments"
    "/providers/Microsoft.ApiManagement/service/apim-contoso-prod"
)
ORDERS = f"{SERVICE}/apis/orders-api"
GET_ORDER = f"{ORDERS}/operations/getOrder"
USERS = f"{SERVICE}/apis/users-api"


def rule(**fields: Any) -> OwnershipRule:
    return OwnershipRule.model_validate({"owner": "someone", **fields})


def finding(*api_ids: str) -> Finding:
    return Finding(
        source="defender",
        source_id="a-1",
        shape="defender-rest",
        kind=Kind.ALERT,
        type="API_AccessFromSuspiciousIP",
        title="t",
        severity=Severity.HIGH,
        ips=["203.0.113.7"],
        apis=[ApiRef(id=i, api=i.split("/apis/")[1].split("/")[0]) for i in api_ids],
    )


def context(rules: list[OwnershipRule], f: Finding, facts: FactsCache | None = None) -> Any:
    return Enricher(rules, facts=facts).context_of(f)


def test_an_arm_id_glob_matches_in_any_case_and_covers_operations() -> None:
    glob = (
        "/subscriptions/*/resourceGroups/RG-PAYMENTS/providers/Microsoft.ApiManagement"
        "/service/apim-contoso-prod/apis/orders*"
    )
    rules = [rule(name="payments", match={"ids": [glob]}, owner="payments-team", channel="pay")]
    got = context(rules, finding(GET_ORDER))
    assert (got.owner, got.channel, got.rule) == ("payments-team", "pay", "ownership[0] (payments)")
    assert context(rules, finding(USERS)) == FindingContext()


def test_an_exact_api_id_covers_the_operations_under_it() -> None:
    rules = [rule(match={"ids": ORDERS.upper()}, owner="orders")]
    assert context(rules, finding(GET_ORDER)).owner == "orders"
    assert context(rules, finding(f"{ORDERS}-v2")).owner == ""


def test_names_match_the_api_segment() -> None:
    rules = [rule(match={"names": ["Users-*"]}, owner="identity")]
    assert context(rules, finding(USERS)).owner == "identity"
    assert context(rules, finding(GET_ORDER)).owner == ""


def test_tags_must_all_be_present_and_come_from_the_facts() -> None:
    facts = FactsCache()
    facts.replace_tags(SERVICE, {api_key(ORDERS): ("PCI", "team-payments")})
    rules = [
        rule(match={"tags": ["pci", "gdpr"]}, owner="privacy"),
        rule(match={"tags": ["team-payments", "pci"]}, owner="payments", tags=["pci", "tier-1"]),
    ]
    got = context(rules, finding(GET_ORDER), facts)
    assert got.owner == "payments"
    # The API's own tags first, then the rule's, without repeating one in another case.
    assert got.tags == ["PCI", "team-payments", "tier-1"]
    assert context(rules, finding(USERS), facts).owner == ""


def test_every_selector_given_must_hold() -> None:
    rules = [rule(match={"names": ["orders-api"], "ids": [f"{SERVICE}/apis/users*"]})]
    assert context(rules, finding(GET_ORDER)).owner == ""


def test_the_first_matching_rule_wins() -> None:
    rules = [
        rule(name="specific", match={"ids": [GET_ORDER]}, owner="checkout"),
        rule(name="broad", match={"ids": [f"{SERVICE}/*"]}, owner="platform"),
    ]
    assert context(rules, finding(GET_ORDER)).rule == "ownership[0] (specific)"
    assert context(rules, finding(USERS)).rule == "ownership[1] (broad)"


def test_sensitivity_from_the_rule_else_from_sensitive_data_counters() -> None:
    facts = FactsCache()
    counters = ApiCollection(endpoints=12, unauthenticated=2, sensitive_data=3)
    facts.replace_collections(SERVICE, {api_key(ORDERS): counters})
    without_rule = context([], finding(GET_ORDER), facts)
    assert (without_rule.sensitivity, without_rule.collection) == ("high", counters)
    explicit = [rule(match={"names": "orders-api"}, sensitivity="medium")]
    assert context(explicit, finding(GET_ORDER), facts).sensitivity == "medium"
    assert context(explicit, finding(USERS), facts).sensitivity == ""


def test_a_finding_without_an_api_gets_no_context() -> None:
    rules = [rule(match={"ids": ["*"]}, owner="everyone")]
    assert context(rules, finding()) == FindingContext()


def test_enrich_replaces_whatever_context_a_finding_arrived_with() -> None:
    forged = finding(USERS).model_copy(
        update={"context": FindingContext(owner="attacker", channel="ops-pager")}
    )
    [clean] = Enricher([]).enrich([forged])
    assert clean.context == FindingContext()
    [owned] = Enricher([rule(match={"names": "users-api"}, owner="identity")]).enrich([forged])
    assert (owned.context.owner, owned.context.channel) == ("identity", "")


def test_new_facts_are_seen_by_the_next_finding() -> None:
    facts = FactsCache()
    enricher = Enricher([rule(match={"tags": "pci"}, owner="payments")], facts=facts)
    assert enricher.context_of(finding(ORDERS)).owner == ""
    facts.replace_tags(SERVICE, {api_key(ORDERS): ("pci",)})
    assert enricher.context_of(finding(ORDERS)).owner == "payments"


def test_a_normalized_sample_is_enriched_and_exposed_to_expressions() -> None:
    rules = [
        rule(
            match={"ids": [f"{SERVICE}/apis/orders-api"]},
            owner="payments-team",
            channel="teams-payments",
            sensitivity="critical",
        )
    ]
    [got] = Enricher(rules).enrich(normalize(sample("defender-rest-suspicious-ip.json")))
    view = got.expression_view()
    assert (view["owner"], view["channel"], view["sensitivity"]) == (
        "payments-team",
        "teams-payments",
        "critical",
    )
    assert view["context"]["collection"] == {
        "known": False,
        "endpoints": 0,
        "unauthenticated": 0,
        "inactive": 0,
        "external": 0,
        "sensitive_data": 0,
        "sensitivity_label": "",
    }
    stored = got.model_dump(mode="json")
    assert Finding.model_validate(stored) == got


def test_a_finding_stored_before_contexts_existed_still_loads() -> None:
    [found] = normalize(sample("defender-workflow-tor.json"))
    old = found.model_dump(mode="json")
    del old["context"]
    assert Finding.model_validate(old).context == FindingContext()


# -- config ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clampdown.yaml"
    path.write_text(text)
    return path


TEAMS = """
targets:
  teams-payments:
    type: teams
    url: {env: TEAMS_URL}
  apim-prod:
    type: azure-apim
    tenant_id: t
    client_id: c
    client_secret: {env: APIM_SECRET}
    subscription_id: 6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10
    resource_group: rg-payments
    service_name: apim-contoso-prod
"""


def test_config_reads_rules_in_order(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            TEAMS
            + """
ownership:
  - name: payments
    match: {ids: "/subscriptions/*/apis/orders*", tags: [pci]}
    owner: payments-team@example.com
    channel: teams-payments
    sensitivity: high
    tags: [pci-scope]
  - match: {names: [users-api]}
    owner: identity-team
""",
        )
    )
    assert [r.owner for r in config.ownership] == ["payments-team@example.com", "identity-team"]
    assert config.ownership[0].match.ids == ["/subscriptions/*/apis/orders*"]
    assert config.ownership[1].channel is None


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (
            "teams-payment",
            "ownership[1] (payments): channel 'teams-payment' names no configured target "
            "(notify targets: teams-payments)",
        ),
        (
            "apim-prod",
            "ownership[1] (payments): channel 'apim-prod' is a target of type azure-apim; a "
            "channel must be a notify target (webhook, teams, slack, smtp, pagerduty)",
        ),
        ("builtin", "channel 'builtin' is a target of type builtin"),
    ],
)
def test_a_channel_must_be_a_configured_notify_target(
    tmp_path: Path, channel: str, message: str
) -> None:
    text = (
        TEAMS
        + f"""
ownership:
  - match: {{names: [users-api]}}
    owner: identity-team
    channel: teams-payments
  - name: payments
    match: {{names: [orders-api]}}
    owner: payments-team
    channel: {channel}
"""
    )
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("rule_text", "message"),
    [
        ("{match: {}, owner: x}", "give at least one of ids, names or tags"),
        ("{match: {names: [a]}}", "ownership.0.owner: Field required"),
        ("{match: {names: [a]}, owner: x, sensitivity: secret}", "ownership.0.sensitivity"),
        ("{match: {names: [a]}, owner: x, team: y}", "ownership.0.team: Extra inputs"),
    ],
)
def test_malformed_rules_are_refused_with_their_place(
    tmp_path: Path, rule_text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, f"ownership:\n  - {rule_text}\n"))
    assert message in str(raised.value)


def test_context_sources_are_validated() -> None:
    base = {
        "identity": {"tenant_id": "t", "client_id": "c", "client_secret": {"env": "S"}},
        "subscription_id": "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10",
        "resource_group": "rg",
        "service": "apim",
    }
    config = Config.model_validate({"context": {"apim": [base], "interval": "10m"}})
    assert config.context is not None
    assert config.context.interval.total_seconds() == 600
    assert config.context.apim[0].service_path().endswith("/service/apim")
    with pytest.raises(ValueError, match="is not a subscription id"):
        Config.model_validate({"context": {"apim": [{**base, "subscription_id": "nope"}]}})
    with pytest.raises(ValueError, match="two services are named 'apim'"):
        Config.model_validate({"context": {"apim": [base, base]}})
    with pytest.raises(ValueError, match="is not a resource name"):
        Config.model_validate({"context": {"apim": [{**base, "service": "../x"}]}})


def test_channels_are_the_targets_notify_send_can_use() -> None:
    from clampdown.actions.notify import NotifySend
    from clampdown.ownership import NOTIFY_TARGET_TYPES

    assert set(NOTIFY_TARGET_TYPES) == set(NotifySend.target_types)
