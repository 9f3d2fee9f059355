"""The console in a real browser: log in, approve, undo, and see the pages reflect it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.conftest import ARTIFACTS
from tests.conftest import TOKENS, sample
from tests.e2e.server import Server, client

pytestmark = pytest.mark.slow

SUSPICIOUS_IP = "defender-rest-suspicious-ip.json"
UNUSED = "recommendation-unused-endpoint.json"


def _ingest(server: Server, name: str) -> str:
    with client(server, "ingest") as http:
        answer = http.post("/v1/ingest", json=sample(name))
        assert answer.status_code in (200, 201, 202), answer.text
        [finding] = answer.json()["findings"]
        return str(finding["remediations"][0]["id"])


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


def _state(server: Server, rid: str) -> str:
    with client(server) as http:
        return str(http.get(f"/v1/remediations/{rid}").json()["state"])


def _submit(browser: WebDriver, button: WebElement) -> None:
    """Click a form's button and wait for the page it leads to (the old one goes stale)."""
    button.click()

    def left(_: WebDriver) -> bool:
        try:
            button.is_enabled()
        except WebDriverException:
            # Stale, or Chromium's "node does not belong to the document": a new page.
            return True
        return False

    WebDriverWait(browser, 15).until(left)


def _login(browser: WebDriver, server: Server, token: str) -> None:
    browser.get(f"{server.base}/console/login")
    browser.find_element(By.NAME, "token").send_keys(token)
    _submit(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def test_login_approve_and_undo(browser: WebDriver, served: Server) -> None:
    waiting = _ingest(served, UNUSED)
    blocked = _ingest(served, SUSPICIOUS_IP)
    _until(lambda: _state(served, blocked) == "succeeded")

    browser.get(f"{served.base}/console/")
    assert "/console/login" in browser.current_url  # no session: the login form
    _login(browser, served, "wrong")
    assert "login" in browser.current_url
    _login(browser, served, TOKENS["approve"])

    overview = browser.find_element(By.ID, "overview")
    assert waiting in overview.text or browser.find_elements(By.ID, f"approve-{waiting}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console-overview.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    _submit(browser, browser.find_element(By.ID, f"approve-{waiting}"))
    _until(lambda: _state(served, waiting) != "awaiting_approval")
    browser.get(f"{served.base}/console/remediations/{waiting}")
    timeline = browser.find_element(By.TAG_NAME, "main").text
    assert "console:approve" in timeline
    assert not browser.find_elements(By.ID, f"approve-{waiting}")

    browser.get(f"{served.base}/console/containments")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-containment-id]")
    [row] = [r for r in rows if "203.0.113.77" in r.text]
    cid = row.get_attribute("data-containment-id")
    _submit(browser, browser.find_element(By.ID, f"undo-{cid}"))
    _until(lambda: _state(served, blocked) == "rolled_back")
    browser.get(f"{served.base}/console/containments")
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr[data-containment-id='{cid}']")
    browser.get(f"{served.base}/console/remediations/{blocked}")
    assert "rolled_back" in browser.find_element(By.TAG_NAME, "main").text.replace(" ", "_")
