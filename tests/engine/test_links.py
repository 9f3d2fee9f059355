"""Signed links: a page on GET, the act on POST, refused when forged, expired or unset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.links import Links
from clampdown.services import Clampdown
from tests.conftest import sample
from tests.engine.conftest import AppFactory

APPROVAL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: approve-first}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: approval
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


@pytest.fixture
def linked(make_app: AppFactory, tmp_path: Path) -> Iterator[tuple[Clampdown, TestClient]]:
    secret = tmp_path / "link-secret"
    secret.write_text("a-long-random-link-secret")
    app = make_app(
        APPROVAL,
        links={"base_url": "https://clampdown.example.com", "secret": {"file": str(secret)}},
    )
    with TestClient(create_app(app)) as client:
        yield app, client


def _waiting(app: Clampdown) -> str:
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    return result.remediations[0].remediation_id


def _path(link: str) -> str:
    return link.removeprefix("https://clampdown.example.com")


def test_opening_a_link_asks_and_only_the_post_approves(
    linked: tuple[Clampdown, TestClient],
) -> None:
    app, client = linked
    assert app.links is not None
    rid = _waiting(app)
    link = app.links.make(rid, "approve")
    page = client.get(_path(link))
    assert page.status_code == 200
    assert '<form method="post"><button type="submit">Approve</button></form>' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert app.get_remediation(rid)["state"] == "awaiting_approval"

    done = client.post(_path(link))
    assert done.status_code == 200
    rem = app.get_remediation(rid)
    assert rem["state"] in ("running", "verifying", "succeeded")
    approval = next(h for h in rem["history"] if h["reason"].startswith("approved"))
    assert approval["actor"] == "link:approve"
    # Used once: the remediation no longer waits, so the same link is refused.
    again = client.post(_path(link))
    assert again.status_code == 409


def test_reject_link(linked: tuple[Clampdown, TestClient]) -> None:
    app, client = linked
    assert app.links is not None
    rid = _waiting(app)
    assert client.post(_path(app.links.make(rid, "reject"))).status_code == 200
    assert app.get_remediation(rid)["state"] == "rejected"


def test_forged_and_expired_links_are_refused(linked: tuple[Clampdown, TestClient]) -> None:
    app, client = linked
    assert app.links is not None
    rid = _waiting(app)
    link = app.links.make(rid, "approve")
    forged = Links("https://clampdown.example.com", b"another secret", timedelta(hours=1))
    for bad in (forged.make(rid, "approve"), link[:-2] + "xx", link + "x"):
        response = client.post(_path(bad))
        assert response.status_code == 400
        assert "this link is not valid" in response.text
    old = app.links.make(rid, "approve", now=datetime.now(UTC) - timedelta(days=2))
    assert "this link has expired" in client.get(_path(old)).text
    assert app.get_remediation(rid)["state"] == "awaiting_approval"


def test_without_a_links_config_there_are_no_links(make_app: AppFactory) -> None:
    with TestClient(create_app(make_app(APPROVAL))) as client:
        response = client.get("/v1/links/abc.def")
    assert response.status_code == 404
    assert "links are not configured" in response.text
