"""Every page renders from real data, and text from alerts renders as text, never as markup."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clampdown.console import views
from clampdown.services import Clampdown
from clampdown.store import containments
from tests.console.conftest import HOSTILE_AGENT, HOSTILE_TITLE, Ingest, login

ESCAPED_TITLE = "&lt;script&gt;alert(1)&lt;/script&gt;"
ESCAPED_AGENT = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"


def assert_inert(html: str) -> None:
    """No hostile markup from the alerts made it into the page as markup."""
    assert HOSTILE_TITLE not in html
    assert HOSTILE_AGENT not in html
    assert "<img" not in html
    assert "<script" not in html
    assert 'href="javascript:' not in html.lower()


@pytest.fixture
def world(console_app: Clampdown, ingest: Ingest) -> dict[str, Any]:
    """One remediation in each state the pages show, a guided task, two containments."""
    waiting = ingest("approve-me", url="javascript:alert(1)")
    blocked = ingest("block-me")
    guided = ingest("review-me", ips=[])
    failed = ingest("fail-me", ips=[], settle=True)
    with console_app.db.write() as conn:
        containments.add(
            conn,
            {
                "key": "by-hand",
                "kind": "block",
                "subject_type": "ip",
                "subject": "198.51.100.9",
                "scope": "*",
                "reason": HOSTILE_TITLE,
                "created_by": "cli:alice",
            },
            now=datetime.now(UTC),
        )
    [task] = console_app.list_tasks()
    return {
        "waiting": waiting,
        "blocked": blocked,
        "guided": guided,
        "failed": failed,
        "task": task["id"],
    }


def test_every_page_renders_and_escapes_alert_text(
    client: TestClient, world: dict[str, Any]
) -> None:
    login(client)
    pages = [
        "/console/",
        "/console/remediations",
        "/console/remediations?state=open",
        "/console/remediations?state=failed",
        "/console/remediations?playbook=block-now",
        *(f"/console/remediations/{world[k]}" for k in ("waiting", "blocked", "guided", "failed")),
        "/console/tasks",
        "/console/tasks?status=all",
        f"/console/tasks/{world['task']}",
        "/console/containments",
        "/console/playbooks",
        "/console/effectiveness",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        assert '<meta name="viewport"' in response.text
        assert_inert(response.text)
    for page in ("/console/", "/console/remediations", f"/console/remediations/{world['waiting']}"):
        assert ESCAPED_TITLE in client.get(page).text, page
    assert ESCAPED_AGENT in client.get(f"/console/remediations/{world['blocked']}").text
    task_page = client.get(f"/console/tasks/{world['task']}").text
    assert f"Review {ESCAPED_TITLE}" in task_page
    assert ESCAPED_AGENT in task_page  # the task's "why" quotes the user agent
    assert ESCAPED_TITLE in client.get("/console/containments").text


def test_the_overview_shows_figures_and_each_list(
    client: TestClient, world: dict[str, Any]
) -> None:
    login(client)
    html = client.get("/console/").text
    assert 'id="overview"' in html
    figures = dict(re.findall(r'data-figure="(\w+)"><dt>[^<]*</dt><dd>(?:<a [^>]*>)?(\d+)', html))
    assert figures == {
        "open": "2",  # awaiting approval, and the guided one waiting for its task
        "awaiting_approval": "1",
        "active_containments": "2",
        "open_tasks": "1",
        "failed_24h": "1",
        "findings_24h": "4",
    }
    pending = html.split('id="pending"')[1].split("</section>")[0]
    assert f'data-remediation-id="{world["waiting"]}"' in pending
    assert f'id="approve-{world["waiting"]}"' in pending
    assert f'id="reject-{world["waiting"]}"' in pending
    failures = html.split('id="failures"')[1].split("</section>")[0]
    assert f'data-remediation-id="{world["failed"]}"' in failures
    assert "parameters: ip" in failures  # why it failed
    active = html.split('id="active-containments"')[1].split("</section>")[0]
    assert "permanent" in active
    assert re.search(r'class="left"[^>]*>(\d+ min|1 h)<', active)


def test_a_remediation_timeline_shows_finding_plan_and_history_in_order(
    client: TestClient, console_app: Clampdown, world: dict[str, Any]
) -> None:
    login(client)
    rid = world["blocked"]
    html = client.get(f"/console/remediations/{rid}").text
    assert f'<main id="remediation" data-remediation-id="{rid}" data-state="succeeded">' in html
    finding = html.split('id="finding"')[1].split("</section>")[0]
    assert "block-me" in finding
    assert "192.0.2.1" in finding
    assert 'href="https://detector.example.com/findings/1"' in finding
    step = html.split('id="step-block"')[1].split("</li>")[0]
    assert "gateway.block" in step
    assert "builtin" in step
    assert "<dt>Attempts</dt><dd>1</dd>" in step
    assert "verified" in step
    assert "undone on expiry" in step
    history_ids = [int(n) for n in re.findall(r'data-history-id="(\d+)"', html)]
    rem = console_app.get_remediation(rid)
    assert history_ids == [h["id"] for h in rem["history"]]
    assert history_ids == sorted(history_ids)
    assert 'id="approve-' not in html  # nothing to decide any more


def test_a_waiting_remediation_offers_approve_and_reject(
    client: TestClient, world: dict[str, Any]
) -> None:
    login(client)
    rid = world["waiting"]
    html = client.get(f"/console/remediations/{rid}").text
    assert f'id="approve-{rid}"' in html
    assert f'id="reject-{rid}"' in html
    assert f'action="/console/remediations/{rid}/approve"' in html
    # The alert's javascript: link is shown as text, not as a link.
    assert "javascript:alert(1)" in html
    assert 'id="finding-source-link"' not in html


def test_the_remediation_list_filters_and_pages(
    client: TestClient, ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [ingest("approve-me", n) for n in range(1, 6)]
    ingest("block-me")
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    login(client)
    seen: list[str] = []
    url = "/console/remediations?state=awaiting_approval&playbook=approve-block"
    while url:
        html = client.get(url).text
        rows = re.findall(r'<tr data-remediation-id="(\w+)" data-state="(\w+)"', html)
        assert len(rows) <= 2
        assert {state for _, state in rows} == {"awaiting_approval"}
        seen += [rid for rid, _ in rows]
        older = re.search(r'id="page-older" rel="next" href="([^"]+)"', html)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == list(reversed(made))
    failed = client.get("/console/remediations?state=failed").text
    assert "data-remediation-id" not in failed
    bad = client.get("/console/remediations?state=<b>bogus</b>")
    assert bad.status_code == 400
    assert "&lt;b&gt;bogus&lt;/b&gt;" in bad.text


def test_the_containments_page_lists_subject_expiry_and_forms(
    client: TestClient, console_app: Clampdown, world: dict[str, Any]
) -> None:
    login(client)
    html = client.get("/console/containments").text
    rows = {c["id"]: c for c in console_app.list_containments()}
    assert len(rows) == 2
    for cid, row in rows.items():
        assert f'data-containment-id="{cid}"' in html
        assert f'id="undo-{cid}"' in html
        assert (f'id="extend-{cid}"' in html) == (row["expires_at"] is not None)
    assert "permanent" in html
    assert world["blocked"] in html  # the remediation link
    for choice in ("1h", "4h", "24h", "7d"):
        assert f'<option value="{choice}">' in html


def test_the_playbooks_page_counts_by_state_and_shows_the_latest(
    client: TestClient, world: dict[str, Any]
) -> None:
    login(client)
    html = client.get("/console/playbooks").text
    for name, mode in (
        ("approve-block", "approval"),
        ("block-now", "automatic"),
        ("guided-review", "guided"),
        ("bound-to-fail", "automatic"),
    ):
        section = html.split(f'data-playbook="{name}"')[1].split("</section>")[0]
        assert f'data-mode="{mode}"' in html.split(f'data-playbook="{name}"')[1][:40]
        assert "1 remediation " in section
    failing = html.split('data-playbook="bound-to-fail"')[1].split("</section>")[0]
    assert 'data-state="failed"' in failing
    assert f'data-remediation-id="{world["failed"]}"' in failing


def test_the_effectiveness_page_shows_background_figures_and_charts(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    login(client)
    ingest("block-me", settle=True)
    ingest("block-me", 2, settle=True, ips=["192.0.2.1"])  # the same threat, after the close

    pending = client.get("/console/effectiveness?period=24h")
    assert pending.status_code == 200
    assert 'id="effectiveness-pending"' in pending.text
    assert '<meta http-equiv="refresh"' in pending.text  # reloads itself, without JavaScript
    console_app.snapshots.wait(timedelta(hours=24), timeout=30)

    html = client.get("/console/effectiveness?period=24h").text
    assert 'id="effectiveness-pending"' not in html
    assert 'id="figures"' in html
    for chart in ("chart-contain", "chart-outcomes", "chart-playbooks", "chart-recurring"):
        assert f'id="{chart}"' in html
    assert 'data-kind="never_fires"' in html  # the suggestions of the same report
    assert ESCAPED_TITLE in html  # the recurring threat's title, as text
    assert_inert(html)
    assert client.get("/console/effectiveness?period=1y").status_code == 400


def test_unknown_things_are_html_404_pages(client: TestClient) -> None:
    login(client)
    for path in ("/console/remediations/nope", "/console/tasks/nope", "/console/nothing/here"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert 'id="error" data-status="404"' in response.text


def test_pages_carry_the_security_headers(client: TestClient) -> None:
    login(client)
    response = client.get("/console/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # no script at all
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_the_stylesheet_is_served_and_the_root_leads_to_the_console(client: TestClient) -> None:
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307
    assert root.headers["location"] == "/console/"


def test_console_routes_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/console")]


def test_a_long_history_shows_both_ends_and_says_what_is_cut(
    client: TestClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "HISTORY_ROWS", 4)
    login(client)
    html = client.get(f"/console/remediations/{world['blocked']}").text
    shown = [int(n) for n in re.findall(r'data-history-id="(\d+)"', html)]
    assert len(shown) == 4
    assert 'id="history-skipped"' in html
    assert shown == sorted(shown)
