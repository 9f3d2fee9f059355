"""`covers`: which requests a containment's scope applies to."""

from __future__ import annotations

import pytest

from clampdown.engine.scopes import covers

API = (
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim/apis/orders"
)
OPERATION = f"{API}/operations/getOrder"


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [("GET", "/anything", ""), ("", "", ""), ("DELETE", "/x", OPERATION)],
)
def test_star_covers_every_request(method: str, path: str, api: str) -> None:
    assert covers("*", method=method, path=path, api=api)


@pytest.mark.parametrize(
    ("scope", "path", "expected"),
    [
        ("/orders/*", "/orders/42", True),
        ("/orders/*", "/orders", False),
        ("/orders/*", "/invoices/42", False),
        ("/orders", "/orders", True),
        ("/orders", "/orders/42", False),
        ("/v?/orders", "/v2/orders", True),
        ("/Orders/*", "/orders/42", False),
    ],
)
def test_path_glob_matches_any_method(scope: str, path: str, expected: bool) -> None:
    """A scope starting with / is a case-sensitive glob on the path, for every method."""
    for method in ("GET", "POST", ""):
        assert covers(scope, method=method, path=path, api="") is expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/legacy/invoices", True),
        ("get", "/legacy/invoices", True),
        ("POST", "/legacy/invoices", False),
        ("GET", "/legacy/invoices/7", False),
        ("", "/legacy/invoices", False),
    ],
)
def test_method_and_path_scope(method: str, path: str, expected: bool) -> None:
    """'GET /path' covers that method (any case in the request) on that path only."""
    assert covers("GET /legacy/invoices", method=method, path=path, api="") is expected


def test_method_and_glob_scope() -> None:
    assert covers("DELETE /orders/*", method="DELETE", path="/orders/9", api="")
    assert not covers("DELETE /orders/*", method="GET", path="/orders/9", api="")


def test_api_id_covers_itself_and_its_operations() -> None:
    assert covers(API, method="GET", path="/orders/1", api=API)
    assert covers(API, method="GET", path="/orders/1", api=OPERATION)
    assert covers(API + "/", method="GET", path="/", api=OPERATION)


def test_api_id_compares_case_insensitively() -> None:
    """Azure resource ids are case-insensitive."""
    assert covers(API.upper(), method="GET", path="/", api=OPERATION.lower())


def test_api_id_does_not_cover_a_sibling_with_the_same_prefix() -> None:
    """'.../apis/orders' must not cover '.../apis/orders-v2'."""
    assert not covers(API, method="GET", path="/", api=API + "-v2")
    assert not covers(API, method="GET", path="/", api=API + "-v2/operations/getOrder")


def test_operation_scope_does_not_cover_its_parent_api() -> None:
    assert not covers(OPERATION, method="GET", path="/", api=API)


def test_api_id_scope_needs_the_request_api() -> None:
    """A gateway that does not say which API was called is not covered by an API scope."""
    assert not covers(API, method="GET", path="/orders/1", api="")


def test_plain_api_id_without_a_slash() -> None:
    """Gateways other than APIM name APIs by plain ids: those cover their operations too."""
    assert covers("orders-api", method="GET", path="/x", api="orders-api/getOrder")
    assert not covers("orders-api", method="GET", path="/x", api="orders-api2")


def test_an_arm_id_scope_is_not_read_as_a_path() -> None:
    """'/subscriptions/...' is an API id, even though it starts with a slash."""
    assert not covers(API, method="GET", path=API, api="")
    assert covers(API, method="GET", path="/orders/1", api=OPERATION)
