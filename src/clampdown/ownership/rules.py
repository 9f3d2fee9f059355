"""Ownership rules compiled for matching: the first rule that matches one of a finding's APIs.

A rule matches an API when every selector it gives holds: one of its `ids` patterns matches
the API's ARM id (or, for an operation, the id of its API), one of its `names` patterns
matches the API's name, and the API carries all of its `tags`. Everything is compared in
lowercase; patterns are shell-style globs, whose `*` also crosses `/`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clampdown.model import ApiRef, FindingContext, Sensitivity
from clampdown.ownership.facts import ApiFacts, api_key, api_keys
from clampdown.ownership.settings import OwnershipRule

FactsOf = Callable[[str], ApiFacts | None]


def _glob(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p.strip().lower())})" for p in patterns))


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: OwnershipRule
    label: str
    ids: re.Pattern[str] | None
    names: re.Pattern[str] | None
    tags: frozenset[str]

    def matches(self, ref: ApiRef, tags: frozenset[str]) -> bool:
        if self.ids is not None and not any(self.ids.fullmatch(k) for k in api_keys(ref)):
            return False
        if self.names is not None and not self.names.fullmatch((ref.api or "").lower()):
            return False
        return self.tags <= tags


def derived_sensitivity(facts: ApiFacts | None) -> Sensitivity:
    """What Defender's counters say when no rule does: high when sensitive data is exposed."""
    if facts is not None and facts.collection is not None and facts.collection.sensitive_data:
        return "high"
    return ""


class Ownership:
    """The configured rules, in order; `context` gives the context of a finding's APIs."""

    def __init__(self, rules: Sequence[OwnershipRule]) -> None:
        self._rules = [
            _Compiled(
                rule,
                rule.label(index),
                _glob(rule.match.ids),
                _glob(rule.match.names),
                frozenset(t.strip().lower() for t in rule.match.tags),
            )
            for index, rule in enumerate(rules)
        ]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def context(self, apis: Sequence[ApiRef], facts_of: FactsOf) -> FindingContext:
        """The first rule matching one of `apis` (most specific first), with the API's facts."""
        known = [(ref, facts_of(api_key(ref.id))) for ref in apis]
        for compiled in self._rules:
            for ref, facts in known:
                tags = frozenset(t.lower() for t in facts.tags) if facts else frozenset()
                if compiled.matches(ref, tags):
                    return _context(facts, compiled)
        main = next((facts for _, facts in known if facts is not None), None)
        return _context(main, None)


def _context(facts: ApiFacts | None, compiled: _Compiled | None) -> FindingContext:
    rule = compiled.rule if compiled is not None else None
    tags = list(facts.tags) if facts else []
    seen = {t.lower() for t in tags}
    for tag in rule.tags if rule else []:
        if tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return FindingContext(
        owner=rule.owner if rule else "",
        channel=(rule.channel or "") if rule else "",
        sensitivity=(rule.sensitivity if rule and rule.sensitivity else None)
        or derived_sensitivity(facts),
        tags=tags,
        rule=compiled.label if compiled else "",
        collection=facts.collection if facts else None,
    )
