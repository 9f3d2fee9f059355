"""Which playbooks apply to a finding, fast enough for thousands of playbooks.

Exact type names are looked up in a dict; glob patterns are indexed by their literal prefix;
the result for a type is cached. Cheap conditions (kind, severity, source) are checked before
any CEL `when`, and the finding is converted for CEL at most once per call.

Priorities: every matching playbook runs, highest priority first, unless an `exclusive` one
matches: then the playbooks of lower priority do not run (those of the same priority do).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cel
import structlog

from clampdown.errors import ExpressionError
from clampdown.model import Finding
from clampdown.playbooks.expressions import Expression, Needs
from clampdown.playbooks.loader import Playbook

logger = structlog.get_logger("clampdown.playbooks")

_GLOB_CHARS = re.compile(r"[*?\[]")
_ALL_SEVERITIES = 0b11111
_CACHE_LIMIT = 4096


def _pattern_test(patterns: Iterable[str]) -> Callable[[str], bool]:
    exact = frozenset(p for p in patterns if not _GLOB_CHARS.search(p))
    globs = tuple(re.compile(fnmatch.translate(p)).match for p in patterns if p not in exact)
    if not globs:
        return exact.__contains__
    return lambda value: value in exact or any(glob(value) for glob in globs)


@dataclass(frozen=True, slots=True)
class _Entry:
    playbook: Playbook
    order: tuple[int, str]
    kinds: frozenset[str] | None
    severities: int
    """Bit n set when severity rank n is admitted."""
    source: Callable[[str], bool] | None
    when: Expression | None

    @classmethod
    def of(cls, playbook: Playbook) -> _Entry:
        match = playbook.match
        severities = _ALL_SEVERITIES
        if match.severity is not None:
            severities = sum(1 << rank for rank in match.severity.ranks)
        return cls(
            playbook=playbook,
            order=(-playbook.priority, playbook.name),
            kinds=frozenset(k.value for k in match.kinds) if match.kinds is not None else None,
            severities=severities,
            source=_pattern_test(match.sources) if match.sources is not None else None,
            when=match.when,
        )


@dataclass(frozen=True, slots=True)
class _Candidates:
    entries: tuple[_Entry, ...]
    needs: Needs
    """What every `when` among the entries reads, bound once per call."""


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The playbooks that apply, best first, and the `when` conditions that failed."""

    playbooks: list[Playbook]
    errors: list[tuple[Playbook, ExpressionError]]
    exclusive: list[Playbook] = field(default_factory=list)
    """The exclusive playbooks that matched and kept those of lower priority from running."""


def select(matched: Sequence[Playbook]) -> list[Playbook]:
    """The playbooks to run among those matched (best first): an exclusive playbook keeps
    every playbook of lower priority from running; those of its own priority still run."""
    floor = next((p.priority for p in matched if p.exclusive), None)
    if floor is None:
        return list(matched)
    return [p for p in matched if p.priority >= floor]


class Matcher:
    """Finds the playbooks for a finding, ordered by priority (highest first) then name.

    An exclusive playbook that matches keeps those of lower priority out (see `select`); they
    are not even evaluated. A `when` that fails to evaluate counts as no match; `evaluate`
    returns those failures and `match` logs them as warnings.
    """

    def __init__(self, playbooks: Iterable[Playbook]) -> None:
        self._exact: dict[str, list[_Entry]] = {}
        self._globs: dict[str, list[tuple[Callable[[str], object], _Entry]]] = {}
        self._longest_prefix = 0
        self._cache: dict[str, _Candidates] = {}
        self._count = 0
        for playbook in playbooks:
            self._count += 1
            entry = _Entry.of(playbook)
            for pattern in dict.fromkeys(playbook.match.types):
                glob = _GLOB_CHARS.search(pattern)
                if glob is None:
                    self._exact.setdefault(pattern, []).append(entry)
                    continue
                prefix = pattern[: glob.start()]
                test = re.compile(fnmatch.translate(pattern)).match
                self._globs.setdefault(prefix, []).append((test, entry))
                self._longest_prefix = max(self._longest_prefix, len(prefix))

    def __len__(self) -> int:
        return self._count

    def match(self, finding: Finding) -> list[Playbook]:
        """The playbooks to run for `finding`, best first."""
        result = self.evaluate(finding)
        for playbook, error in result.errors:
            logger.warning("`when` failed, not matched", playbook=playbook.name, error=str(error))
        return result.playbooks

    def evaluate(self, finding: Finding) -> MatchResult:
        """Like `match`, also returning the `when` conditions that failed to evaluate."""
        candidates = self._candidates(finding.type)
        kind = finding.kind.value
        severity = 1 << finding.severity.rank
        matched: list[Playbook] = []
        errors: list[tuple[Playbook, ExpressionError]] = []
        exclusive: list[Playbook] = []
        context: cel.Context | None = None
        bound_vars: Mapping[str, Any] | None = None
        for entry in candidates.entries:
            if exclusive and entry.playbook.priority < exclusive[0].priority:
                break
            if entry.kinds is not None and kind not in entry.kinds:
                continue
            if not entry.severities & severity:
                continue
            if entry.source is not None and not entry.source(finding.source):
                continue
            if entry.when is not None:
                if context is None:
                    context = candidates.needs.bind({"finding": finding.expression_view()})
                needs = entry.when.needs.variables
                if "playbook" in needs:
                    context.add_variable("playbook", {"name": entry.playbook.name})
                if "vars" in needs and bound_vars is not entry.playbook.variables:
                    # Playbooks loaded together share one mapping: bound once per call.
                    bound_vars = entry.playbook.variables
                    context.add_variable("vars", candidates.needs.trim("vars", bound_vars))
                try:
                    if not entry.when.test(context):
                        continue
                except ExpressionError as exc:
                    errors.append((entry.playbook, exc))
                    continue
            matched.append(entry.playbook)
            if entry.playbook.exclusive:
                exclusive.append(entry.playbook)
        return MatchResult(matched, errors, exclusive)

    def _candidates(self, finding_type: str) -> _Candidates:
        cached = self._cache.get(finding_type)
        if cached is not None:
            return cached
        found = {id(e.playbook): e for e in self._exact.get(finding_type, ())}
        for end in range(min(len(finding_type), self._longest_prefix) + 1):
            for test, entry in self._globs.get(finding_type[:end], ()):
                if test(finding_type):
                    found[id(entry.playbook)] = entry
        entries = tuple(sorted(found.values(), key=lambda e: e.order))
        needs = Needs()
        for entry in entries:
            if entry.when is not None:
                needs |= entry.when.needs
        candidates = _Candidates(entries, needs)
        if len(self._cache) >= _CACHE_LIMIT:
            # Types come from detectors and could be anything: keep the cache bounded.
            self._cache.clear()
        self._cache[finding_type] = candidates
        return candidates
