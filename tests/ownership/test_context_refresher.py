"""The context refresher against FakeArm over real HTTP: tags, collections, paging, faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.model import ApiCollection
from clampdown.ownership import ContextConfig, Enricher, FactsCache, OwnershipRule, api_key
from clampdown.ownership.refresher import ContextRefresher
from clampdown.services import Clampdown
from clampdown.sources import normalize
from clampdown.testing.arm import FakeArm
from tests.api.conftest import auth
from tests.conftest import make_config

SECRET = "ctx-s3cret-Value"
ENV = "CLAMPDOWN_TEST_CONTEXT_SECRET"
SUB = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    monkeypatch.setenv(ENV, SECRET)
    fake = FakeArm(
        tenant="t",
        client_id="c",
        client_secret=SECRET,
        subscription_id=SUB,
        resource_group="rg-payments",
        service="apim-contoso-prod",
        page_size=2,
    )
    for name in ("orders-api", "users-api", "search-api", "legacy-api", "accounts-api"):
        fake.add_api(name)
    fake.tag_api("orders-api", "pci", "PCI")
    fake.tag_api("orders-api", "team-payments")
    fake.tag_api("orders-api", "tier-1")
    fake.tag_api("users-api", "team-identity")
    fake.onboard_api("orders-api", endpoints=14, unauthenticated=2, external=9, sensitive_data=3)
    fake.onboard_api("users-api", endpoints=5, inactive=4, sensitivity_label="Confidential")
    with fake.running() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def settings(arm: FakeArm, **overrides: Any) -> ContextConfig:
    source = {
        "identity": {
            "tenant_id": arm.tenant,
            "client_id": arm.client_id,
            "client_secret": {"env": ENV},
            "login_url": arm.url,
            "timeout": 5,
        },
        "subscription_id": arm.subscription_id,
        "resource_group": arm.resource_group,
        "service": arm.service,
        "management_url": arm.url,
        **overrides,
    }
    return ContextConfig.model_validate({"apim": [source]})


async def no_sleep(seconds: float) -> None:
    return None


def refresher(arm: FakeArm, cache: FactsCache, **overrides: Any) -> ContextRefresher:
    return ContextRefresher(settings(arm, **overrides), cache, sleep=no_sleep)


def key(arm: FakeArm, api: str) -> str:
    return api_key(f"{arm.base_path}/apis/{api}")


async def test_tags_and_counters_of_every_api_are_read_across_pages(
    arm: FakeArm, session: aiohttp.ClientSession
) -> None:
    cache = FactsCache()
    assert await refresher(arm, cache).refresh(session)
    orders = cache.get(key(arm, "orders-api"))
    assert orders is not None
    assert orders.tags == ("PCI", "team-payments", "tier-1")
    assert orders.collection == ApiCollection(
        endpoints=14, unauthenticated=2, external=9, sensitive_data=3
    )
    users = cache.get(key(arm, "users-api"))
    assert users is not None
    assert users.collection is not None
    assert (users.collection.inactive, users.collection.sensitivity_label) == (4, "Confidential")
    legacy = cache.get(key(arm, "legacy-api"))
    assert legacy is not None
    assert (legacy.tags, legacy.collection) == ((), None)
    # Five APIs two a page, three tags two a page, two collections: every page was read.
    listed = [r for r in arm.requests if r.path.endswith("/apis")]
    assert [r.query.get("$skip") for r in listed] == [None, "2", "4"]
    collections = [r for r in arm.requests if r.path.endswith("/apiCollections")]
    assert {r.query["api-version"] for r in collections} == {"2023-11-15"}
    assert {r.query["api-version"] for r in listed} == {"2022-08-01"}
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in listed)


async def test_throttling_and_server_errors_are_retried_after_retry_after(
    arm: FakeArm, session: aiohttp.ClientSession
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    arm.fail_next(method="GET", path_contains="/apis", status=429, retry_after=7)
    arm.fail_next(method="GET", path_contains="/apiCollections", status=503)
    cache = FactsCache()
    assert await ContextRefresher(settings(arm), cache, sleep=sleep).refresh(session)
    assert waits[0] == 7
    assert len(waits) == 2
    assert cache.get(key(arm, "orders-api")) is not None


async def test_a_failed_read_keeps_the_last_facts_and_reports_why(
    arm: FakeArm, session: aiohttp.ClientSession
) -> None:
    cache = FactsCache()
    refresh = refresher(arm, cache)
    assert await refresh.refresh(session)
    arm.untag_api("orders-api", "tier-1")
    arm.fail_next(
        method="GET",
        path_contains="/apis",
        status=403,
        times=1,
        message="The client has no access.",
    )
    assert not await refresh.refresh(session)
    status = refresh.status[arm.service]
    assert "403" in status.last_error
    assert "(the application needs Reader on the API Management service)" in status.last_error
    assert "no access" in status.last_error
    assert SECRET not in status.last_error
    orders = cache.get(key(arm, "orders-api"))
    assert orders is not None
    assert "tier-1" in orders.tags
    assert await refresh.refresh(session)
    orders = cache.get(key(arm, "orders-api"))
    assert orders is not None
    assert "tier-1" not in orders.tags
    assert status.last_error == ""
    assert status.apis == 5
    assert status.collections == 2


async def test_without_defender_for_apis_the_tags_still_count(
    arm: FakeArm, session: aiohttp.ClientSession
) -> None:
    arm.fail_next(method="GET", path_contains="/apiCollections", status=404, times=1)
    cache = FactsCache()
    assert await refresher(arm, cache).refresh(session)
    orders = cache.get(key(arm, "orders-api"))
    assert orders is not None
    assert orders.tags
    assert orders.collection is None
    skipped = FactsCache()
    assert await refresher(arm, skipped, collections=False).refresh(session)
    assert not any(r.path.endswith("/apiCollections") for r in arm.requests[-8:])


async def test_a_next_page_outside_arm_is_not_followed(
    arm: FakeArm, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def elsewhere(self: FakeArm, ctx: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"value": items[:1], "nextLink": "https://evil.example/steal?api-version=1"}

    monkeypatch.setattr(FakeArm, "_page", elsewhere)
    refresh = refresher(arm, FactsCache())
    assert not await refresh.refresh(session)
    assert "outside ARM" in refresh.status[arm.service].last_error


async def test_ingest_uses_what_was_read(arm: FakeArm, session: aiohttp.ClientSession) -> None:
    rule = OwnershipRule.model_validate(
        {"match": {"tags": ["team-payments", "pci"]}, "owner": "payments-team"}
    )
    enricher = Enricher([rule], settings(arm))
    payload = {
        "schema": "clampdown.finding/v1",
        "source": "waf",
        "id": "1",
        "type": "probe",
        "api": f"{arm.base_path}/apis/orders-api/operations/getOrder",
    }
    [before] = enricher.enrich(normalize(payload))
    assert before.context.owner == ""
    assert await ContextRefresher(enricher.settings or settings(arm), enricher.facts).refresh(
        session
    )
    [after] = enricher.enrich(normalize(payload))
    assert after.context.owner == "payments-team"
    assert after.context.sensitivity == "high"  # three endpoints expose sensitive data
    assert after.context.collection is not None
    assert after.context.collection.unauthenticated == 2


def test_the_api_reads_facts_in_the_background_and_ingest_uses_them(
    arm: FakeArm, tmp_path: Path, database_url: str
) -> None:
    """With `context` configured, the app's lifespan runs the refresher; ingest never waits."""
    source = settings(arm).apim[0].model_dump(mode="json")
    rules = [{"match": {"tags": ["team-payments"]}, "owner": "payments-team"}]
    config = make_config(tmp_path, ownership=rules, context={"apim": [source]})
    app = Clampdown.open(config, database_url=database_url)
    payload = {
        "schema": "clampdown.finding/v1",
        "source": "waf",
        "id": "bg-1",
        "type": "probe",
        "api": f"{arm.base_path}/apis/orders-api",
    }
    try:
        with TestClient(create_app(app, run_worker=False)) as client:
            deadline = time.monotonic() + 10
            while len(app.enricher.facts) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            answer = client.post("/v1/ingest", json=payload, headers=auth("ingest"))
            assert answer.status_code == 202, answer.text
            finding_id = answer.json()["findings"][0]["finding_id"]
            stored = client.get(f"/v1/findings/{finding_id}", headers=auth("read")).json()
    finally:
        app.close()
    assert stored["context"]["owner"] == "payments-team"
    assert stored["context"]["tags"] == ["PCI", "team-payments", "tier-1"]
    assert stored["context"]["collection"]["external"] == 9
