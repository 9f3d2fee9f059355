"""A real `clampdown serve` and a real headless Chromium driving its console.

Chromium and ChromeDriver come from Debian's packages (`chromium`, `chromium-driver`; CI
installs them). Without them these tests are skipped, unless CLAMPDOWN_REQUIRE_BROWSER=1
makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.server import Server, write_config

ARTIFACTS = Path(
    os.environ.get("CLAMPDOWN_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver) paths, or skip (fail when the browser is required)."""
    browser = _binary("chromium", "/usr/bin/chromium", "chromium-browser")
    driver = _binary("chromedriver", "/usr/bin/chromedriver")
    if browser is None or driver is None:
        message = (
            "Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CLAMPDOWN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with its own profile; JavaScript stays on, as in a user's browser."""
    binary, driver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.set_page_load_timeout(20)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """`clampdown serve` with the default pack, on a fresh database."""
    workdir = tmp_path / "serve"
    workdir.mkdir()
    server = Server(write_config(tmp_path), database_url, workdir).start()
    try:
        yield server
    finally:
        server.stop()
