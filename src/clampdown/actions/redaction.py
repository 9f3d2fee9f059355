"""Step parameters that are secrets (a token to revoke) are shown only as fingerprints."""

from __future__ import annotations

from typing import Any

from clampdown.actions.registry import CATALOG
from clampdown.secrets import fingerprint


def secret_fields(action: str) -> frozenset[str]:
    """The parameters of `action` marked secret (`json_schema_extra={"secret": True}`)."""
    kind = CATALOG.get(action)
    if kind is None:
        return frozenset()
    return frozenset(
        name
        for name, field in kind.params.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
    )


def redacted(step: dict[str, Any]) -> dict[str, Any]:
    """The step as shown to people and API clients: secret parameters fingerprinted.

    Both the rendered parameters and a literal written in the playbook's `with` are hidden;
    a template (`${{ finding.raw.token }}`) is not a secret and stays readable.
    """
    hidden = secret_fields(str(step.get("action", "")))
    if not hidden:
        return step
    shown = dict(step)
    params = step.get("params")
    if isinstance(params, dict):
        shown["params"] = _hide(params, hidden, templates=False)
    spec = step.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("with"), dict):
        shown["spec"] = {**spec, "with": _hide(spec["with"], hidden, templates=True)}
    return shown


def _hide(values: dict[str, Any], hidden: frozenset[str], *, templates: bool) -> dict[str, Any]:
    def keep(value: Any) -> bool:
        return value is None or (templates and isinstance(value, str) and "${{" in value)

    return {k: v if k not in hidden or keep(v) else fingerprint(str(v)) for k, v in values.items()}
