"""Normalizers: every delivery shape of an alert or recommendation -> `Finding`.

`normalize(payload)` detects the shape of each record; `normalize(payload, "graph")` names it
(one of `SHAPES`). Anything unreadable raises `NormalizationError`. See docs/sources.md.
"""

from clampdown.sources._dispatch import SHAPES, detect_shape, normalize

__all__ = ["SHAPES", "detect_shape", "normalize"]
