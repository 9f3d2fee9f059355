"""Markdown text that cannot be turned into markup: escaping, and Mermaid charts.

Text from an alert (titles, types, fingerprints) may hold `|`, `[x](url)`, `<img>`, backticks
or newlines. `escape` keeps it on one line and makes every character literal, so it can
neither break a table nor become a link, an image, HTML or emphasis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Verbatim", "code_spans", "escape", "mermaid_lines", "mermaid_stacked_bars", "table"]


class Verbatim(str):
    """Markdown built here from escaped text and constants: written out as it is."""

    __slots__ = ()


# Characters that mean something in the middle of a line (CommonMark, GFM, GitHub's math);
# a backslash makes each literal. Parentheses and `!` only matter after `]`, escaped too.
_INLINE = re.compile(r"([\\`*_\[\]|~$@])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
# GFM turns scheme://... and www.... into links even without brackets.
_URL_SCHEME = re.compile(r":(?=//)")
_WWW = re.compile(r"(?i)\b(www)\.")
# What would open a heading, a list, a quote or a rule at the start of a line.
_LEADING = re.compile(r"^(\s*)([#+=-]|\d+[.)](?=\s|$))")


def escape(value: object) -> Verbatim:
    """`value` as literal Markdown text on one line."""
    if isinstance(value, Verbatim):
        return value
    text = _BREAKS.sub(" ", "" if value is None else str(value))
    text = "".join(_ENTITIES.get(c, c) for c in text)
    text = _INLINE.sub(r"\\\1", text)
    text = _URL_SCHEME.sub(r"\\:", text)
    text = _WWW.sub(r"\1\\.", text)
    text = _LEADING.sub(lambda m: f"{m[1]}{m[2][:-1]}\\{m[2][-1]}", text)
    return Verbatim(text)


_CODE = re.compile(r"[\w .,:;=/'\"()\[\]{}@#$%*+?!~^-]+")
"""What a code span may hold: nothing a lax renderer could read as HTML or a table cell end."""


def code_spans(value: object) -> Verbatim:
    """Text whose parts between backticks become code spans, the rest escaped.

    Inside a code span nothing is markup in CommonMark; parts with characters outside `_CODE`
    are escaped as plain text all the same, backticks included.
    """
    parts = str(value).split("`")
    tail = ""
    if len(parts) % 2 == 0:  # an odd backtick opens nothing: it stays a character
        tail = escape("`" + parts.pop())
    out: list[str] = []
    for i, part in enumerate(parts):
        flat = _BREAKS.sub(" ", part)
        if i % 2 == 0:
            out.append(escape(part))
        elif flat.strip() and _CODE.fullmatch(flat):
            out.append(f"`{flat}`")
        else:
            out.append(escape(f"`{part}`"))
    return Verbatim("".join(out) + tail)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool]
) -> Verbatim:
    """A GFM table, every cell escaped; `numeric` columns align right."""
    lines = [
        "| " + " | ".join(escape(c) for c in columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines.extend("| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows)
    return Verbatim("\n".join(lines))


def mermaid_lines(
    title: str,
    labels: Sequence[str],
    lines: Sequence[Sequence[float]],
    *,
    y_title: str,
    colors: Sequence[str] = (),
) -> Verbatim:
    """A Mermaid `xychart-beta` block of lines over the labels."""
    return _xychart(title, labels, [("line", values) for values in lines], y_title, colors)


def mermaid_stacked_bars(
    title: str,
    labels: Sequence[str],
    layers: Sequence[Sequence[float]],
    *,
    y_title: str,
    colors: Sequence[str] = (),
) -> Verbatim:
    """A Mermaid `xychart-beta` block whose bars look stacked, first layer at the bottom.

    xychart draws bars of several datasets on top of each other rather than stacked, so each
    layer is drawn as the running total up to it, the tallest first.
    """
    totals: list[list[float]] = []
    running = [0.0] * len(labels)
    for layer in layers:
        running = [r + v for r, v in zip(running, layer, strict=True)]
        totals.append(running)
    bars = [("bar", values) for values in reversed(totals)]
    return _xychart(title, labels, bars, y_title, list(reversed(colors[: len(layers)])))


def _xychart(
    title: str,
    labels: Sequence[str],
    plots: Sequence[tuple[str, Sequence[float]]],
    y_title: str,
    colors: Sequence[str],
) -> Verbatim:
    lines = ["```mermaid"]
    if colors:
        palette = ", ".join(c if _COLOR.fullmatch(c) else _GREY for c in colors)
        lines.append(
            '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%'
        )
    lines.append("xychart-beta")
    lines.append(f"    title {_quoted(title)}")
    lines.append(f"    x-axis [{', '.join(_quoted(label) for label in labels)}]")
    lines.append(f"    y-axis {_quoted(y_title)}")
    for kind, values in plots:
        lines.append(f"    {kind} [{', '.join(_number(v) for v in values)}]")
    lines.append("```")
    return Verbatim("\n".join(lines))


_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")
_GREY = "#718096"


def _quoted(text: str) -> str:
    """A Mermaid string: no quote, no newline, nothing that could end the code block."""
    return '"' + re.sub(r'["`\\\x00-\x1f\x7f]', "", text).replace("#", "") + '"'


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"
