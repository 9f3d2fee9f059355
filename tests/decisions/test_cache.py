"""DecisionCache: allow, deny or throttle one request from the in-memory containment list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clampdown.engine.decisions import DecisionCache, Request
from clampdown.model import Decision
from tests.decisions.conftest import row

API = (
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim/apis/orders"
)
NOW = 1_800_000_000.0


def cache_with(*rows: dict[str, object], cursor: int = 1) -> DecisionCache:
    cache = DecisionCache()
    cache.apply((("add", r) for r in rows), cursor)
    return cache


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_empty_cache_allows() -> None:
    verdict = DecisionCache().check(Request(ip="203.0.113.7", method="GET", path="/"))
    assert verdict.decision is Decision.ALLOW
    assert verdict.containment is None


def test_blocked_ip_is_denied_and_others_allowed() -> None:
    blocked = row("203.0.113.7")
    cache = cache_with(blocked)
    verdict = cache.check(Request(ip="203.0.113.7"))
    assert verdict.decision is Decision.DENY
    assert verdict.containment is not None
    assert verdict.containment.id == blocked["id"]
    assert verdict.containment.reason == blocked["reason"]
    assert cache.check(Request(ip="203.0.113.8")).decision is Decision.ALLOW


@pytest.mark.parametrize(
    ("stored", "requested"),
    [
        ("2001:db8::1", "2001:DB8::1"),
        ("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"),
        ("2001:0DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1", " 2001:db8::1 "),
    ],
)
def test_ipv6_matches_in_every_spelling(stored: str, requested: str) -> None:
    """The same IPv6 address written differently is the same client."""
    cache = cache_with(row(stored))
    assert cache.check(Request(ip=requested)).decision is Decision.DENY


def test_ipv4_mapped_ipv6_client_is_the_blocked_ipv4() -> None:
    """A dual-stack gateway reporting ::ffff:203.0.113.7 must not slip past a block of it."""
    cache = cache_with(row("203.0.113.7"), row("198.51.100.0/24", subject_type="cidr"))
    assert cache.check(Request(ip="::ffff:203.0.113.7")).decision is Decision.DENY
    assert cache.check(Request(ip="::ffff:198.51.100.9")).decision is Decision.DENY


def test_cidr_covers_its_addresses_only() -> None:
    cache = cache_with(row("198.51.100.0/24", subject_type="cidr"))
    assert cache.check(Request(ip="198.51.100.200")).decision is Decision.DENY
    assert cache.check(Request(ip="198.51.101.1")).decision is Decision.ALLOW
    assert cache.check(Request(ip="not an ip")).decision is Decision.ALLOW
    assert cache.check(Request(api_key="198.51.100.1")).decision is Decision.ALLOW


def test_ipv6_cidr() -> None:
    cache = cache_with(row("2001:db8:aa::/48", subject_type="cidr"))
    assert cache.check(Request(ip="2001:DB8:AA:1::5")).decision is Decision.DENY
    assert cache.check(Request(ip="2001:db8:ab::5")).decision is Decision.ALLOW


def test_api_key_block_matches_the_key_not_the_ip() -> None:
    cache = cache_with(row("key-123", subject_type="api_key"))
    assert cache.check(Request(ip="203.0.113.1", api_key="key-123")).decision is Decision.DENY
    assert cache.check(Request(ip="203.0.113.1", api_key="key-124")).decision is Decision.ALLOW
    assert cache.check(Request(ip="key-123")).decision is Decision.ALLOW


@pytest.mark.parametrize(
    ("subject_type", "field"),
    [("subscription", "subscription"), ("client_id", "client_id"), ("user", "user")],
)
def test_other_subjects_match_their_own_field(subject_type: str, field: str) -> None:
    cache = cache_with(row("who", subject_type=subject_type))
    assert cache.check(Request(**{field: "who"})).decision is Decision.DENY
    assert cache.check(Request(**{field: "someone-else"})).decision is Decision.ALLOW
    assert cache.check(Request(ip="who", api_key="who")).decision is Decision.ALLOW


def test_endpoint_disabled_by_method_and_path() -> None:
    """A disabled 'GET /path' refuses every client on that method and path only."""
    endpoint = "GET /legacy/invoices"
    cache = cache_with(row(endpoint, subject_type="endpoint", kind="disable", scope=endpoint))
    hit = Request(ip="203.0.113.1", method="GET", path="/legacy/invoices")
    assert cache.check(hit).decision is Decision.DENY
    assert cache.check(Request(method="GET", path="/legacy/invoices?page=2")).decision is (
        Decision.DENY
    )
    assert cache.check(Request(method="POST", path="/legacy/invoices")).decision is Decision.ALLOW
    assert cache.check(Request(method="GET", path="/orders")).decision is Decision.ALLOW


@pytest.mark.parametrize(
    "path",
    ["/legacy//invoices", "/legacy/./invoices", "/legacy/%69nvoices", "/x/../legacy/invoices"],
)
def test_endpoint_disabled_in_every_spelling_of_its_path(path: str) -> None:
    """Spellings that a gateway routes to the disabled endpoint are refused too."""
    endpoint = "GET /legacy/invoices"
    cache = cache_with(row(endpoint, subject_type="endpoint", kind="disable", scope=endpoint))
    assert cache.check(Request(method="GET", path=path)).decision is Decision.DENY


def test_endpoint_disabled_by_api_id_covers_its_operations() -> None:
    cache = cache_with(row(API, subject_type="endpoint", kind="disable", scope=API))
    operation = Request(method="GET", path="/orders/1", api=API + "/operations/getOrder")
    assert cache.check(operation).decision is Decision.DENY
    assert cache.check(Request(method="GET", path="/orders/1", api=API + "2")).decision is (
        Decision.ALLOW
    )
    assert cache.check(Request(method="GET", path="/orders/1")).decision is Decision.ALLOW


def test_scoped_block_applies_inside_its_scope_only() -> None:
    cache = cache_with(row("203.0.113.7", scope="/admin/*"))
    assert cache.check(Request(ip="203.0.113.7", path="/admin/users")).decision is Decision.DENY
    assert cache.check(Request(ip="203.0.113.7", path="/public")).decision is Decision.ALLOW


def test_block_scoped_to_an_api_applies_to_that_api_only() -> None:
    cache = cache_with(row("203.0.113.7", scope=API))
    assert cache.check(Request(ip="203.0.113.7", api=API + "/operations/x")).decision is (
        Decision.DENY
    )
    assert cache.check(Request(ip="203.0.113.7", api=API + "-other")).decision is Decision.ALLOW


def test_expired_entries_no_longer_count() -> None:
    cache = cache_with(row("203.0.113.7", expires_at=at(NOW + 10)))
    assert cache.check(Request(ip="203.0.113.7"), now=NOW).decision is Decision.DENY
    assert cache.check(Request(ip="203.0.113.7"), now=NOW + 10).decision is Decision.ALLOW
    assert cache.check(Request(ip="203.0.113.7"), now=NOW + 11).decision is Decision.ALLOW


def test_an_expired_block_does_not_hide_an_active_one() -> None:
    cache = cache_with(
        row("203.0.113.7", expires_at=at(NOW - 1)),
        row("203.0.113.7", expires_at=at(NOW + 60)),
    )
    assert cache.check(Request(ip="203.0.113.7"), now=NOW).decision is Decision.DENY


def test_deny_beats_throttle_whatever_the_order() -> None:
    throttle = row("203.0.113.7", kind="throttle", rate=1000, period=60)
    block = row("203.0.113.0/24", subject_type="cidr")
    for rows in ((throttle, block), (block, throttle)):
        cache = cache_with(*rows)
        verdict = cache.check(Request(ip="203.0.113.7"), now=NOW)
        assert verdict.decision is Decision.DENY
        assert verdict.containment is not None
        assert verdict.containment.id == block["id"]


def test_throttle_allows_up_to_rate_then_throttles_with_retry_after() -> None:
    cache = cache_with(row("203.0.113.7", kind="throttle", rate=3, period=60))
    start = 60 * 30_000_000.0  # the start of a window
    request = Request(ip="203.0.113.7")
    verdicts = [cache.check(request, now=start + i) for i in range(5)]
    assert [v.decision for v in verdicts] == [Decision.ALLOW] * 3 + [Decision.THROTTLE] * 2
    assert verdicts[0].containment is not None  # allowed, but counted against the throttle
    assert verdicts[3].retry_after is not None
    # Throttled 3 s into a 60 s window: the window resets in 57 s.
    assert 57 <= verdicts[3].retry_after <= 58
    assert all(v.retry_after is None for v in verdicts[:3])


def test_throttle_window_resets() -> None:
    cache = cache_with(row("203.0.113.7", kind="throttle", rate=1, period=10))
    start = 10 * 180_000_000.0
    request = Request(ip="203.0.113.7")
    assert cache.check(request, now=start).decision is Decision.ALLOW
    assert cache.check(request, now=start + 9).decision is Decision.THROTTLE
    assert cache.check(request, now=start + 10).decision is Decision.ALLOW


def test_throttle_counts_each_client_separately() -> None:
    """A throttled range limits each address in it on its own."""
    cache = cache_with(row("198.51.100.0/24", subject_type="cidr", kind="throttle", rate=1))
    start = 60 * 30_000_000.0
    first, second = Request(ip="198.51.100.1"), Request(ip="198.51.100.2")
    assert cache.check(first, now=start).decision is Decision.ALLOW
    assert cache.check(second, now=start).decision is Decision.ALLOW
    assert cache.check(first, now=start + 1).decision is Decision.THROTTLE
    assert cache.check(second, now=start + 1).decision is Decision.THROTTLE


def test_throttle_on_a_key_counts_the_key_across_addresses() -> None:
    """A leaked key rotated over many IPs is still limited to the key's rate."""
    cache = cache_with(row("key-1", subject_type="api_key", kind="throttle", rate=2))
    start = 60 * 30_000_000.0
    decisions = [
        cache.check(Request(ip=f"203.0.113.{i}", api_key="key-1"), now=start + i).decision
        for i in range(1, 5)
    ]
    assert decisions == [Decision.ALLOW, Decision.ALLOW, Decision.THROTTLE, Decision.THROTTLE]


def test_throttle_without_a_client_identity_still_counts() -> None:
    """Requests that carry only the throttled subject are counted together."""
    cache = cache_with(row("u1", subject_type="user", kind="throttle", rate=1))
    start = 60 * 30_000_000.0
    assert cache.check(Request(user="u1"), now=start).decision is Decision.ALLOW
    assert cache.check(Request(user="u1"), now=start + 1).decision is Decision.THROTTLE


def test_removal_lifts_the_containment() -> None:
    blocked = row("203.0.113.7")
    cache = cache_with(blocked)
    cache.apply([("remove", blocked)], 2)
    assert cache.check(Request(ip="203.0.113.7")).decision is Decision.ALLOW
    assert len(cache) == 0
    assert cache.cursor == 2


def test_removing_one_of_two_blocks_of_a_subject_keeps_the_other() -> None:
    first, second = row("203.0.113.7"), row("203.0.113.7")
    cache = cache_with(first, second)
    cache.apply([("remove", first)], 2)
    verdict = cache.check(Request(ip="203.0.113.7"))
    assert verdict.decision is Decision.DENY
    assert verdict.containment is not None
    assert verdict.containment.id == second["id"]


def test_removing_an_unknown_id_is_harmless() -> None:
    cache = cache_with(row("203.0.113.7"))
    cache.apply([("remove", {"id": "nope"})], 5)
    assert len(cache) == 1


def test_cursor_never_goes_back() -> None:
    cache = cache_with(row("203.0.113.7"), cursor=10)
    cache.apply([], 4)
    assert cache.cursor == 10


def test_expiry_is_read_from_aware_datetimes() -> None:
    """Rows from the database carry aware datetimes; the cache compares epoch seconds."""
    soon = datetime.now(UTC) + timedelta(minutes=5)
    cache = cache_with(row("203.0.113.7", expires_at=soon))
    assert cache.check(Request(ip="203.0.113.7")).decision is Decision.DENY
    later = (soon + timedelta(seconds=1)).timestamp()
    assert cache.check(Request(ip="203.0.113.7"), now=later).decision is Decision.ALLOW


def test_a_stale_batch_does_not_bring_back_a_lifted_containment() -> None:
    """Batches read concurrently may be applied out of order; the cursor says which is old."""
    blocked = row("203.0.113.7")
    cache = DecisionCache()
    newer = [("add", {**blocked, "seq": 1}), ("remove", {**blocked, "seq": 2})]
    older = [("add", {**blocked, "seq": 1})]
    cache.apply(newer, 2)
    cache.apply(older, 1)
    assert cache.check(Request(ip="203.0.113.7")).decision is Decision.ALLOW
    assert len(cache) == 0
