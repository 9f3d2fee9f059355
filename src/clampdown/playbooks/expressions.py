"""CEL expressions and `${{ expr }}` templates: compiled once, evaluated many times.

Only text written in a playbook is ever compiled. Values produced by an evaluation (anything
taken from a finding) are returned or concatenated as data and never parsed again.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import cel

from clampdown.errors import ExpressionError

VARIABLES = frozenset({"finding", "steps", "playbook", "vars", "ladder"})
"""Every variable an expression may use; `when` and `group.by` do not see `steps`."""

MATCH_VARIABLES = frozenset({"finding", "playbook", "vars"})

Path = tuple[str | int, ...]

_OPEN = "${{"
_CLOSE = "}}"
# Macros that bind a name of their own: `list.exists(x, ...)`, `cel.bind(x, ...)`.
_MACRO_BINDING = re.compile(
    r"\b(?:all|exists|exists_one|map|filter|bind)\s*\(\s*([A-Za-z_]\w*)\s*,"
)
_FIELDED = {"finding": re.compile(r"(?<![\w.])finding\b"), "vars": re.compile(r"(?<![\w.])vars\b")}
_FIELD_ACCESS = re.compile(r"\s*\.\s*([A-Za-z_]\w*)")
_CEL_LOCATION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
# Scanned left to right: string literals are consumed whole, so no text inside one counts.
_STEP_REFERENCE = re.compile(
    r"""(?<![\w.])steps\s*\.\s*([A-Za-z_]\w*)"""
    r"""|(?<![\w.])steps\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]"""
    r"""|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'"""
)


class ExpressionCompileError(ExpressionError):
    """An expression or template that does not compile.

    `line` and `column` are 1-based positions inside the expression's or template's own text;
    `path` locates the string inside a nested `with` block.
    """

    def __init__(
        self, source: str, reason: str, *, line: int = 1, column: int = 1, path: Path = ()
    ) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        self.column = column
        self.path = path
        super().__init__(f"{reason} (at {line}:{column} of {source!r})")

    def under(self, prefix: Path) -> ExpressionCompileError:
        """The same error, located under `prefix` inside a nested value."""
        return ExpressionCompileError(
            self.source, self.reason, line=self.line, column=self.column, path=prefix + self.path
        )


class ExpressionEvaluationError(ExpressionError):
    """An expression that failed while being evaluated (a missing key, a wrong type, ...)."""

    def __init__(self, source: str, reason: str, *, where: str = "") -> None:
        self.source = source
        self.reason = reason
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}expression {source!r}: {reason}")


# Helper functions ----------------------------------------------------------------------


@lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)
    except ValueError as exc:
        raise ValueError(f"not an IP range: {exc}") from None


def ip_in(ip: object, cidrs: object) -> bool:
    """True when `ip` lies in one of `cidrs` (a range or a list of ranges, IPv4 or IPv6).

    A value that is not an IP address is in no range; a range that does not parse is an
    error, so that a typo in a list of trusted ranges never passes unnoticed.
    """
    ranges = (cidrs,) if isinstance(cidrs, str) else cidrs
    if not isinstance(ranges, list | tuple):
        raise ValueError("ip_in: the second argument must be a range or a list of ranges")
    try:
        # The same IP meets the same list again and again: remember the answers.
        return _ip_in(ip if isinstance(ip, str) else "", tuple(ranges))
    except TypeError:
        raise ValueError("ip_in: the second argument must be a range or a list of ranges") from None


@lru_cache(maxsize=4096)
def _ip_in(ip: str, ranges: tuple[str, ...]) -> bool:
    if not all(isinstance(c, str) for c in ranges):
        raise TypeError("not a range")
    networks = _networks(ranges)
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return any(address in network for network in networks)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {"ip_in": ip_in}
"""Functions Clampdown adds to CEL, bound only into contexts of expressions that call them."""


def check_ranges(values: object) -> str:
    """Why `values` cannot be the ranges of `ip_in`, or "" when they can."""
    ranges = (values,) if isinstance(values, str) else values
    if not isinstance(ranges, list) or not all(isinstance(c, str) for c in ranges):
        return "must be a range or a list of ranges"
    try:
        _networks(tuple(ranges))
    except ValueError as exc:
        return str(exc)
    return ""


@dataclass(frozen=True, slots=True)
class Needs:
    """What an expression reads: which variables, which of their fields, which functions.

    Converting Python values into CEL values is the costly part of an evaluation (tens of
    microseconds for a whole finding), so contexts are trimmed to what is actually read.
    """

    variables: frozenset[str] = frozenset()
    finding_fields: frozenset[str] | None = frozenset()
    """None means the expression uses `finding` as a whole."""
    var_names: frozenset[str] | None = frozenset()
    """The `vars.<name>` read; None means `vars` as a whole."""
    functions: frozenset[str] = frozenset()
    """The helper functions (`FUNCTIONS`) called."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.variables | other.variables,
            _union(self.finding_fields, other.finding_fields),
            _union(self.var_names, other.var_names),
            self.functions | other.functions,
        )

    def bind(self, values: Mapping[str, Any]) -> cel.Context:
        """A CEL context holding only the needed parts of `values`."""
        context = cel.Context()
        for name in self.variables:
            if name not in values:
                continue
            value = values[name]
            if isinstance(value, Mapping):
                value = self.trim(name, value)
            context.add_variable(name, value)
        for function in self.functions:
            context.add_function(function, FUNCTIONS[function])
        return context

    def trim(self, name: str, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """`finding` or `vars` reduced to the fields read (other variables as they are)."""
        fields = {"finding": self.finding_fields, "vars": self.var_names}.get(name)
        if fields is None:
            return value
        return {k: value[k] for k in fields if k in value}


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


def _fields_read(source: str, name: str) -> frozenset[str] | None:
    """The fields of variable `name` read as `name.field`; None when it is used otherwise."""
    fields: set[str] = set()
    for use in _FIELDED[name].finditer(source):
        access = _FIELD_ACCESS.match(source, use.end())
        if access is None:
            return None
        fields.add(access.group(1))
    return frozenset(fields)


def _needs_of(source: str, variables: Collection[str], functions: Collection[str]) -> Needs:
    return Needs(
        frozenset(variables),
        _fields_read(source, "finding") if "finding" in variables else frozenset(),
        _fields_read(source, "vars") if "vars" in variables else frozenset(),
        frozenset(functions) & FUNCTIONS.keys(),
    )


def step_references(source: str) -> list[str]:
    """The step ids an expression or template reads as `steps.<id>` or `steps["<id>"]`."""
    found = (next(filter(None, groups), "") for groups in _STEP_REFERENCE.findall(source))
    return list(dict.fromkeys(name for name in found if name))


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key or field: {exc}"
    text = str(exc).split(". Check that", 1)[0]
    return text or type(exc).__name__


class Expression:
    """One compiled CEL expression.

    `where` (for example "playbooks/ip.yaml:12") is added to evaluation errors.
    """

    __slots__ = ("_program", "needs", "source", "where")

    def __init__(
        self, source: str, *, allowed: Collection[str] = VARIABLES, where: str = ""
    ) -> None:
        self.source = source
        self.where = where
        try:
            # Trailing blank lines of a YAML block scalar would move "end of input" errors.
            self._program = cel.compile(source.rstrip() or source)
        except ValueError as exc:
            raise _compile_error(source, str(exc)) from exc
        references = self._program.references()
        names = set(references["variables"])
        names -= set(_MACRO_BINDING.findall(source)) - set(allowed)
        if "bind" in references["functions"]:
            names.discard("cel")
        unknown = sorted(names - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed))
            raise ExpressionCompileError(
                source, f"unknown variable {unknown[0]!r} (available: {known})"
            )
        self.needs = _needs_of(source, names, references["functions"])

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @property
    def is_constant(self) -> bool:
        """True when the expression reads no variable, so it always gives the same result."""
        return not self.needs.variables

    def at(self, where: str) -> Expression:
        """A copy that names `where` in its errors (the program is shared, not recompiled)."""
        copy = object.__new__(Expression)
        copy.source, copy.where, copy.needs = self.source, where, self.needs
        copy._program = self._program
        return copy

    def evaluate(self, context: Mapping[str, Any] | cel.Context) -> Any:
        """The value of the expression; ExpressionError when evaluation fails."""
        bound = context if isinstance(context, cel.Context) else self.needs.bind(context)
        try:
            return self._program.execute(bound)
        except Exception as exc:  # the CEL runtime raises many types; each means "failed"
            raise ExpressionEvaluationError(
                self.source, _describe_failure(exc), where=self.where
            ) from exc

    def test(self, context: Mapping[str, Any] | cel.Context) -> bool:
        """Evaluate a condition, which must give true or false."""
        value = self.evaluate(context)
        if not isinstance(value, bool):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            reason = f"must give true or false, gave {type(value).__name__} {shown}"
            raise ExpressionEvaluationError(self.source, reason, where=self.where)
        return value


def _compile_error(source: str, message: str) -> ExpressionCompileError:
    found = _CEL_LOCATION.search(message)
    if found is None:
        return ExpressionCompileError(source, message.splitlines()[0] if message else "invalid")
    line, column, reason = int(found.group(1)), int(found.group(2)), found.group(3)
    # The parser lists every token it would have accepted: too long for a one-line message.
    reason = reason.split(" expecting {", 1)[0].strip()
    return ExpressionCompileError(source, reason, line=line, column=column)


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _find_close(text: str, start: int) -> int:
    """Index of the `}}` ending an expression that starts at `start`, or -1.

    Braces of map literals and quoted strings inside the expression are skipped.
    """
    depth = 0
    quote = ""
    i = start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and text.startswith(_CLOSE, i):
                return i
            depth = max(depth - 1, 0)
        i += 1
    return -1


class Template:
    """A string with `${{ expr }}` parts.

    A string that is exactly one `${{ expr }}` renders to the raw value (a list stays a list);
    otherwise the parts are joined as text.
    """

    __slots__ = ("_parts", "_whole", "needs", "source")

    def __init__(
        self, source: str, *, allowed: Collection[str] = VARIABLES, where: str = ""
    ) -> None:
        self.source = source
        parts: list[str | Expression] = []
        needs = Needs()
        position = 0
        while (start := source.find(_OPEN, position)) != -1:
            if start > position:
                parts.append(source[position:start])
            inner = start + len(_OPEN)
            end = _find_close(source, inner)
            if end == -1:
                line, column = _position(source, start)
                raise ExpressionCompileError(
                    source, "'${{' without a closing '}}'", line=line, column=column
                )
            try:
                expression = Expression(source[inner:end], allowed=allowed, where=where)
            except ExpressionCompileError as exc:
                line, column = _position(source, inner)
                raise ExpressionCompileError(
                    source,
                    exc.reason,
                    line=line + exc.line - 1,
                    column=column + exc.column - 1 if exc.line == 1 else exc.column,
                ) from exc
            parts.append(expression)
            needs |= expression.needs
            position = end + len(_CLOSE)
        if position < len(source):
            parts.append(source[position:])
        self._parts = tuple(parts)
        self._whole = len(parts) == 1 and isinstance(parts[0], Expression)
        self.needs = needs

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """The compiled `${{ }}` parts, in order."""
        return tuple(p for p in self._parts if isinstance(p, Expression))

    def at(self, where: str) -> Template:
        """A copy that names `where` in its evaluation errors."""
        copy = object.__new__(Template)
        copy.source, copy.needs, copy._whole = self.source, self.needs, self._whole
        copy._parts = tuple(p.at(where) if isinstance(p, Expression) else p for p in self._parts)
        return copy

    def render(self, context: Mapping[str, Any] | cel.Context) -> Any:
        """The raw value for a whole-string expression, else the joined text."""
        bound = context if isinstance(context, cel.Context) else self.needs.bind(context)
        if self._whole:
            first = self._parts[0]
            assert isinstance(first, Expression)
            return first.evaluate(bound)
        return "".join(
            part if isinstance(part, str) else to_text(part.evaluate(bound)) for part in self._parts
        )


def to_text(value: Any) -> str:
    """How a value reads when joined into a string (CEL spelling for booleans and null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=to_text, ensure_ascii=False)
    return str(value)


def compile_value(value: Any, *, allowed: Collection[str] = VARIABLES, where: str = "") -> Any:
    """Compile every string holding `${{` inside a nested value into a Template.

    Compile errors carry the path of the failing string (`ExpressionCompileError.path`).
    """
    if isinstance(value, str):
        return Template(value, allowed=allowed, where=where) if _OPEN in value else value
    if isinstance(value, Mapping):
        compiled: dict[Any, Any] = {}
        for key, item in value.items():
            try:
                compiled[key] = compile_value(item, allowed=allowed, where=where)
            except ExpressionCompileError as exc:
                raise exc.under((key,)) from exc
        return compiled
    if isinstance(value, list | tuple):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(compile_value(item, allowed=allowed, where=where))
            except ExpressionCompileError as exc:
                raise exc.under((index,)) from exc
        return items
    return value


def needs_of_value(compiled: Any) -> Needs:
    """Everything the templates inside a compiled value read."""
    if isinstance(compiled, Template):
        return compiled.needs
    needs = Needs()
    if isinstance(compiled, Mapping):
        for item in compiled.values():
            needs |= needs_of_value(item)
    elif isinstance(compiled, list):
        for item in compiled:
            needs |= needs_of_value(item)
    return needs


def templates_in(compiled: Any, path: Path = ()) -> Iterator[tuple[Path, Template]]:
    """Every template inside a compiled value, with its path."""
    if isinstance(compiled, Template):
        yield path, compiled
    elif isinstance(compiled, Mapping):
        for key, item in compiled.items():
            yield from templates_in(item, (*path, key))
    elif isinstance(compiled, list):
        for index, item in enumerate(compiled):
            yield from templates_in(item, (*path, index))


def relocate_value(compiled: Any, where: str) -> Any:
    """A copy of a compiled value whose templates name `where` in their errors."""
    if isinstance(compiled, Template):
        return compiled.at(where)
    if isinstance(compiled, Mapping):
        return {k: relocate_value(v, where) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [relocate_value(v, where) for v in compiled]
    return compiled


def render_value(compiled: Any, context: Mapping[str, Any] | cel.Context) -> Any:
    """Render a value built by `compile_value`: templates are evaluated, everything else kept.

    Plain strings are returned as they are, never parsed, so text from a finding stays text.
    """
    if not isinstance(context, cel.Context):
        context = needs_of_value(compiled).bind(context)
    return _render(compiled, context)


def _render(compiled: Any, context: cel.Context) -> Any:
    if isinstance(compiled, Template):
        return compiled.render(context)
    if isinstance(compiled, Mapping):
        return {k: _render(v, context) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [_render(v, context) for v in compiled]
    return compiled
