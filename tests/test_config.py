"""The config file: defaults, secrets by reference, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from clampdown.config import Config, load_config
from clampdown.errors import ConfigError


def test_no_file_means_defaults_with_the_builtin_target() -> None:
    config = load_config(None)
    assert set(config.targets) == {"builtin"}
    assert config.effective_database_url() == "sqlite:///clampdown.db"


def test_the_lease_must_outlast_the_slowest_target_builtin_included() -> None:
    with pytest.raises(ValidationError, match="lease_seconds"):
        Config.model_validate({"engine": {"lease_seconds": 5}})
    with pytest.raises(ValidationError, match="slowest target timeout"):
        Config.model_validate(
            {
                "engine": {"lease_seconds": 30},
                "targets": {
                    "slow": {"type": "webhook", "url": "http://127.0.0.1:1/", "timeout": 60}
                },
            }
        )


def test_a_flow_url_is_a_secret_given_by_reference() -> None:
    with pytest.raises(ValidationError, match="signature"):
        Config.model_validate({"targets": {"f": {"type": "flow", "url": "http://x/?sig=abc"}}})


def test_secret_references_resolve_and_errors_never_show_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/secret-path")
    config = Config.model_validate({"targets": {"f": {"type": "flow", "url": {"env": "HOOK_URL"}}}})
    assert config.targets["f"].resolve_url() == "http://127.0.0.1:9/secret-path"
    monkeypatch.delenv("HOOK_URL")
    with pytest.raises(ConfigError, match="HOOK_URL is not set"):
        config.targets["f"].resolve_url()


def test_file_errors_name_the_file_and_every_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "clampdown.yaml"
    path.write_text("engin: {}\ntokens:\n  - {name: a, scopes: [read]}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}: engin:" in message
    assert f"{path}: tokens.0:" in message


def test_a_file_that_is_not_yaml_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("targets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
