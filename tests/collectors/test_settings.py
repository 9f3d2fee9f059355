"""The `sources:` list of the config file: defaults, and errors naming the source and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from clampdown.collectors.settings import DEFENDER_FOR_APIS_ALERT_TYPES
from clampdown.config import Config, load_config
from clampdown.errors import ConfigError
from tests.collectors.conftest import SUB

IDENTITY = {"tenant_id": "t", "client_id": "c", "client_secret": {"env": "S"}}


def load(tmp_path: Path, *sources: object) -> Config:
    path = tmp_path / "clampdown.yaml"
    path.write_text(yaml.safe_dump({"sources": list(sources)}))
    return load_config(path)


def test_defaults_are_the_real_services_every_5_minutes_with_10_minutes_overlap(
    tmp_path: Path,
) -> None:
    config = load(
        tmp_path,
        {
            "name": "a",
            "type": "defender-alerts",
            "identity": IDENTITY,
            "scope": {"subscription_id": SUB},
        },
        {"name": "g", "type": "graph-alerts", "identity": IDENTITY},
    )
    alerts, graph = config.sources
    assert alerts.type == "defender-alerts"
    assert alerts.interval == timedelta(minutes=5)
    assert alerts.overlap == timedelta(minutes=10)
    assert alerts.enabled
    assert tuple(alerts.alert_types) == DEFENDER_FOR_APIS_ALERT_TYPES
    assert len(DEFENDER_FOR_APIS_ALERT_TYPES) == 12
    assert alerts.origins() == ["https://management.azure.com", "https://login.microsoftonline.com"]
    assert graph.origins() == ["https://graph.microsoft.com", "https://login.microsoftonline.com"]
    assert graph.detection_source == "microsoftDefenderForApiManagement"


def test_errors_name_the_source_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            {
                "name": "prod",
                "type": "defender-alerts",
                "identity": {**IDENTITY, "client_secret": "inline"},
                "scope": {"subscription_id": "not-a-guid", "resource_group": "../x"},
                "interval": "5x",
                "management_url": "ftp://example.com",
            },
            {"name": "odd", "type": "sentinel"},
            {"name": "g", "type": "graph-alerts", "identity": IDENTITY, "overlap": -5},
        )
    message = str(caught.value)
    for where in (
        "sources[prod].identity.client_secret: Value error, give a secret by reference",
        "sources[prod].scope.subscription_id: Value error, 'not-a-guid' is not a subscription id",
        "sources[prod].scope.resource_group: Value error, '../x' is not a resource group name",
        "sources[prod].interval: Value error, not a duration: '5x'",
        "sources[prod].management_url: Value error, 'ftp://example.com' is not an http(s) URL",
        "sources[odd]: Input tag 'sentinel' found using 'type' does not match",
        "sources[g].overlap: Value error, a duration cannot be negative",
    ):
        assert where in message


def test_source_names_are_unique_and_plain(tmp_path: Path) -> None:
    twice = {"name": "g", "type": "graph-alerts", "identity": IDENTITY}
    with pytest.raises(ConfigError, match="two sources are named 'g'"):
        load(tmp_path, twice, twice)
    with pytest.raises(ConfigError, match=r"sources\[a b\]\.name: Value error, 'a b': letters"):
        load(tmp_path, {**twice, "name": "a b"})


def test_an_arm_source_needs_its_scope(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[p\]\.scope: Field required"):
        load(tmp_path, {"name": "p", "type": "defender-assessments", "identity": IDENTITY})
