"""Bounded label values: a label only takes values from a set fixed when the app starts.

A value from outside the set (a playbook no longer loaded, an action or a target name from an
old row) is reported as `other`, so that no alert, row or request can add series.
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"
"""The label value of everything outside a label's set."""


class Bounded:
    """Maps a value to itself when it is one of `names`, else to `other`."""

    __slots__ = ("names",)

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def __call__(self, value: str) -> str:
        return value if value in self.names else OTHER
