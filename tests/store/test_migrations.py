"""The Alembic migration creates exactly the schema of the SQLAlchemy models."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from clampdown.store import findings
from clampdown.store.db import Database
from clampdown.store.tables import Base, FindingRow, table
from tests.store.conftest import make_finding


def schema_differences(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrated_schema_matches_the_models(db: Database) -> None:
    """Autogenerate finds nothing to add, drop or alter after `migrate`."""
    assert schema_differences(db) == []


def test_every_model_table_exists_with_its_indexes(db: Database) -> None:
    inspector = inspect(db.engine)
    assert set(Base.metadata.tables) <= set(inspector.get_table_names())
    unique = {
        frozenset(i["column_names"]) for i in inspector.get_indexes("findings") if i["unique"]
    }
    assert frozenset({"source", "source_id"}) in unique


def test_migrating_again_is_a_no_op(db: Database) -> None:
    """A second `migrate` keeps the data, the revision and the schema."""
    now = datetime.now(UTC)
    with db.write() as conn:
        findings.insert_if_new(conn, make_finding("kept"), now=now)
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    db.migrate()
    db.migrate()
    with db.read() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        count = conn.execute(select(func.count()).select_from(table(FindingRow))).scalar_one()
    assert versions == [revision]
    assert count == 1
    assert schema_differences(db) == []
