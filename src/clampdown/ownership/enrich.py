"""Context on findings at ingest: ownership rules plus the API facts already in memory.

Nothing here does I/O: the facts are fetched in the background (refresher.py) and ingest
only reads what is there. Whatever context a normalizer produced is replaced, so a finding's
owner and channel only ever come from the operator's rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from clampdown.model import Finding, FindingContext
from clampdown.ownership.facts import FactsCache
from clampdown.ownership.rules import Ownership
from clampdown.ownership.settings import ContextConfig, OwnershipRule

_CACHE_LIMIT = 10_000
"""Contexts remembered per distinct set of API ids before the memo starts over."""

_EMPTY = FindingContext()


class Enricher:
    """Sets `Finding.context` from the ownership rules and the API facts cache."""

    def __init__(
        self,
        rules: Sequence[OwnershipRule] = (),
        settings: ContextConfig | None = None,
        facts: FactsCache | None = None,
    ) -> None:
        self.ownership = Ownership(rules)
        self.settings = settings
        self.facts = facts if facts is not None else FactsCache()
        self._memo: dict[tuple[str, ...], FindingContext] = {}
        self._memo_version = self.facts.version

    @property
    def active(self) -> bool:
        """False when there is nothing to add: no rule and no facts."""
        return bool(self.ownership) or len(self.facts) > 0

    def enrich(self, findings: list[Finding]) -> list[Finding]:
        """The findings with their context set (the same objects when there is nothing to set)."""
        if not self.active:
            return [
                f if f.context == _EMPTY else f.model_copy(update={"context": _EMPTY})
                for f in findings
            ]
        return [self._with_context(finding) for finding in findings]

    def context_of(self, finding: Finding) -> FindingContext:
        """The context the rules and the known facts give `finding`."""
        if not finding.apis:
            return _EMPTY
        if self._memo_version != self.facts.version or len(self._memo) >= _CACHE_LIMIT:
            self._memo = {}
            self._memo_version = self.facts.version
        key = tuple(ref.id for ref in finding.apis)
        found = self._memo.get(key)
        if found is None:
            found = self.ownership.context(finding.apis, self.facts.get)
            self._memo[key] = found
        return found

    def _with_context(self, finding: Finding) -> Finding:
        context = self.context_of(finding)
        if context == finding.context:
            return finding
        return finding.model_copy(update={"context": context})
