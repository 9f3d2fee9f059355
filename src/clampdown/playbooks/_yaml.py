"""YAML reading that remembers where every key and value starts, for file:line messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from clampdown.playbooks.expressions import Path


@dataclass(frozen=True, slots=True)
class Scalar:
    """Where a scalar value starts and how it is written ("" plain, "|" literal, ...)."""

    line: int
    style: str


@dataclass(slots=True)
class Document:
    """One YAML document: its data and the 1-based line of every path inside it."""

    data: Any
    line: int
    lines: dict[Path, int] = field(default_factory=dict)
    scalars: dict[Path, Scalar] = field(default_factory=dict)
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)
    """Keys given twice in one mapping: (path, line, line of the first)."""

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that exists."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.line


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    # libyaml parses about ten times faster; the pure-Python loader behaves the same.
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineLoader(_SafeLoader):
    """A SafeLoader that records the start line of each mapping key and sequence item."""

    def documents(self) -> Iterator[Document]:
        """Every document in the stream; yaml.YAMLError on broken YAML."""
        try:
            while self.check_node():
                node = self.get_node()
                if node is None:
                    continue
                document = Document(data=None, line=node.start_mark.line + 1)
                _record(node, (), document, set())
                document.data = self.construct_document(node)
                yield document
        finally:
            self.dispose()


def _record(node: yaml.Node, path: Path, document: Document, seen: set[int]) -> None:
    # An alias repeats a node already recorded; following it again could blow up.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        document.scalars[path] = Scalar(node.start_mark.line + 1, node.style or "")
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            document.lines.setdefault((*path, index), item.start_mark.line + 1)
            _record(item, (*path, index), document, seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key: str = key_node.value
            line = key_node.start_mark.line + 1
            if key in first:
                document.duplicates.append(((*path, key), line, first[key]))
                continue
            first[key] = line
            document.lines[(*path, key)] = line
            _record(value_node, (*path, key), document, seen)
