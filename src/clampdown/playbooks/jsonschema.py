"""The published JSON Schema of playbook files, generated from the document models.

    python -m clampdown.playbooks.jsonschema > docs/playbook.schema.json

Editors use it to complete and check playbooks as they are typed. Each document of a file is
a Playbook or a Variables document; a step's `with` is checked against the parameters of the
action it `uses`, where any value may also be a string holding a `${{ }}` template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from clampdown.actions.contract import Action
from clampdown.playbooks.schema import PlaybookDocument, VariablesDocument

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TEXT = {"type": "string", "description": "a ${{ expr }} template, or text the action reads"}


class _Untitled(GenerateJsonSchema):
    """No generated titles on fields: they only repeat the key."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def playbook_json_schema(actions: Mapping[str, type[Action]] | None = None) -> dict[str, Any]:
    """The JSON Schema of a playbook file's documents; `actions` defaults to the catalog."""
    if actions is None:
        from clampdown.actions.registry import CATALOG

        actions = CATALOG
    params = sorted({a.params for a in actions.values()}, key=lambda m: m.__name__)
    models: list[type[BaseModel]] = [PlaybookDocument, VariablesDocument, *params]
    refs, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/$defs/{model}",
        schema_generator=_Untitled,
    )
    defs: dict[str, Any] = top["$defs"]
    for model in params:
        _allow_templates(defs[_name(refs[(model, "validation")])])
    step = defs["StepSpec"]
    step["allOf"] = [
        {
            "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
            "then": {"properties": {"with": refs[(action.params, "validation")]}},
        }
        for name, action in sorted(actions.items())
    ]
    step["properties"]["uses"]["examples"] = sorted(actions)
    return {
        "$schema": DIALECT,
        "title": "Clampdown playbook file",
        "description": "Every YAML document is a Playbook or a Variables document "
        "(apiVersion clampdown/v1). See docs/playbooks.md.",
        # if/then/else rather than oneOf: editors then report the playbook's own errors.
        "if": {"properties": {"kind": {"const": "Variables"}}, "required": ["kind"]},
        "then": refs[(VariablesDocument, "validation")],
        "else": refs[(PlaybookDocument, "validation")],
        "$defs": dict(sorted(defs.items())),
    }


def _name(ref: Mapping[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


_NOTES = ("description", "default", "examples")


def _allow_templates(params: dict[str, Any]) -> None:
    """Let every parameter be text too: a template, or text the action converts ('1m')."""
    properties: dict[str, Any] = params.get("properties", {})
    for name, schema in properties.items():
        constraints = {k: v for k, v in schema.items() if k not in _NOTES}
        if constraints == {"type": "string"} or {"type": "string"} in schema.get("anyOf", []):
            continue
        notes = {k: v for k, v in schema.items() if k in _NOTES}
        properties[name] = {"anyOf": [constraints, TEXT], **notes}


def render() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(playbook_json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
