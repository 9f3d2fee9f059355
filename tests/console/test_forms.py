"""Every form that acts is guarded: CSRF token, same origin, approve scope; GET changes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from clampdown.services import Clampdown
from tests.console.conftest import Ingest, csrf_of, login


def state_of(app: Clampdown, rid: str) -> str:
    return str(app.get_remediation(rid)["state"])


def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    response = client.post(f"/console/remediations/{rid}/approve", data={"note": "x"})
    assert response.status_code == 403
    assert 'id="error"' in response.text
    assert "security token is missing or wrong" in response.text
    assert state_of(console_app, rid) == "awaiting_approval"


def test_a_wrong_csrf_token_is_403(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    page = client.get(f"/console/remediations/{rid}").text
    for wrong in ("nope", csrf_of(page)[:-1], csrf_of(page) + "x"):
        response = client.post(f"/console/remediations/{rid}/reject", data={"csrf": wrong})
        assert response.status_code == 403
    assert state_of(console_app, rid) == "awaiting_approval"


def test_the_csrf_token_of_another_session_is_403(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    old = csrf_of(client.get("/console/").text)
    client.cookies.clear()
    login(client)
    response = client.post(f"/console/remediations/{rid}/approve", data={"csrf": old})
    assert response.status_code == 403
    assert state_of(console_app, rid) == "awaiting_approval"


def test_a_post_from_another_origin_is_403(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    login(client)
    csrf = csrf_of(client.get(f"/console/remediations/{rid}").text)
    url = f"/console/remediations/{rid}/approve"
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/console/"},
    ):
        response = client.post(url, data={"csrf": csrf}, headers=headers)
        assert response.status_code == 403, headers
        assert "another site" in response.text
    assert state_of(console_app, rid) == "awaiting_approval"
    same = client.post(
        url,
        data={"csrf": csrf},
        headers={"Origin": "http://testserver", "Referer": "http://testserver/console/"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert state_of(console_app, rid) != "awaiting_approval"


def test_a_read_only_token_sees_no_forms_and_its_posts_are_403(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    ingest("block-me", settle=True)
    [containment] = console_app.list_containments()
    login(client, "read")
    for page in ("/console/", f"/console/remediations/{rid}", "/console/containments"):
        html = client.get(page).text
        assert "<form" in html  # the logout form
        assert 'id="approve-' not in html
        assert 'id="reject-' not in html
        assert 'id="undo-' not in html
        assert 'id="extend-' not in html
    csrf = csrf_of(client.get("/console/").text)  # the logout form's
    for action in (
        f"/console/remediations/{rid}/approve",
        f"/console/remediations/{rid}/reject",
        f"/console/containments/{containment['id']}/undo",
        f"/console/containments/{containment['id']}/extend",
    ):
        response = client.post(action, data={"csrf": csrf, "by": "1h"})
        assert response.status_code == 403, action
        assert "may read but not act" in response.text
    assert state_of(console_app, rid) == "awaiting_approval"
    assert console_app.list_containments() == [containment]


def test_a_post_without_a_session_goes_to_the_login_form(
    client: TestClient, console_app: Clampdown, ingest: Ingest
) -> None:
    rid = ingest("approve-me")
    response = client.post(
        f"/console/remediations/{rid}/approve", data={"csrf": "x"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login")
    assert state_of(console_app, rid) == "awaiting_approval"


def test_a_get_never_acts(client: TestClient, console_app: Clampdown, ingest: Ingest) -> None:
    rid = ingest("approve-me")
    login(client)
    for path in (f"/console/remediations/{rid}/approve", f"/console/remediations/{rid}/reject"):
        assert client.get(path).status_code == 404
    assert state_of(console_app, rid) == "awaiting_approval"
