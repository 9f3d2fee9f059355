"""The OpenAPI document is published and says how to authenticate."""

from __future__ import annotations

from fastapi.testclient import TestClient

from clampdown.sources import SHAPES


def test_openapi_lists_routes_and_bearer_auth(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert paths["/v1/ingest"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/v1/healthz"]["get"]
    for shape in SHAPES:
        assert f"/v1/ingest/{shape}" in paths
    for path in ("/v1/decisions/check", "/v1/decisions/auth", "/v1/decisions/stream"):
        assert path in paths


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/v1/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_health_reports_the_engine_running(client: TestClient) -> None:
    assert client.get("/v1/healthz").json()["engine"] == "running"
