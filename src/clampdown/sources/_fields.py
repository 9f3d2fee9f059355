"""Helpers shared by the normalizers: lenient, case-insensitive reading of untrusted JSON.

Nothing here raises anything but `NormalizationError`; helpers that read optional data
return None or an empty value when it is missing or malformed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from clampdown.errors import NormalizationError
from clampdown.model import ApiRef, Severity

MAX_TEXT = 8192
"""Longest string kept in any field of a Finding (characters); longer ones are truncated."""

MAX_ITEMS = 1000
"""Most items kept in any list or map of a Finding."""

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (dict, "object"),
    (list, "array"),
    (str, "string"),
    (int, "number"),
    (float, "number"),
    (type(None), "null"),
)


def json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


class Fields:
    """A JSON object read with case-insensitive keys, remembering where it sits in the payload."""

    __slots__ = ("_folded", "data", "where")

    def __init__(self, data: dict[str, object], where: str = "") -> None:
        self.data = data
        self.where = where
        self._folded: dict[str, object] | None = None

    def path(self, name: str) -> str:
        """The location of `name` inside this object, e.g. `records[3].properties.alertType`."""
        return f"{self.where}.{name}" if self.where else name

    def _lookup(self, name: str) -> object:
        if name in self.data:
            return self.data[name]
        if self._folded is None:
            folded: dict[str, object] = {}
            for key, value in self.data.items():
                if isinstance(key, str):
                    folded.setdefault(key.lower(), value)
            self._folded = folded
        return self._folded.get(name.lower())

    def get(self, *names: str) -> object:
        """The value of the first of `names` that is present and not null."""
        for name in names:
            value = self._lookup(name)
            if value is not None:
                return value
        return None

    def text(self, *names: str) -> str | None:
        """The first non-blank string (or integer, as text) among `names`."""
        for name in names:
            value = as_text(self._lookup(name))
            if value is not None:
                return value
        return None

    def require_text(self, *names: str) -> str:
        """Like `text`, stripped, but a missing value is an error naming the first name."""
        value = self.text(*names)
        if value is None:
            found = self.get(*names)
            problem = "is missing" if found is None else f"must be a string, not {json_type(found)}"
            raise NormalizationError(f"required field {problem}", where=self.path(names[0]))
        return value.strip()

    def child(self, *names: str) -> Fields | None:
        """The first of `names` holding an object (also when the object is JSON in a string)."""
        for name in names:
            value = parse_json_text(self._lookup(name))
            if isinstance(value, dict):
                return Fields(value, self.path(name))
        return None

    def require_child(self, name: str) -> Fields:
        """Like `child`, but a missing object is an error."""
        found = self.child(name)
        if found is None:
            value = self.get(name)
            problem = (
                "is missing" if value is None else f"must be an object, not {json_type(value)}"
            )
            raise NormalizationError(f"required field {problem}", where=self.path(name))
        return found

    def items(self, *names: str) -> list[object]:
        """The first of `names` holding an array (also JSON in a string); else empty."""
        for name in names:
            value = parse_json_text(self._lookup(name))
            if isinstance(value, list):
                return value
        return []

    def children(self, *names: str) -> list[Fields]:
        """The objects of the first array among `names`; other items are skipped."""
        for name in names:
            value = parse_json_text(self._lookup(name))
            if isinstance(value, list):
                base = self.path(name)
                return [
                    Fields(item, f"{base}[{index}]")
                    for index, item in enumerate(value)
                    if isinstance(item, dict)
                ]
        return []


def as_text(value: object) -> str | None:
    """A non-blank string as-is, an integer as text, anything else None."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_json_text(value: object) -> object:
    """Decode a string that holds JSON (as SecurityAlert rows do); other values pass through.

    A string that is not valid JSON gives None: callers then see the field as absent.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def unique(values: Iterable[str]) -> list[str]:
    """Drop blanks and repeats, keep the first occurrence's order."""
    seen: dict[str, None] = {}
    for value in values:
        text = value.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def text_list(value: object, *, split: bool = False) -> list[str]:
    """Strings from an array, a JSON array in a string, or a single string.

    With `split`, strings are also split on commas ("Discovery, Impact").
    """
    decoded = parse_json_text(value) if isinstance(value, str) else value
    if isinstance(value, str) and not isinstance(decoded, list):
        decoded = [value]
    if not isinstance(decoded, list):
        return []
    texts = [item for item in decoded if isinstance(item, str)]
    if split:
        texts = [part for item in texts for part in item.split(",")]
    return unique(texts)


def clean_ips(values: Iterable[object]) -> list[str]:
    """Valid IPv4/IPv6 addresses in canonical compressed form, repeats and junk dropped."""
    found: dict[str, None] = {}
    for value in values:
        if not isinstance(value, str) or "%" in value:  # scoped IPv6 names a local link only
            continue
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        found.setdefault(str(address), None)
    return list(found)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 string or epoch milliseconds as an aware UTC datetime; else None.

    A string without an offset is taken as UTC.
    """
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value / 1000, tz=UTC)
        else:
            return None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


_APIM_LEVELS = ("service", "apis", "operations")


def api_ref(resource_id: str) -> ApiRef:
    """Read an ARM id; APIM service/API/operation names are filled when the id has them."""
    rid = resource_id.strip()[:MAX_TEXT]
    segments = rid.split("/")
    names: list[str] = []
    for index in range(len(segments) - 1):
        if (
            segments[index].lower() == "providers"
            and segments[index + 1].lower() == "microsoft.apimanagement"
        ):
            tail = segments[index + 2 :]
            for level, position in zip(_APIM_LEVELS, range(0, len(tail) - 1, 2), strict=False):
                if tail[position].lower() != level or not tail[position + 1]:
                    break
                names.append(tail[position + 1])
            break
    padded = [*names, None, None, None]
    return ApiRef(id=rid, service=padded[0], api=padded[1], operation=padded[2])


def _specificity(ref: ApiRef) -> int:
    return sum(part is not None for part in (ref.service, ref.api, ref.operation))


def api_refs(resource_ids: Iterable[object]) -> list[ApiRef]:
    """ApiRefs for the given ids, repeats dropped (ARM ids ignore case), most specific first."""
    refs: dict[str, ApiRef] = {}
    for value in resource_ids:
        text = as_text(value)
        if text is None:
            continue
        ref = api_ref(text)
        refs.setdefault(ref.id.lower().rstrip("/"), ref)
    return sorted(refs.values(), key=_specificity, reverse=True)[:MAX_ITEMS]


def parse_severity(value: object, default: Severity = Severity.MEDIUM) -> Severity:
    """A severity in any casing; Graph's `unknown` is informational; unreadable gives default."""
    if not isinstance(value, str):
        return default
    if value.strip().lower() == "unknown":
        return Severity.INFORMATIONAL
    try:
        return Severity.parse(value)
    except ValueError:
        return default


def flatten(value: object) -> dict[str, str]:
    """A JSON object (or JSON in a string) as a str -> str map; other values JSON-encoded."""
    decoded = parse_json_text(value)
    if not isinstance(decoded, dict):
        return {}
    flat: dict[str, str] = {}
    for key, item in decoded.items():
        if not isinstance(key, str) or len(flat) >= MAX_ITEMS:
            continue
        if isinstance(item, str):
            flat[key] = item
            continue
        try:
            flat[key] = json.dumps(item, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            continue  # not JSON (only possible for Python callers): leave it in `raw` only
    return flat


def pick(properties: dict[str, str], *names: str) -> str | None:
    """The first non-blank value among `names`, matching keys case-insensitively."""
    folded: dict[str, str] = {}
    for key, value in properties.items():
        folded.setdefault(key.lower(), value)
    for name in names:
        found = folded.get(name.lower())
        if found is not None and found.strip():
            return found
    return None


def status_text(value: object, default: str) -> str:
    """A status lowercased, or `default` when absent."""
    text = as_text(value)
    return text.strip().lower() if text is not None else default
