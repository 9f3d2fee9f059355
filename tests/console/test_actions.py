"""Acting from the pages: approve, reject, tick a task's checklist, mark it done, undo and
extend a containment; each redirects back with a message, refusals are 4xx pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from clampdown.services import Clampdown
from clampdown.store import containments
from tests.console.conftest import Ingest, login, post_form
from tests.engine.conftest import drain


def follow(client: TestClient, response: object) -> str:
    """The page a form's 303 leads to, as the browser shows it."""
    assert response.status_code == 303  # type: ignore[attr-defined]
    return client.get(response.headers["location"]).text  # type: ignore[attr-defined]


def test_approving_from_the_page_starts_the_remediation(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    page = f"/console/remediations/{rid}"
    response = post_form(client, page, f"{page}/approve", {"note": "looks right"})
    assert response.headers["location"] == page
    shown = follow(client, response)
    assert 'id="flash"' in shown
    assert "Approved remediation" in shown
    assert 'id="flash"' not in client.get(page).text  # shown once
    rem = console_app.get_remediation(rid)
    assert rem["state"] == "running"
    approval = next(h for h in rem["history"] if h["from_state"] == "awaiting_approval")
    assert approval["actor"] == "console:admin"
    assert "looks right" in approval["reason"]
    drain(console_app)
    assert console_app.get_remediation(rid)["state"] == "succeeded"


def test_approving_from_the_overview_returns_to_the_overview(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    response = post_form(
        client, "/console/", f"/console/remediations/{rid}/approve", {"back": "/console/"}
    )
    assert response.headers["location"] == "/console/"
    assert console_app.get_remediation(rid)["state"] == "running"


def test_rejecting_from_the_page_records_the_reason(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client, "approve")
    page = f"/console/remediations/{rid}"
    response = post_form(client, page, f"{page}/reject", {"reason": "a partner's scanner"})
    assert "Rejected remediation" in follow(client, response)
    rem = console_app.get_remediation(rid)
    assert rem["state"] == "rejected"
    rejected = next(h for h in rem["history"] if h["to_state"] == "rejected")
    assert rejected["actor"] == "console:approve"
    assert "a partner's scanner" in rejected["reason"]


def test_refusals_are_pages_with_the_right_status(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    page = f"/console/remediations/{rid}"
    assert post_form(client, page, f"{page}/approve").status_code == 303
    again = post_form(client, page, f"{page}/approve")
    assert again.status_code == 409
    assert 'data-status="409"' in again.text
    assert "not awaiting_approval" in again.text
    missing = post_form(client, "/console/", "/console/remediations/nope/approve")
    assert missing.status_code == 404
    assert 'data-status="404"' in missing.text


def test_checklist_ticks_persist_and_the_task_can_be_marked_done(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("review-me", ips=[], settle=True)
    [task] = console_app.list_tasks()
    tid = task["id"]
    page = f"/console/tasks/{tid}"
    login(client)
    html = client.get(page).text
    assert f'id="tick-{tid}-0"' in html
    assert f'id="tick-{tid}-1"' in html
    shown = follow(client, post_form(client, page, f"{page}/checklist", {"step": "1", "done": "1"}))
    assert "Checklist item 2 ticked." in shown
    assert '<li data-step="1" data-done="yes"' in shown
    assert '<li data-step="0" data-done="no"' in shown
    assert "done by console:admin" in shown
    stored = console_app.get_task(tid)["steps_done"]
    assert [(t["step"], t["by"]) for t in stored] == [(1, "console:admin")]
    assert "1 of 2" in client.get("/console/tasks").text

    post_form(client, page, f"{page}/checklist", {"step": "0", "done": "1"})
    post_form(client, page, f"{page}/checklist", {"step": "1", "done": "0"})
    assert [t["step"] for t in console_app.get_task(tid)["steps_done"]] == [0]

    beyond = post_form(client, page, f"{page}/checklist", {"step": "2", "done": "1"})
    assert beyond.status_code == 400
    garbled = post_form(client, page, f"{page}/checklist", {"step": "one", "done": "1"})
    assert garbled.status_code == 400

    done = post_form(client, page, f"{page}/complete", {"note": "added validate-jwt"})
    assert "Task marked done" in follow(client, done)
    task = console_app.get_task(tid)
    assert task["status"] == "done"
    assert task["completed_by"] == "console:admin"
    assert task["note"] == "added validate-jwt"
    after = client.get(page).text
    assert f'id="tick-{tid}-0"' not in after
    assert f'id="complete-{tid}"' not in after
    late = post_form(client, "/console/tasks", f"{page}/checklist", {"step": "0", "done": "0"})
    assert late.status_code == 409
    drain(console_app)
    assert console_app.get_remediation(rid)["state"] == "succeeded"


def test_undo_from_the_page_lifts_the_containment(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("block-me", settle=True)
    [containment] = console_app.list_containments()
    cid = containment["id"]
    login(client)
    response = post_form(
        client, "/console/containments", f"/console/containments/{cid}/undo", {"reason": "fp"}
    )
    assert response.headers["location"] == "/console/containments"
    assert "Undo of containment" in follow(client, response)
    drain(console_app)
    assert console_app.list_containments() == []
    rem = console_app.get_remediation(rid)
    requested = [h for h in rem["history"] if h["actor"] == "console:admin"]
    assert requested
    assert "fp" in requested[0]["reason"]
    gone = post_form(client, "/console/containments", f"/console/containments/{cid}/undo")
    assert gone.status_code == 409
    assert "already lifted" in gone.text


def test_extend_from_the_page_moves_the_expiry(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    ingest("block-me", settle=True)
    [containment] = console_app.list_containments()
    cid = containment["id"]
    before: datetime = containment["expires_at"]
    login(client)
    response = post_form(
        client,
        "/console/containments",
        f"/console/containments/{cid}/extend",
        {"by": "4h", "note": "still probing"},
    )
    assert "extended to" in follow(client, response)
    [moved] = console_app.list_containments()
    assert moved["expires_at"] - before == timedelta(hours=4)
    bad = post_form(
        client, "/console/containments", f"/console/containments/{cid}/extend", {"by": "1y"}
    )
    assert bad.status_code == 400
    assert console_app.list_containments()[0]["expires_at"] == moved["expires_at"]
    missing = post_form(
        client, "/console/containments", "/console/containments/nope/extend", {"by": "1h"}
    )
    assert missing.status_code == 404


def test_a_permanent_containment_is_undone_but_not_extended(
    client: TestClient, console_app: Clampdown
) -> None:
    with console_app.db.write() as conn:
        cid, _ = containments.add(
            conn,
            {
                "key": "by-hand",
                "kind": "block",
                "subject_type": "ip",
                "subject": "198.51.100.9",
                "scope": "*",
                "reason": "known scraper",
                "created_by": "cli:alice",
            },
            now=datetime.now(UTC),
        )
    login(client)
    html = client.get("/console/containments").text
    assert f'id="undo-{cid}"' in html
    assert f'id="extend-{cid}"' not in html
    refused = post_form(
        client, "/console/containments", f"/console/containments/{cid}/extend", {"by": "1h"}
    )
    assert refused.status_code == 409
    assert "permanent" in refused.text
    lifted = post_form(client, "/console/containments", f"/console/containments/{cid}/undo")
    assert lifted.status_code == 303
    assert console_app.list_containments() == []
