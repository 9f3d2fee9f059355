"""Shared fixtures: a fresh database on every backend, the app, fakes, sample findings."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clampdown.config import Config
from clampdown.services import Clampdown
from clampdown.store.db import Database
from clampdown.store.tables import Base
from tests.fakes import WebhookReceiver


def pytest_configure(config: pytest.Config) -> None:
    """Wide consoles in every test process (xdist workers too): Rich reads COLUMNS when the
    CLI's consoles are made, and wrapped messages would not compare."""
    os.environ.setdefault("COLUMNS", "250")


REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "findings"
POSTGRES_URL = os.environ.get(
    "CLAMPDOWN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CLAMPDOWN_REQUIRE_POSTGRES") == "1"


def sample(name: str) -> Any:
    """A sample finding file from the shared fixtures, parsed."""
    return json.loads((FIXTURES / name).read_text())


def suspicious_ip_alert(n: int, ip: str | None = None) -> dict[str, Any]:
    """The suspicious-IP sample as alert number `n` (its own ids), optionally from `ip`."""
    alert = copy.deepcopy(sample("defender-rest-suspicious-ip.json"))
    alert["name"] = f"alert-{n}"
    alert["id"] = alert["id"].rsplit("/", 1)[0] + f"/alert-{n}"
    alert["properties"]["systemAlertId"] = f"alert-{n}"
    if ip is not None:
        for entity in alert["properties"].get("entities", []):
            if entity.get("type") == "ip":
                entity["address"] = ip
    return alert


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this run (None when no server answers)."""
    admin = Database(POSTGRES_URL)
    name = f"clampdown_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        if REQUIRE_POSTGRES:
            raise
        yield None
        return
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    db.migrate()
    db.dispose()
    yield url
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: str | None
) -> str:
    """An empty, migrated database: a new SQLite file, or the PostgreSQL one truncated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clampdown.db'}"
    if postgres_database is None:
        pytest.skip("PostgreSQL is not reachable")
    db = Database(postgres_database)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.write() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose()
    return postgres_database


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A running webhook receiver on localhost."""
    receiver = WebhookReceiver()
    with receiver.running():
        yield receiver


TOKENS = {"ingest": "t-ingest", "read": "t-read", "approve": "t-approve", "admin": "t-admin"}


def make_config(tmp_path: Path, **extra: Any) -> Config:
    """A config with one token per scope (secrets in files) plus `extra` settings."""
    tokens = []
    for scope, secret in TOKENS.items():
        path = tmp_path / f"token-{scope}"
        path.write_text(secret)
        tokens.append({"name": scope, "secret": {"file": str(path)}, "scopes": [scope]})
    data: dict[str, Any] = {"tokens": tokens, **extra}
    return Config.model_validate(data)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The default config with test tokens."""
    return make_config(tmp_path)


@pytest.fixture
def app(config: Config, database_url: str) -> Iterator[Clampdown]:
    """The application on a fresh database with the default pack."""
    clampdown = Clampdown.open(config, database_url=database_url)
    yield clampdown
    clampdown.close()
