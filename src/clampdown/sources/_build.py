"""Turn the field map a normalizer collected into a validated, size-capped `Finding`."""

from __future__ import annotations

from pydantic import ValidationError

from clampdown.errors import NormalizationError
from clampdown.model import Finding
from clampdown.sources._fields import MAX_ITEMS, MAX_TEXT


def _cap(value: object) -> object:
    """Truncate strings, lists and maps so that a hostile payload cannot bloat a Finding."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, list):
        return [_cap(item) for item in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        capped = list(value.items())[:MAX_ITEMS]
        return {str(key)[:MAX_TEXT]: _cap(item) for key, item in capped}
    return value


def build(fields: dict[str, object], *, where: str = "") -> Finding:
    """Validate `fields` as a Finding; `raw` is kept as received, everything else is capped."""
    data = {key: value if key == "raw" else _cap(value) for key, value in fields.items()}
    try:
        return Finding.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise NormalizationError(
            f"not a valid finding: {field}: {first['msg']}", where=where
        ) from exc
