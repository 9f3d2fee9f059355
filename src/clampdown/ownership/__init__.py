"""Ownership and context: who owns each API, where to tell them, and what is known of it.

Findings get their `context` at ingest (`Enricher`) from the config's `ownership` rules and
from API facts (APIM tags, Defender for APIs counters) that `ContextRefresher` reads in the
background. See docs/configuration.md (ownership, context) and docs/playbooks.md.
"""

from clampdown.ownership.enrich import Enricher
from clampdown.ownership.facts import ApiFacts, FactsCache, api_key
from clampdown.ownership.rules import Ownership
from clampdown.ownership.settings import (
    NOTIFY_TARGET_TYPES,
    ApimContext,
    ContextConfig,
    OwnershipMatch,
    OwnershipRule,
    channel_problems,
)

__all__ = [
    "NOTIFY_TARGET_TYPES",
    "ApiFacts",
    "ApimContext",
    "ContextConfig",
    "Enricher",
    "FactsCache",
    "Ownership",
    "OwnershipMatch",
    "OwnershipRule",
    "api_key",
    "channel_problems",
]
