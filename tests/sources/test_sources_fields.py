"""The shared helpers: key lookup, JSON in strings, IPs, times, ARM ids, severities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clampdown.errors import NormalizationError
from clampdown.model import ApiRef, Severity
from clampdown.sources._fields import (
    Fields,
    api_ref,
    api_refs,
    clean_ips,
    flatten,
    parse_json_text,
    parse_severity,
    parse_time,
    pick,
    text_list,
)

APIM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc"


@pytest.mark.parametrize("key", ["alertType", "AlertType", "alerttype", "ALERTTYPE"])
def test_keys_match_in_any_casing(key: str) -> None:
    """alertType, AlertType and alerttype name the same field."""
    assert Fields({key: "API_X"}).text("alertType") == "API_X"


def test_exact_key_wins_over_other_casing() -> None:
    """When two casings are present the exact spelling is read."""
    assert Fields({"alerttype": "low", "alertType": "exact"}).text("alertType") == "exact"


def test_require_text_names_where_and_what() -> None:
    """A missing required field raises with its full location."""
    props = Fields({"alertType": ["x"]}, "records[3].properties")
    with pytest.raises(NormalizationError) as caught:
        props.require_text("alertType")
    assert caught.value.where == "records[3].properties.alertType"
    assert "must be a string, not array" in str(caught.value)


def test_child_reads_json_object_held_in_string() -> None:
    """An object given as a JSON string is read like an object."""
    child = Fields({"ExtendedProperties": '{"a": "1"}'}).child("extendedProperties")
    assert child is not None
    assert child.text("A") == "1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [('[1, "a"]', [1, "a"]), ('{"k": null}', {"k": None}), ("[broken", None), ("plain", None)],
)
def test_parse_json_text(text: str, expected: object) -> None:
    """Valid JSON in a string is decoded; anything else reads as absent."""
    assert parse_json_text(text) == expected


def test_parse_json_text_survives_deep_nesting() -> None:
    """Absurdly nested JSON text reads as absent instead of crashing."""
    assert parse_json_text("[" * 100_000 + "]" * 100_000) is None


def test_clean_ips_validates_canonicalizes_and_deduplicates() -> None:
    """Junk is dropped, IPv6 compressed, IPv4-mapped unwrapped, repeats removed in order."""
    values = [
        "203.0.113.7",
        "2001:DB8:0:0:0:0:0:1",
        "999.1.1.1",
        "not-an-ip",
        "",
        None,
        42,
        "203.0.113.7",
        "::ffff:192.0.2.1",
        " 198.51.100.1 ",
        "fe80::1%eth0",
        "010.1.1.1",
    ]
    assert clean_ips(values) == ["203.0.113.7", "2001:db8::1", "192.0.2.1", "198.51.100.1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T09:12:44.0000000Z", datetime(2026, 11, 24, 9, 12, 44, tzinfo=UTC)),
        ("2026-11-24T09:12:44.1234567Z", datetime(2026, 11, 24, 9, 12, 44, 123456, tzinfo=UTC)),
        ("2026-11-24T11:12:44+02:00", datetime(2026, 11, 24, 9, 12, 44, tzinfo=UTC)),
        ("2026-11-24T09:12:44", datetime(2026, 11, 24, 9, 12, 44, tzinfo=UTC)),
        (1764153600000, datetime(2025, 11, 26, 10, 40, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
        (10**30, None),
        (float("nan"), None),
        ("0001-01-01T00:00:00+01:00", None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    """ISO 8601 (any fraction length, Z or offset) and epoch ms become aware UTC; junk None."""
    parsed = parse_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("rid", "parts"),
    [
        (f"{APIM}/apis/orders/operations/get", ("svc", "orders", "get")),
        (f"{APIM}/apis/orders", ("svc", "orders", None)),
        (f"{APIM}", ("svc", None, None)),
        (f"{APIM}/apis/orders/operations/get/policies/policy", ("svc", "orders", "get")),
        (APIM.upper().replace("SVC", "svc") + "/APIS/o/OPERATIONS/g", ("svc", "o", "g")),
        ("/subscriptions/s/providers/Microsoft.Web/sites/app", (None, None, None)),
        (f"{APIM}/apis//operations/x", ("svc", None, None)),
        ("login-api", (None, None, None)),
    ],
)
def test_api_ref_parses_apim_ids(rid: str, parts: tuple[str | None, ...]) -> None:
    """APIM service/API/operation are read with case-insensitive segment names."""
    ref = api_ref(rid)
    assert ref.id == rid
    assert (ref.service, ref.api, ref.operation) == parts


def test_api_refs_most_specific_first_without_repeats() -> None:
    """Operations before APIs before others; ids differing only in case are one."""
    refs = api_refs([f"{APIM}/apis/a", "other", f"{APIM}/apis/a/operations/op", f"{APIM}/APIS/A"])
    assert [ref.id for ref in refs] == [f"{APIM}/apis/a/operations/op", f"{APIM}/apis/a", "other"]
    assert all(isinstance(ref, ApiRef) for ref in refs)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("High", Severity.HIGH),
        ("HIGH", Severity.HIGH),
        ("informational", Severity.INFORMATIONAL),
        ("unknown", Severity.INFORMATIONAL),
        ("Critical", Severity.CRITICAL),
        ("severe", Severity.MEDIUM),
        (None, Severity.MEDIUM),
        (3, Severity.MEDIUM),
    ],
)
def test_parse_severity(value: object, expected: Severity) -> None:
    """Any casing; Graph's unknown is informational; unreadable or missing is medium."""
    assert parse_severity(value) is expected


def test_flatten_encodes_non_strings_as_json() -> None:
    """Property maps become str -> str; other values are JSON-encoded."""
    flat = flatten({"a": "x", "b": 2, "c": None, "d": {"e": [1]}, "f": True})
    assert flat == {"a": "x", "b": "2", "c": "null", "d": '{"e": [1]}', "f": "true"}
    assert flatten('{"k": 1}') == {"k": "1"}
    assert flatten("[1]") == {} == flatten("{oops")


def test_pick_matches_keys_case_insensitively() -> None:
    """Extended property names match in any casing; blanks are skipped."""
    props = {"api ENDPOINT": "GET /x", "Client user agent": " "}
    assert pick(props, "API endpoint") == "GET /x"
    assert pick(props, "Client user agent") is None


def test_text_list_reads_arrays_json_strings_and_csv() -> None:
    """Lists, JSON arrays in strings and comma-separated text all give clean string lists."""
    assert text_list(["a", 1, "a", " b "]) == ["a", "b"]
    assert text_list('["T1190", "T1110"]') == ["T1190", "T1110"]
    assert text_list("Discovery, Impact", split=True) == ["Discovery", "Impact"]
    assert text_list("one step") == ["one step"]
    assert text_list(None) == []
