"""Console fixtures: an app with playbooks that put remediations into every state the pages
show, a test client over it, and helpers to log in and post forms as a browser would."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.services import Clampdown
from tests.conftest import TOKENS, make_config
from tests.engine.conftest import drain

PLAYBOOKS = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: approve-block, description: "Block after a person approves"}
spec:
  match: {types: [approve-me]}
  mode: approval
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
      expires: 1h
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-now}
spec:
  match: {types: [block-me]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
      expires: 1h
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: guided-review}
spec:
  match: {types: [review-me]}
  mode: guided
  steps:
    - id: review
      uses: task.create
      with:
        target: builtin
        title: "Review ${{ finding.title }}"
        why: "Seen from ${{ finding.user_agent }}"
        steps: [Read it, Fix it]
        links: ["https://docs.example.com/fix", "javascript:alert(1)"]
        owner: api-platform@example.com
        due: 3d
---
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: bound-to-fail}
spec:
  match: {types: [fail-me]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""

HOSTILE_TITLE = "<script>alert(1)</script>"
HOSTILE_AGENT = '"><img src=x onerror=alert(1)>'
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def finding(type_: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    """A finding of the generic shape, by default with the hostile title and user agent."""
    return {
        "schema": "clampdown.finding/v1",
        "source": "console-test",
        "id": f"{type_}-{n}",
        "type": type_,
        "title": HOSTILE_TITLE,
        "severity": "high",
        "ips": [f"192.0.2.{n}"],
        "user_agent": HOSTILE_AGENT,
        "url": "https://detector.example.com/findings/1",
        **fields,
    }


@pytest.fixture
def console_app(tmp_path: Path, database_url: str) -> Iterator[Clampdown]:
    """The application with the console's test playbooks, on every backend."""
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for n, document in enumerate(textwrap.dedent(PLAYBOOKS).split("\n---\n")):
        (folder / f"playbook{n}.yaml").write_text(document)
    config = make_config(
        tmp_path,
        playbooks=str(folder),
        default_pack=False,
        engine={"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.05},
    )
    app = Clampdown.open(config, database_url=database_url)
    yield app
    app.close()


@pytest.fixture
def client(console_app: Clampdown) -> Iterator[TestClient]:
    """A browser-like client of the app; the engine runs only when a test drains it."""
    with TestClient(create_app(console_app, run_worker=False)) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def login(client: TestClient, scope: str = "admin") -> Any:
    """Log in through the form with the test token of `scope`."""
    form = client.get("/console/login")
    assert form.status_code == 200
    response = client.post(
        "/console/login",
        data={"token": TOKENS[scope], "csrf": csrf_of(form.text), "next": "/console/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response


def post_form(
    client: TestClient, page: str, action: str, fields: dict[str, str] | None = None
) -> Any:
    """Open `page`, then post to `action` with the page's CSRF token, not following."""
    html = client.get(page).text
    data = {"csrf": csrf_of(html), **(fields or {})}
    return client.post(action, data=data, follow_redirects=False)


Ingest = Callable[..., str]


@pytest.fixture
def ingest(console_app: Clampdown) -> Ingest:
    """Ingest a finding of `type_` and return the id of the remediation it started."""

    def run(type_: str, n: int = 1, *, settle: bool = False, **fields: Any) -> str:
        [result] = console_app.ingest(finding(type_, n, **fields))
        [planned] = result.remediations
        if settle:
            drain(console_app)
        return planned.remediation_id

    return run
