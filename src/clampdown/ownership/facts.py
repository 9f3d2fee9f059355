"""What is known of each API from the gateway and the detector: its tags and Defender's counters.

The refresher replaces one service's facts at a time; ingest only reads. Each replacement
swaps whole dictionaries, so a reader sees either the old facts or the new ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clampdown.model import ApiCollection, ApiRef

_OPERATIONS = "/operations/"


@dataclass(frozen=True, slots=True)
class ApiFacts:
    """The tags and Defender for APIs counters of one API."""

    tags: tuple[str, ...] = ()
    collection: ApiCollection | None = None


def api_key(api_id: str) -> str:
    """The key of the API an id names: lowercased, without its `/operations/...` part."""
    key = api_id.strip().lower().rstrip("/")
    cut = key.find(_OPERATIONS)
    return key[:cut] if cut >= 0 else key


def api_keys(ref: ApiRef) -> tuple[str, ...]:
    """The ids a reference is known by, lowercased: itself and, for an operation, its API."""
    own = ref.id.strip().lower().rstrip("/")
    parent = api_key(ref.id)
    return (own,) if own == parent else (own, parent)


class FactsCache:
    """API facts by API key, kept per service so that one failing service keeps its last facts."""

    def __init__(self) -> None:
        self._tags: dict[str, dict[str, tuple[str, ...]]] = {}
        self._collections: dict[str, dict[str, ApiCollection]] = {}
        self._flat: dict[str, ApiFacts] = {}
        self.version = 0
        """Changes with every replacement: what was derived from older facts is stale."""

    def get(self, key: str) -> ApiFacts | None:
        """The facts of the API with that key (see `api_key`), or None."""
        return self._flat.get(key)

    def __len__(self) -> int:
        return len(self._flat)

    def replace_tags(self, service: str, tags: Mapping[str, tuple[str, ...]]) -> None:
        """The tags of every API of `service` (a service id), replacing the previous ones."""
        self._tags = {**self._tags, service.lower(): dict(tags)}
        self._rebuild()

    def replace_collections(self, service: str, counters: Mapping[str, ApiCollection]) -> None:
        """Defender's counters of every API of `service`, replacing the previous ones."""
        self._collections = {**self._collections, service.lower(): dict(counters)}
        self._rebuild()

    def _rebuild(self) -> None:
        tags = {k: v for per_service in self._tags.values() for k, v in per_service.items()}
        counters = {
            k: v for per_service in self._collections.values() for k, v in per_service.items()
        }
        self._flat = {
            key: ApiFacts(tags.get(key, ()), counters.get(key)) for key in tags.keys() | counters
        }
        self.version += 1
