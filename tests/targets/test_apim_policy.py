"""Surgical APIM policy edits: only Clampdown's marked region changes, and undo restores bytes."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clampdown.actions.contract import ContainmentSpec
from clampdown.targets.azure.policy import (
    BEGIN,
    CREATED_SKELETON,
    END,
    apply_owned,
    enforced,
    read_owned,
    render_owned,
)


def spec(kind: str, subject_type: str, subject: str, **extra: Any) -> ContainmentSpec:
    return ContainmentSpec(kind=kind, subject_type=subject_type, subject=subject, **extra)


BLOCK_ONE = render_owned([spec("block", "ip", "203.0.113.7")])
"""A small region used by the exact-text tests."""

ADDED = "<!-- clampdown:begin: managed by Clampdown, do not edit; added <inbound> -->"
EXPANDED = "<!-- clampdown:begin: managed by Clampdown, do not edit; expanded "

TYPICAL = """<!--
    Owner's policy: keep the comments.
-->
<policies>
    <inbound>
        <!-- rate limit everyone -->
        <base />
        <set-variable name="big" value="@(context.Request.Body?.As<string>().Length > 9 && 1<2)" />
        <choose>
            <when condition="@(context.Request.Headers.GetValueOrDefault("X-Tier", "") == "gold")">
                <set-header name="X-Gold"><value>@("yes" + "</inbound>")</value></set-header>
            </when>
        </choose>
    </inbound>
    <backend>
        <base />
    </backend>
    <outbound>
        <set-body>@{ var s = "<inbound />"; return s + '"' + "</policies>"; }</set-body>
        <base />
    </outbound>
    <on-error>
        <base />
    </on-error>
</policies>"""


# --- render_owned ------------------------------------------------------------------------------


def test_render_empty_is_empty() -> None:
    assert render_owned([]) == ""


def test_render_block_merges_ips_and_cidrs_sorted_and_deduplicated() -> None:
    specs = [
        spec("block", "ip", "198.51.100.9"),
        spec("block", "cidr", "10.0.0.0/24"),
        spec("block", "ip", "2001:db8::1"),
        spec("block", "ip", "198.51.100.10"),
        spec("block", "ip", "198.51.100.9", reason="again"),
        spec("block", "cidr", "192.0.2.1/32"),
        spec("block", "cidr", "10.0.0.0/24"),
    ]
    assert render_owned(specs) == (
        "\n"
        '<ip-filter action="forbid">\n'
        "    <address>198.51.100.9</address>\n"
        "    <address>198.51.100.10</address>\n"
        "    <address>2001:db8::1</address>\n"
        '    <address-range from="10.0.0.0" to="10.0.0.255" />\n'
        '    <address-range from="192.0.2.1" to="192.0.2.1" />\n'
        "</ip-filter>\n"
    )


def test_render_everything_in_a_fixed_order() -> None:
    specs = [
        spec("throttle", "subscription", "sub-2", rate=10, period_seconds=60),
        spec("throttle", "ip", "198.51.100.2", rate=5, period_seconds=10),
        spec("block", "ip", "203.0.113.7"),
        spec("throttle", "ip", "198.51.100.1", rate=5, period_seconds=10),
        spec("throttle", "subscription", "sub.1", rate=100, period_seconds=60),
        spec("throttle", "ip", "2001:db8::7", rate=100, period_seconds=60),
        spec("disable", "endpoint", "orders"),
    ]
    expected = (
        "\n"
        "<return-response>\n"
        '    <set-status code="403" reason="Forbidden" />\n'
        "</return-response>\n"
        '<ip-filter action="forbid">\n'
        "    <address>203.0.113.7</address>\n"
        "</ip-filter>\n"
        "<choose>\n"
        '    <when condition="@(new[] {&quot;198.51.100.1&quot;, &quot;198.51.100.2&quot;}'
        '.Contains(context.Request.IpAddress))">\n'
        '        <rate-limit-by-key calls="5" renewal-period="10"'
        ' counter-key="@(context.Request.IpAddress)" />\n'
        "    </when>\n"
        '    <when condition="@(new[] {&quot;2001:db8::7&quot;}'
        '.Contains(context.Request.IpAddress))">\n'
        '        <rate-limit-by-key calls="100" renewal-period="60"'
        ' counter-key="@(context.Request.IpAddress)" />\n'
        "    </when>\n"
        "</choose>\n"
        "<choose>\n"
        '    <when condition="@(new[] {&quot;sub-2&quot;}.Contains(context.Subscription?.Id))">\n'
        '        <rate-limit-by-key calls="10" renewal-period="60"'
        ' counter-key="@(context.Subscription?.Id ?? &quot;anonymous&quot;)" />\n'
        "    </when>\n"
        '    <when condition="@(new[] {&quot;sub.1&quot;}.Contains(context.Subscription?.Id))">\n'
        '        <rate-limit-by-key calls="100" renewal-period="60"'
        ' counter-key="@(context.Subscription?.Id ?? &quot;anonymous&quot;)" />\n'
        "    </when>\n"
        "</choose>\n"
    )
    assert render_owned(specs) == expected
    assert render_owned(list(reversed(specs))) == expected


@pytest.mark.parametrize(
    ("rate", "period", "calls", "renewal"),
    [
        (1000, 3600, 83, 300),  # 1000 * 300 / 3600 = 83.3
        (1, 3600, 1, 300),  # never below one call
        (60, 300, 60, 300),
        (7, 1, 7, 1),
        (10, 301, 9, 300),
    ],
)
def test_render_caps_the_renewal_period(rate: int, period: int, calls: int, renewal: int) -> None:
    text = render_owned([spec("throttle", "ip", "192.0.2.1", rate=rate, period_seconds=period)])
    assert f'<rate-limit-by-key calls="{calls}" renewal-period="{renewal}" ' in text


def test_render_keeps_the_strictest_throttle_per_subject() -> None:
    text = render_owned(
        [
            spec("throttle", "ip", "192.0.2.1", rate=100, period_seconds=60),
            spec("throttle", "ip", "192.0.2.1", rate=10, period_seconds=60),
            spec("throttle", "ip", "192.0.2.1", rate=20, period_seconds=60),
        ]
    )
    assert text.count("<rate-limit-by-key") == 1
    assert 'calls="10" renewal-period="60"' in text


@pytest.mark.parametrize(
    ("kind", "subject_type", "subject"),
    [
        ("block", "subscription", "sub1"),
        ("block", "api_key", "key"),
        ("block", "user", "alice"),
        ("block", "endpoint", "orders"),
        ("throttle", "cidr", "10.0.0.0/8"),
        ("throttle", "client_id", "app"),
    ],
)
def test_render_refuses_what_apim_policies_cannot_enforce(
    kind: str, subject_type: str, subject: str
) -> None:
    with pytest.raises(ValueError, match=f"cannot enforce {kind} of subject type {subject_type}"):
        render_owned([spec(kind, subject_type, subject, rate=1, period_seconds=1)])


@pytest.mark.parametrize(
    "subject",
    [
        'sub"); context.Response.Body = "x',
        "sub</when><return-response />",
        "sub&quot;",
        "sub 1",
        "",
        "a" * 257,
        "süb",
        "sub\n",
        "sub'1",
        "@(1)",
    ],
)
def test_render_refuses_hostile_subscription_ids(subject: str) -> None:
    with pytest.raises(ValueError, match="subscription id"):
        render_owned([spec("throttle", "subscription", subject, rate=1, period_seconds=60)])


@pytest.mark.parametrize(
    ("subject_type", "subject"),
    [
        ("ip", 'fe80::1%"><return-response />'),
        ("ip", "fe80::1%eth0"),
        ("ip", "203.0.113.7 "),
        ("ip", "203.0.113.7/32"),
        ("ip", "203.0.113.7</address>"),
        ("ip", "999.0.0.1"),
        ("cidr", "10.0.0.0/33"),
        ("cidr", "10.0.0.0/8</address>"),
        ("cidr", "fe80::%x/64"),
    ],
)
def test_render_refuses_bad_addresses(subject_type: str, subject: str) -> None:
    with pytest.raises(ValueError, match=r"not allowed|not an IP address|not a CIDR"):
        render_owned([spec("block", subject_type, subject)])
    if subject_type == "ip":
        with pytest.raises(ValueError, match=r"not allowed|not an IP address"):
            render_owned([spec("throttle", "ip", subject, rate=1, period_seconds=1)])


@pytest.mark.parametrize(("rate", "period"), [(None, 60), (10, None), (0, 60), (10, 0), (-1, 5)])
def test_render_refuses_throttles_without_a_valid_rate(
    rate: int | None, period: int | None
) -> None:
    with pytest.raises(ValueError, match="rate >= 1"):
        render_owned([spec("throttle", "ip", "192.0.2.1", rate=rate, period_seconds=period)])


def test_render_refuses_mixed_scopes() -> None:
    with pytest.raises(ValueError, match="several scopes"):
        render_owned(
            [spec("block", "ip", "192.0.2.1"), spec("block", "ip", "192.0.2.2", scope="a")]
        )


# --- apply_owned: exact text -------------------------------------------------------------------


def test_insert_into_a_typical_policy_and_remove_again() -> None:
    updated = apply_owned(TYPICAL, BLOCK_ONE)
    assert updated == TYPICAL.replace(
        "    <inbound>\n",
        "    <inbound>\n"
        "        <!-- clampdown:begin: managed by Clampdown, do not edit -->\n"
        '        <ip-filter action="forbid">\n'
        "            <address>203.0.113.7</address>\n"
        "        </ip-filter>\n"
        "        <!-- clampdown:end -->\n",
        1,
    )
    assert read_owned(updated) == BLOCK_ONE
    assert apply_owned(updated, "") == TYPICAL


def test_replace_keeps_every_byte_around_the_region() -> None:
    first = apply_owned(TYPICAL, BLOCK_ONE)
    assert first is not None
    other = render_owned([spec("block", "ip", "198.51.100.1"), spec("disable", "endpoint", "*")])
    second = apply_owned(first, other)
    assert second is not None
    head, _, tail = first.partition(BEGIN)
    assert second.startswith(head + BEGIN)
    assert second.endswith(END + tail.partition(END)[2])
    assert read_owned(second) == other
    assert second == apply_owned(TYPICAL, other)
    assert apply_owned(second, "") == TYPICAL
    assert apply_owned(second, other) == second


def test_unescaped_expression_before_the_region_and_cdata() -> None:
    policy = (
        "<policies>\n"
        "\t<inbound>\n"
        '\t\t<set-variable name="x" value="@(1 < 2 && "a" != "b")" />\n'
        "\t\t<set-body><![CDATA[ <inbound> & </inbound> <!-- clampdown:begin ]]></set-body>\n"
        "\t\t<base />\n"
        "\t</inbound>\n"
        "</policies>"
    )
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == (
        "<policies>\n"
        "\t<inbound>\n"
        "\t\t<!-- clampdown:begin: managed by Clampdown, do not edit -->\n"
        '\t\t<ip-filter action="forbid">\n'
        "\t\t    <address>203.0.113.7</address>\n"
        "\t\t</ip-filter>\n"
        "\t\t<!-- clampdown:end -->\n"
        '\t\t<set-variable name="x" value="@(1 < 2 && "a" != "b")" />\n'
        "\t\t<set-body><![CDATA[ <inbound> & </inbound> <!-- clampdown:begin ]]></set-body>\n"
        "\t\t<base />\n"
        "\t</inbound>\n"
        "</policies>"
    )
    assert apply_owned(updated, "") == policy
    assert enforced(updated) == {("block", "ip", "203.0.113.7")}


def test_inbound_after_other_sections_with_tricky_expressions() -> None:
    policy = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<policies>\n"
        "  <backend>\n"
        '    <set-header name="a"><value>@("<inbound>" + \'"\' + "</backend>")</value>'
        "</set-header>\n"
        '    <set-variable name="b" value="@($"{(1 > 0 ? "<inbound/>" : "x")}")" />\n'
        "    <base />\n"
        "  </backend>\n"
        "  <inbound><base /></inbound>\n"
        "</policies>\n"
    )
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == policy.replace(
        "  <inbound><base /></inbound>",
        "  <inbound>\n"
        f"      {BEGIN}\n"
        '      <ip-filter action="forbid">\n'
        "          <address>203.0.113.7</address>\n"
        "      </ip-filter>\n"
        f"      {END}<base /></inbound>",
    )
    assert apply_owned(updated, "") == policy


@pytest.mark.parametrize("tag", ["<inbound />", "<inbound/>", "<inbound  \n />"])
def test_self_closing_inbound_is_expanded_and_restored(tag: str) -> None:
    policy = f"<policies>\n    {tag}\n    <backend>\n        <base />\n    </backend>\n</policies>"
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == (
        "<policies>\n"
        "    <inbound>\n"
        f"        {EXPANDED}{tag} -->\n"
        '        <ip-filter action="forbid">\n'
        "            <address>203.0.113.7</address>\n"
        "        </ip-filter>\n"
        f"        {END}\n"
        "    </inbound>\n"
        "    <backend>\n"
        "        <base />\n"
        "    </backend>\n"
        "</policies>"
    )
    assert read_owned(updated) == BLOCK_ONE
    assert apply_owned(updated, "") == policy


def test_missing_inbound_is_added_and_removed() -> None:
    policy = "<policies>\n    <outbound>\n        <base />\n    </outbound>\n</policies>"
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == (
        "<policies>\n"
        "    <inbound>\n"
        f"        {ADDED}\n"
        '        <ip-filter action="forbid">\n'
        "            <address>203.0.113.7</address>\n"
        "        </ip-filter>\n"
        f"        {END}\n"
        "        <base />\n"
        "    </inbound>\n"
        "    <outbound>\n"
        "        <base />\n"
        "    </outbound>\n"
        "</policies>"
    )
    assert apply_owned(updated, "") == policy


def test_empty_policies_on_one_line() -> None:
    policy = "<policies></policies>"
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == (
        "<policies>\n"
        "    <inbound>\n"
        f"        {ADDED}\n"
        '        <ip-filter action="forbid">\n'
        "            <address>203.0.113.7</address>\n"
        "        </ip-filter>\n"
        f"        {END}\n"
        "        <base />\n"
        "    </inbound></policies>"
    )
    assert apply_owned(updated, "") == policy


def test_no_policy_creates_one_and_removal_deletes_it() -> None:
    created = apply_owned(None, BLOCK_ONE)
    assert created == (
        "<policies>\n"
        "    <!-- clampdown:created -->\n"
        "    <inbound>\n"
        f"        {BEGIN}\n"
        '        <ip-filter action="forbid">\n'
        "            <address>203.0.113.7</address>\n"
        "        </ip-filter>\n"
        f"        {END}\n"
        "        <base />\n"
        "    </inbound>\n"
        "    <backend>\n"
        "        <base />\n"
        "    </backend>\n"
        "    <outbound>\n"
        "        <base />\n"
        "    </outbound>\n"
        "    <on-error>\n"
        "        <base />\n"
        "    </on-error>\n"
        "</policies>"
    )
    assert apply_owned(created, "") is None
    assert apply_owned(None, "") is None
    assert apply_owned(CREATED_SKELETON, "") is None
    # A gateway that re-indents the policy still counts as unchanged.
    assert created is not None
    assert apply_owned(created.replace("    ", "\t"), "") is None


def test_created_policy_the_owner_changed_is_kept() -> None:
    created = apply_owned(None, BLOCK_ONE)
    assert created is not None
    changed = created.replace("<outbound>\n        <base />", "<outbound>\n        <cors />", 1)
    assert apply_owned(changed, "") == CREATED_SKELETON.replace(
        "<outbound>\n        <base />", "<outbound>\n        <cors />", 1
    )


def test_crlf_policy_keeps_its_line_breaks() -> None:
    policy = "<policies>\r\n  <inbound>\r\n    <base />\r\n  </inbound>\r\n</policies>\r\n"
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated == (
        "<policies>\r\n  <inbound>\r\n"
        f"    {BEGIN}\r\n"
        '    <ip-filter action="forbid">\r\n'
        "        <address>203.0.113.7</address>\r\n"
        "    </ip-filter>\r\n"
        f"    {END}\r\n"
        "    <base />\r\n  </inbound>\r\n</policies>\r\n"
    )
    assert read_owned(updated) == BLOCK_ONE
    assert apply_owned(updated, "") == policy


def test_expanded_section_the_owner_added_to_only_loses_the_region() -> None:
    policy = "<policies>\n    <inbound />\n</policies>"
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated is not None
    edited = updated.replace("    </inbound>", "        <base />\n    </inbound>")
    assert (
        apply_owned(edited, "")
        == "<policies>\n    <inbound>\n        <base />\n    </inbound>\n</policies>"
    )


def test_region_anywhere_is_found() -> None:
    policy = (
        f"<policies>\n    <outbound>\n        {BEGIN}{END}\n        <base />\n"
        "    </outbound>\n</policies>"
    )
    assert read_owned(policy) == ""
    updated = apply_owned(policy, BLOCK_ONE)
    assert updated is not None
    assert updated.count(BEGIN) == 1
    assert "<inbound" not in updated
    assert (
        apply_owned(updated, "")
        == "<policies>\n    <outbound>\n        <base />\n    </outbound>\n</policies>"
    )


def test_nothing_to_do_returns_the_policy_unchanged() -> None:
    assert apply_owned(TYPICAL, "") == TYPICAL
    assert read_owned(TYPICAL) == ""
    assert read_owned(None) == ""
    assert enforced(None) == set()
    assert enforced(TYPICAL) == set()


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (f"<policies><inbound>{BEGIN}</inbound></policies>", "without an end marker"),
        (f"<policies><inbound>{END}</inbound></policies>", "without a begin marker"),
        (f"<policies><inbound>{BEGIN}{BEGIN}{END}</inbound></policies>", "2 clampdown begin"),
        (f"<policies><inbound>{BEGIN}{END}{END}</inbound></policies>", "2 clampdown end"),
        (f"<policies><inbound>{END}{BEGIN}</inbound></policies>", "end marker before"),
        ("<policies><inbound><!-- clampdown:begin: x -->" + END, "unrecognised clampdown begin"),
        (f"<policies><inbound>{BEGIN}<!-- clampdown:end: x -->", "unrecognised clampdown end"),
        ("<policies><inbound><!-- open </inbound></policies>", "unterminated comment"),
    ],
)
def test_malformed_markers_are_refused(policy: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        apply_owned(policy, BLOCK_ONE)
    with pytest.raises(ValueError, match=problem):
        read_owned(policy)


@pytest.mark.parametrize(
    "policy",
    ["", "just text", "<policy><inbound /></policy>", "<!-- <policies> -->", "<policies />"],
)
def test_a_policy_without_a_policies_root_is_refused(policy: str) -> None:
    with pytest.raises(ValueError, match="no <policies> root"):
        apply_owned(policy, BLOCK_ONE)


def test_inbound_with_attributes_is_not_expanded() -> None:
    with pytest.raises(ValueError, match="cannot expand"):
        apply_owned('<policies><inbound a="--" /></policies>', BLOCK_ONE)


def test_pathological_expressions_fail_fast() -> None:
    with pytest.raises(ValueError, match="too many unbalanced"):
        apply_owned("<policies>" + ">@(" * 5000 + "</policies>", BLOCK_ONE)


def test_ambiguous_inbound_is_refused() -> None:
    with pytest.raises(ValueError, match="more than one <inbound>"):
        apply_owned("<policies><inbound /><inbound /></policies>", BLOCK_ONE)
    with pytest.raises(ValueError, match="cannot tell where"):
        apply_owned("<policies><backend><inbound /></backend></policies>", BLOCK_ONE)


@pytest.mark.parametrize(
    "owned",
    ["<a>", "<!-- x -->", "<a/>\r\n", "<!DOCTYPE a>", f"{END}<a/>", "<a>&x;</a>"],
)
def test_owned_text_must_be_plain_well_formed_elements(owned: str) -> None:
    with pytest.raises(ValueError, match=r"owned region|well-formed"):
        apply_owned(TYPICAL, owned)


# --- enforced ----------------------------------------------------------------------------------


def test_enforced_reads_ranges_back() -> None:
    region = (
        '\n<ip-filter action="forbid">\n'
        '    <address-range from="10.0.0.0" to="10.0.0.255" />\n'
        '    <address-range from="10.0.0.1" to="10.0.0.5" />\n'
        '    <address-range from="2001:db8::" to="2001:db8::ffff" />\n'
        "    <address>2001:DB8::1</address>\n"
        "</ip-filter>\n"
    )
    assert enforced(apply_owned(None, region)) == {
        ("block", "cidr", "10.0.0.0/24"),
        ("block", "range", "10.0.0.1-10.0.0.5"),
        ("block", "cidr", "2001:db8::/112"),
        ("block", "ip", "2001:db8::1"),
    }


def test_enforced_refuses_a_region_with_a_dtd() -> None:
    policy = (
        f"<policies><inbound>{BEGIN}<!DOCTYPE a [<!ENTITY x 'y'>]><a/>{END}</inbound></policies>"
    )
    with pytest.raises(ValueError, match="DTD"):
        enforced(policy)


# --- properties --------------------------------------------------------------------------------

NEWLINES = st.sampled_from(["\n", "\r\n"])
UNITS = st.sampled_from(["  ", "    ", "\t"])
COMMENT_TEXT = st.from_regex(r"[a-z <>&\"'@(){}/]{0,12}", fullmatch=True)
OWNER_ELEMENTS = st.sampled_from(
    [
        "<base />",
        "<cors />",
        '<set-variable name="v" value="@(context.Request.Headers.GetValueOrDefault<string>'
        '("a", "") + (1 < 2 && 3 > 2))" />',
        '<choose><when condition="@(context.Request.Method == "GET" && a<b)">'
        '<set-header name="x"><value>@("</inbound>")</value></set-header></when></choose>',
        '<set-body>@{ var s = "</inbound><inbound />"; return s + \'"\'; }</set-body>',
        "<set-body><![CDATA[ <inbound> & </inbound> <!-- clampdown:begin ]]></set-body>",
        '<rate-limit calls="20" renewal-period="90" />',
        "<set-body>a<b && c > d</set-body>",
        '<set-variable name="w" value="@($"{(1 > 0 ? "<inbound/>" : "}")}")" />',
    ]
)


@st.composite
def owner_policies(draw: st.DrawFn) -> str | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    nl = draw(NEWLINES)
    unit = draw(UNITS)
    if draw(st.booleans()) and draw(st.booleans()):
        nl, unit = "", ""  # all on one line

    def items(depth: int) -> str:
        parts = draw(st.lists(st.one_of(OWNER_ELEMENTS, COMMENT_TEXT.map(_comment)), max_size=3))
        return "".join(nl + unit * depth + part for part in parts)

    def section(name: str) -> str:
        opening = f"<{name}>" + draw(st.sampled_from(["", "  ", " <!-- same line -->"]))
        return nl + unit + opening + items(2) + nl + unit + f"</{name}>"

    inbound = draw(st.sampled_from(["pair", "pair", "self", "missing", "empty"]))
    if inbound == "pair":
        first = section("inbound")
    elif inbound == "self":
        first = nl + unit + draw(st.sampled_from(["<inbound />", "<inbound/>", "<inbound\n/>"]))
    elif inbound == "empty":
        first = nl + unit + "<inbound>" + draw(st.sampled_from(["", nl, nl + unit])) + "</inbound>"
    else:
        first = ""
    rest = [section(name) for name in ("backend", "outbound", "on-error") if draw(st.booleans())]
    body = [first, *rest] if draw(st.booleans()) else [*rest, first]
    prefix = draw(
        st.sampled_from(["", '<?xml version="1.0"?>' + nl, "<!-- owner -->" + nl, "\ufeff"])
    )
    return (
        prefix
        + "<policies>"
        + items(1)
        + "".join(body)
        + nl
        + "</policies>"
        + draw(st.sampled_from(["", nl, nl + "<!-- trailing -->"]))
    )


def _comment(text: str) -> str:
    return f"<!-- {text} -->"


IPS = st.ip_addresses()
NETWORKS = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda pair: str(ipaddress.ip_network(f"{pair[0]}/{pair[1]}", strict=False)))
SUBSCRIPTIONS = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
RATES = st.integers(1, 10_000)
PERIODS = st.integers(1, 86_400)
SPECS = st.lists(
    st.one_of(
        IPS.map(lambda ip: spec("block", "ip", str(ip))),
        NETWORKS.map(lambda net: spec("block", "cidr", net)),
        st.builds(
            lambda ip, r, p: spec("throttle", "ip", str(ip), rate=r, period_seconds=p),
            IPS,
            RATES,
            PERIODS,
        ),
        st.builds(
            lambda s, r, p: spec("throttle", "subscription", s, rate=r, period_seconds=p),
            SUBSCRIPTIONS,
            RATES,
            PERIODS,
        ),
        st.just(spec("disable", "endpoint", "orders")),
    ),
    max_size=8,
)


def expected(specs: list[ContainmentSpec]) -> set[tuple[str, str, str]]:
    return {
        ("disable", "endpoint", "*")
        if s.kind == "disable"
        else (s.kind.value, s.subject_type.value, s.subject)
        for s in specs
    }


@settings(max_examples=300, deadline=None)
@given(policy=owner_policies(), first=SPECS, second=SPECS)
def test_apply_is_exactly_reversible_and_idempotent(
    policy: str | None, first: list[ContainmentSpec], second: list[ContainmentSpec]
) -> None:
    a, b = render_owned(first), render_owned(second)
    with_a = apply_owned(policy, a)
    assert apply_owned(with_a, "") == policy
    assert read_owned(with_a) == a
    assert enforced(with_a) == expected(first)
    assert apply_owned(with_a, a) == with_a
    assert apply_owned(with_a, b) == apply_owned(policy, b)
    if policy is not None:
        # The owner's text survives in order: removing the region is the only difference.
        assert with_a is not None


@settings(max_examples=200, deadline=None)
@given(specs=SPECS, order=st.randoms(use_true_random=False))
def test_render_is_deterministic_and_reads_back(specs: list[ContainmentSpec], order: Any) -> None:
    shuffled = list(specs)
    order.shuffle(shuffled)
    assert render_owned(shuffled) == render_owned(specs)
    assert enforced(apply_owned(None, render_owned(specs))) == expected(specs)


@settings(max_examples=200, deadline=None)
@given(rate=RATES, period=PERIODS)
def test_renewal_period_never_exceeds_300(rate: int, period: int) -> None:
    text = render_owned([spec("throttle", "subscription", "s", rate=rate, period_seconds=period)])
    calls = int(text.split('calls="')[1].split('"')[0])
    renewal = int(text.split('renewal-period="')[1].split('"')[0])
    assert 1 <= renewal <= 300
    assert calls >= 1
    if period <= 300:
        assert (calls, renewal) == (rate, period)
    else:
        assert renewal == 300
        assert calls == max(1, rate * 300 // period)


@settings(max_examples=200, deadline=None)
@given(subject=st.text(max_size=40))
def test_arbitrary_subscription_ids_never_reach_the_policy_unchecked(subject: str) -> None:
    specs = [spec("throttle", "subscription", subject, rate=1, period_seconds=60)]
    try:
        text = render_owned(specs)
    except ValueError:
        return
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in subject)
    assert enforced(apply_owned(None, text)) == {("throttle", "subscription", subject)}
