"""Property-based checks of the decision cache and scope matching."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from clampdown.engine.decisions import DecisionCache, Request
from clampdown.engine.scopes import covers
from clampdown.model import Decision
from tests.decisions.conftest import row

ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str),
)
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
# API ids: an Azure resource id, or any other id without a leading slash (a slash starts a path).
api_ids = st.tuples(
    st.sampled_from(["/subscriptions/", "/SUBSCRIPTIONS/", ""]),
    st.lists(segment, min_size=1, max_size=5),
).map(lambda t: t[0] + "/".join(t[1]))
subjects = st.tuples(
    st.sampled_from(["ip", "api_key", "subscription", "client_id", "user"]), segment
)


@given(blocked=ips, other=ips)
def test_a_block_never_matches_another_ip(blocked: str, other: str) -> None:
    cache = DecisionCache()
    cache.apply([("add", row(blocked))], 1)
    expected = (
        Decision.DENY
        if ipaddress.ip_address(blocked) == ipaddress.ip_address(other)
        else (Decision.ALLOW)
    )
    assert cache.check(Request(ip=other)).decision is expected


@given(address=st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None))
def test_every_spelling_of_an_ipv6_address_matches(address: ipaddress.IPv6Address) -> None:
    cache = DecisionCache()
    cache.apply([("add", row(address.compressed))], 1)
    for spelling in (address.exploded, address.exploded.upper(), address.compressed.upper()):
        assert cache.check(Request(ip=spelling)).decision is Decision.DENY


@given(network=st.ip_addresses(v=4), prefix=st.integers(8, 32), probe=st.ip_addresses(v=4))
def test_a_range_block_matches_exactly_its_addresses(
    network: ipaddress.IPv4Address, prefix: int, probe: ipaddress.IPv4Address
) -> None:
    net = ipaddress.ip_network(f"{network}/{prefix}", strict=False)
    cache = DecisionCache()
    cache.apply([("add", row(str(net), subject_type="cidr"))], 1)
    expected = Decision.DENY if probe in net else Decision.ALLOW
    assert cache.check(Request(ip=str(probe))).decision is expected


@given(
    entries=st.lists(st.one_of(ips.map(lambda ip: ("ip", ip)), subjects), max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_adding_then_removing_everything_leaves_the_cache_empty(
    entries: list[tuple[str, str]], order: object
) -> None:
    rows = [row(subject, subject_type=kind) for kind, subject in entries]
    cache = DecisionCache()
    cache.apply([("add", r) for r in rows], 1)
    assert len(cache) == len(rows)
    removals = list(rows)
    order.shuffle(removals)  # type: ignore[attr-defined]
    cache.apply([("remove", r) for r in removals], 2)
    assert len(cache) == 0
    for kind, subject in entries:
        request = Request(ip=subject) if kind == "ip" else Request(**{kind: subject})
        assert cache.check(request).decision is Decision.ALLOW


@given(rate=st.integers(1, 20), requests=st.integers(0, 40))
def test_throttle_lets_exactly_rate_requests_through_per_window(rate: int, requests: int) -> None:
    cache = DecisionCache()
    cache.apply([("add", row("203.0.113.9", kind="throttle", rate=rate, period=60))], 1)
    start = 60 * 30_000_000.0
    verdicts = [
        cache.check(Request(ip="203.0.113.9"), now=start + i * 59 / max(requests, 1))
        for i in range(requests)
    ]
    throttled = [v for v in verdicts if v.decision is Decision.THROTTLE]
    assert len(throttled) == max(0, requests - rate)
    assert all(v.retry_after is not None and 1 <= v.retry_after <= 61 for v in throttled)


@given(scope=api_ids, below=st.lists(segment, max_size=4))
def test_an_api_scope_covers_itself_and_everything_below_it(scope: str, below: list[str]) -> None:
    api = "/".join([scope, *below])
    assert covers(scope, method="GET", path="/", api=api)
    assert covers(scope.upper(), method="GET", path="/", api=api.lower())


@given(scope=api_ids, suffix=segment)
def test_an_api_scope_never_covers_a_sibling_sharing_its_prefix(scope: str, suffix: str) -> None:
    assert not covers(scope, method="GET", path="/", api=scope + suffix)
