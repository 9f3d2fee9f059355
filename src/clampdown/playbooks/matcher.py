"""Which playbooks apply to a finding, fast enough for thousands of playbooks.

Exact type names are looked up in a dict; glob patterns are indexed by their literal prefix.
The candidates of a (type, kind, severity, source) are cached with the cheap conditions
already applied, so a call only walks the playbooks that can match. A `when` that is exactly
`finding.a.b == "x"` or `finding.a.b in ["x", "y"]` (one playbook per API or team, the usual
shape of large deployments) is not run through CEL per playbook: the field's value is looked
up in an index. Other `when` conditions run in CEL, the finding converted at most once.

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
_FIELD = r"finding((?:\s*\.\s*[A-Za-z_]\w*)+)"
_STRING = r"""(?:"([^"\\]*)"|'([^'\\]*)')"""
_EQUALS = re.compile(rf"\s*{_FIELD}\s*==\s*{_STRING}\s*")
_IN = re.compile(rf"\s*{_FIELD}\s+in\s*\[((?:\s*{_STRING}\s*,?)*)\]\s*")
_ITEM = re.compile(_STRING)
_MISSING = object()

Guard = tuple[tuple[str, ...], frozenset[str]]
"""A field of the finding (its path below `finding`) and the strings that satisfy a `when`."""


def guard_of(when: Expression | None) -> Guard | None:
    """The guard of a `when` that is exactly a string equality or membership on one field.

    CEL gives true for those only when the field holds one of the strings (a value of another
    type gives false, a missing field an error), so an index lookup decides them.
    """
    if when is None:
        return None
    equals = _EQUALS.fullmatch(when.source)
    if equals is not None:
        return _path(equals.group(1)), frozenset({_string(equals.group(2), equals.group(3))})
    member = _IN.fullmatch(when.source)
    if member is not None:
        values = frozenset(_string(a, b) for a, b in _ITEM.findall(member.group(2)))
        return _path(member.group(1)), values
    return None


def _path(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(".") if part.strip())


def _string(double: str, single: str) -> str:
    # findall gives "" for the alternative that did not match; fullmatch gives None.
    return double if double else (single or "")


def _lookup(view: object, path: tuple[str, ...]) -> object:
    """The value at `path`, or _MISSING where CEL would fail (no such key, not a map)."""
    for part in path:
        if not isinstance(view, dict) or part not in view:
            return _MISSING
        view = view[part]
    return view


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
    guard: Guard | None

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
            guard=guard_of(match.when),
        )

    def admits(self, kind: str, severity: int, source: str) -> bool:
        """The cheap conditions: kind, severity (a bit) and source."""
        return (
            (self.kinds is None or kind in self.kinds)
            and bool(self.severities & severity)
            and (self.source is None or self.source(source))
        )


@dataclass(frozen=True, slots=True)
class _Candidates:
    entries: tuple[_Entry, ...]
    """The entries that pass the cheap conditions and have no guard, best first."""
    guarded: dict[tuple[str, ...], tuple[dict[str, tuple[_Entry, ...]], tuple[_Entry, ...]]]
    """Entries with a guard, by field: (value -> entries, every entry), each best first."""
    needs: Needs
    """What the `when` of the unguarded entries read, bound once per call."""
    all_needs: Needs
    """What every `when` reads: bound instead when a guarded field is missing."""


_Key = tuple[str, str, int, str]
"""Finding type, kind, severity rank and source: what decides the candidates."""


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
        self._cache: dict[_Key, _Candidates] = {}
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
        key = (finding.type, finding.kind.value, finding.severity.rank, finding.source)
        candidates = self._cache.get(key) or self._candidates(key)
        entries = candidates.entries
        needs = candidates.needs
        view: dict[str, Any] | None = None
        decided: set[int] = set()  # entries whose guard holds: their `when` is true
        if candidates.guarded:
            view = finding.expression_view()
            more: list[_Entry] = []
            for path, (by_value, every) in candidates.guarded.items():
                value = _lookup(view, path)
                if value is _MISSING:
                    # CEL fails on each of them: let it, so the failures are reported as usual.
                    more.extend(every)
                    needs = candidates.all_needs
                elif isinstance(value, str) and value in by_value:
                    hits = by_value[value]
                    more.extend(hits)
                    decided.update(id(entry) for entry in hits)
            if more:
                entries = tuple(sorted((*entries, *more), key=_order))
        matched: list[Playbook] = []
        errors: list[tuple[Playbook, ExpressionError]] = []
        exclusive: list[Playbook] = []
        context: cel.Context | None = None
        bound_vars: Mapping[str, Any] | None = None
        for entry in entries:
            if exclusive and entry.playbook.priority < exclusive[0].priority:
                break
            if entry.when is not None and id(entry) not in decided:
                if context is None:
                    view = view if view is not None else finding.expression_view()
                    context = needs.bind({"finding": view})
                variables = entry.when.needs.variables
                if "playbook" in variables:
                    context.add_variable("playbook", {"name": entry.playbook.name})
                if "vars" in variables and bound_vars is not entry.playbook.variables:
                    # Playbooks loaded together share one mapping: bound once per call.
                    bound_vars = entry.playbook.variables
                    context.add_variable("vars", needs.trim("vars", bound_vars))
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

    def _candidates(self, key: _Key) -> _Candidates:
        finding_type, kind, rank, source = key
        found = {id(e.playbook): e for e in self._exact.get(finding_type, ())}
        for end in range(min(len(finding_type), self._longest_prefix) + 1):
            for test, entry in self._globs.get(finding_type[:end], ()):
                if test(finding_type):
                    found[id(entry.playbook)] = entry
        severity = 1 << rank
        admitted = sorted(
            (e for e in found.values() if e.admits(kind, severity, source)), key=_order
        )
        plain: list[_Entry] = []
        by_field: dict[tuple[str, ...], dict[str, list[_Entry]]] = {}
        every: dict[tuple[str, ...], list[_Entry]] = {}
        needs = Needs()
        all_needs = Needs()
        for entry in admitted:
            if entry.when is not None:
                all_needs |= entry.when.needs
            if entry.guard is not None:
                path, values = entry.guard
                every.setdefault(path, []).append(entry)
                for value in values:
                    by_field.setdefault(path, {}).setdefault(value, []).append(entry)
                continue
            plain.append(entry)
            if entry.when is not None:
                needs |= entry.when.needs
        guarded = {
            path: ({v: tuple(es) for v, es in by_field.get(path, {}).items()}, tuple(all_))
            for path, all_ in every.items()
        }
        candidates = _Candidates(tuple(plain), guarded, needs, all_needs)
        if len(self._cache) >= _CACHE_LIMIT:
            # Types and sources come from detectors and could be anything: keep it bounded.
            self._cache.clear()
        self._cache[key] = candidates
        return candidates


def _order(entry: _Entry) -> tuple[int, str]:
    return entry.order
