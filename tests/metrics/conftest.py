"""Metrics fixtures: a migrated database on each backend, and reading an exposition."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from clampdown.store.db import Database
from tests.engine.conftest import make_app  # noqa: F401  (the engine tests' app factory)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated, empty database."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def samples(families: Iterable[Metric]) -> Samples:
    """Every sample by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def parse(text: str) -> Samples:
    """The samples of a Prometheus text exposition (fails on anything malformed)."""
    return samples(text_string_to_metric_families(text))


def value(got: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError when there is no such series."""
    return got[(name, frozenset(labels.items()))]
