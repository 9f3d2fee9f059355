"""The published JSON Schema: generated from the models, committed, and accepting the pack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clampdown.actions.registry import CATALOG
from clampdown.playbooks.jsonschema import playbook_json_schema, render

DOCS = Path(__file__).resolve().parents[2] / "docs"
PACK = Path(__file__).resolve().parents[2] / "src" / "clampdown" / "playbooks" / "pack"


def test_the_committed_schema_is_up_to_date() -> None:
    committed = (DOCS / "playbook.schema.json").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/playbook.schema.json is stale: "
        "run python -m clampdown.playbooks.jsonschema > docs/playbook.schema.json"
    )


def test_documents_and_step_options_are_described() -> None:
    schema = playbook_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["then"] == {"$ref": "#/$defs/VariablesDocument"}
    assert schema["else"] == {"$ref": "#/$defs/PlaybookDocument"}
    defs = schema["$defs"]
    step = defs["StepSpec"]
    assert set(step["properties"]) == {
        *("id", "uses", "with", "if", "expires", "retries", "timeout", "on_failure"),
    }
    assert defs["OnFailure"]["enum"] == ["stop", "continue", "undo_previous"]
    assert defs["Spec"]["properties"]["exclusive"]["type"] == "boolean"
    assert step["additionalProperties"] is False
    assert "vars" in defs["VariablesSpec"]["required"]


def test_with_follows_the_action_used() -> None:
    schema = playbook_json_schema()
    rules = {
        rule["if"]["properties"]["uses"]["const"]: rule["then"]["properties"]["with"]["$ref"]
        for rule in schema["$defs"]["StepSpec"]["allOf"]
    }
    assert set(rules) == set(CATALOG)
    throttle = schema["$defs"][rules["gateway.throttle"].rsplit("/", 1)[-1]]
    assert throttle["additionalProperties"] is False
    assert "rate" in throttle["required"]
    # A number may be a template (or text the action converts, like period: 1m).
    assert {"type": "integer", "exclusiveMinimum": 0} in throttle["properties"]["rate"]["anyOf"]
    assert any(s.get("type") == "string" for s in throttle["properties"]["rate"]["anyOf"])


def _documents(paths: list[Path]) -> list[Any]:
    return [
        document
        for path in paths
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document is not None
    ]


def test_the_pack_and_a_variables_document_validate() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(playbook_json_schema())
    pack = sorted(p for p in PACK.glob("*.yaml") if not p.name.endswith(".test.yaml"))
    variables = {
        "apiVersion": "clampdown/v1",
        "kind": "Variables",
        "metadata": {"name": "shared"},
        "spec": {"vars": {"trusted_ranges": ["10.0.0.0/8"], "owners": {"orders": "a@b.c"}}},
    }
    for document in [*_documents(pack), variables]:
        assert list(validator.iter_errors(document)) == []
    broken = json.loads(json.dumps(_documents(pack[:1])[0]))
    broken["spec"]["steps"][0]["on_failure"] = "later"
    assert [e.message for e in validator.iter_errors(broken)] == [
        "'later' is not one of ['stop', 'continue', 'undo_previous']"
    ]
