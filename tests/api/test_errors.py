"""Bad input gets a clear 4xx with the one error shape, never a 500 or a traceback."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import auth
from tests.conftest import sample


def error_of(response: object) -> dict[str, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_missing_token_is_401(client: TestClient) -> None:
    response = client.post("/v1/ingest", json=sample("defender-rest-suspicious-ip.json"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response)["code"] == "unauthorized"


def test_unknown_token_is_401(client: TestClient) -> None:
    response = client.post("/v1/ingest", json={}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert error_of(response)["message"] == "unknown token"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/ingest", "read"),
        ("GET", "/v1/remediations", "ingest"),
        ("POST", "/v1/remediations/x/approve", "read"),
        ("GET", "/v1/decisions/check?ip=192.0.2.1", "ingest"),
    ],
)
def test_token_without_the_scope_is_403(
    client: TestClient, method: str, path: str, scope: str
) -> None:
    response = client.request(method, path, headers=auth(scope), json={})
    assert response.status_code == 403
    assert "scope" in error_of(response)["message"]


def test_admin_token_has_every_scope(client: TestClient) -> None:
    assert client.get("/v1/remediations", headers=auth("admin")).status_code == 200


def test_malformed_json_is_400_with_position(client: TestClient) -> None:
    response = client.post(
        "/v1/ingest",
        content=b'{"id": "x", ',
        headers={**auth("ingest"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert "malformed JSON" in message
    assert "line 1" in message


def test_empty_body_is_400(client: TestClient) -> None:
    response = client.post("/v1/ingest", content=b"", headers=auth("ingest"))
    assert response.status_code == 400
    assert "empty" in error_of(response)["message"]


def test_unknown_shape_is_422_naming_the_problem(client: TestClient) -> None:
    response = client.post("/v1/ingest", json={"hello": "world"}, headers=auth("ingest"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "unrecognized_finding"


def test_wrong_shape_route_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/ingest/graph", json=sample("defender-rest-suspicious-ip.json"), headers=auth("ingest")
    )
    assert response.status_code == 422


def test_oversized_body_is_413(client: TestClient) -> None:
    big = b'{"pad": "' + b"x" * 1_100_000 + b'"}'
    response = client.post("/v1/ingest", content=big, headers=auth("ingest"))
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65_536

    response = client.post("/v1/ingest", content=chunks(), headers=auth("ingest"))
    assert response.status_code == 413


def test_refused_input_leaves_accepted_findings_alone(client: TestClient) -> None:
    good = client.post(
        "/v1/ingest", json=sample("graph-alert-param-enum.json"), headers=auth("ingest")
    )
    assert good.status_code == 202
    client.post("/v1/ingest", content=b"{", headers=auth("ingest"))
    listed = client.get("/v1/findings", headers=auth("read")).json()["findings"]
    assert [f["type"] for f in listed] == ["API_ParameterEnumeration"]


def test_unknown_remediation_is_404(client: TestClient) -> None:
    response = client.get("/v1/remediations/doesnotexist", headers=auth("read"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_bad_query_parameter_is_422(client: TestClient) -> None:
    response = client.get("/v1/remediations?limit=0", headers=auth("read"))
    assert response.status_code == 422
    assert "limit" in error_of(response)["message"]


def test_unknown_state_filter_is_400(client: TestClient) -> None:
    response = client.get("/v1/remediations?state=bogus", headers=auth("read"))
    assert response.status_code == 400
    assert "bogus" in error_of(response)["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/findings/99999999999999999999",
        "/v1/findings?before=99999999999999999999",
        "/v1/decisions/stream?cursor=99999999999999999999",
        "/v1/findings/-1",
    ],
)
def test_out_of_range_numbers_are_422(client: TestClient, path: str) -> None:
    response = client.get(path, headers=auth("read"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_request"
