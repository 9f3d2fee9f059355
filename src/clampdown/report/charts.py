"""Inline SVG charts as strings: no JavaScript, no external assets, the same bytes every time.

Each function takes plain data and returns `markupsafe.Markup` holding one `<svg>` element
that names itself (`<title>`, `<desc>`, `role="img"`), draws its axes with tick labels and a
legend, and gives every bar and point a tooltip. Labels and series names are escaped here, so
text from an alert or a config is passed as it is. Numbers are printed with a fixed precision
so that equal data gives equal output.

    line_chart(["11-20", "11-21"], [Series("p50", [12.0, None]), Series("p90", [40.0, 9.5])],
               title="Time to contain", description="...", scale="seconds")
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

from markupsafe import Markup, escape

__all__ = [
    "PALETTE",
    "STATE_COLORS",
    "Scale",
    "Series",
    "format_duration",
    "format_value",
    "horizontal_bar_chart",
    "line_chart",
    "stacked_bar_chart",
]

Scale = Literal["count", "seconds", "share"]
"""How values read: whole counts, durations in seconds, or shares between 0 and 1."""


class Series(NamedTuple):
    """One named row of values, one per x label; None where nothing was measured."""

    name: str
    values: Sequence[float | None]


PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1", "#b7791f", "#319795", "#718096")
"""Series colours, in order, for series without a colour of their own."""

STATE_COLORS = {
    "succeeded": "#2f855a",
    "expired": "#68d391",
    "failed": "#c53030",
    "rolled_back": "#dd6b20",
    "rejected": "#975a16",
    "dry_run": "#a0aec0",
    "awaiting_approval": "#d69e2e",
    "running": "#3182ce",
    "verifying": "#63b3ed",
    "planned": "#718096",
}
"""Colours of remediation states, so that every surface draws outcomes alike."""

WIDTH = 960
_FONT = 12
_CHAR_WIDTH = 6.6  # average advance of a 12px sans-serif character, to lay out the legend
_GRID = "#d0d7de"
_AXIS = "#57606a"
_LEFT, _RIGHT, _BOTTOM = 72, 16, 44
_TITLE_Y, _LEGEND_Y = 20, 42
_LABEL_CHARS = 32

# Steps of a duration axis, so that ticks fall on round times (30s, 5m, 1h, 1d ...).
_DURATION_STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 432000, 864000,
)  # fmt: skip


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
    scale: Scale = "count",
    area: bool = True,
    colors: Sequence[str] | None = None,
    chart_id: str = "line",
    height: int = 300,
) -> Markup:
    """Lines (and the areas under them) over labelled x positions; a None leaves a gap."""
    svg = _Canvas(chart_id, WIDTH, height, title, description)
    palette = _colors(series, colors)
    svg.legend([(s.name, c) for s, c in zip(series, palette, strict=True)])
    values = [v for s in series for v in map(_finite, s.values) if v is not None]
    top = svg.y_axis(_ticks(max(values, default=0.0), scale), scale)
    svg.x_labels(x_labels)
    if not values:
        svg.no_data()
        return svg.markup()
    base = svg.y(0.0, top)
    paths: list[str] = []
    points: list[str] = []
    for one, color in zip(series, palette, strict=True):
        for segment in _segments([_finite(v) for v in one.values]):
            coords = [(svg.x(i, len(x_labels)), svg.y(v, top)) for i, v in segment]
            line = " L ".join(f"{_n(x)} {_n(y)}" for x, y in coords)
            if area:
                first, last = coords[0][0], coords[-1][0]
                paths.insert(
                    0,
                    f'<path class="area" d="M {_n(first)} {_n(base)} L {line} '
                    f'L {_n(last)} {_n(base)} Z" fill="{_e(color)}" fill-opacity="0.12"/>',
                )
            paths.append(
                f'<path class="line" d="M {line}" fill="none" stroke="{_e(color)}" '
                'stroke-width="2" stroke-linejoin="round"/>'
            )
            for (i, v), (x, y) in zip(segment, coords, strict=True):
                label = x_labels[i] if i < len(x_labels) else str(i)
                points.append(
                    f'<circle class="point" cx="{_n(x)}" cy="{_n(y)}" r="3" fill="{_e(color)}">'
                    f"<title>{_e(label)}, {_e(one.name)}: {_e(format_value(v, scale))}</title>"
                    "</circle>"
                )
    svg.add(*paths, *points)
    return svg.markup()


def stacked_bar_chart(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
    scale: Scale = "count",
    colors: Sequence[str] | None = None,
    chart_id: str = "stacked",
    height: int = 300,
) -> Markup:
    """One column per x label, each series a layer stacked on the ones before it."""
    svg = _Canvas(chart_id, WIDTH, height, title, description)
    palette = _colors(series, colors)
    svg.legend([(s.name, c) for s, c in zip(series, palette, strict=True)])
    count = len(x_labels)
    totals = [
        sum(_finite(s.values[i]) or 0.0 for s in series if i < len(s.values)) for i in range(count)
    ]
    top = svg.y_axis(_ticks(max(totals, default=0.0), scale), scale)
    svg.x_labels(x_labels)
    if not any(totals):
        svg.no_data()
        return svg.markup()
    band = svg.plot_width / count
    width = max(1.0, band * 0.7)
    bars: list[str] = []
    for i, label in enumerate(x_labels):
        below = 0.0
        x = svg.x(i, count) - width / 2
        for one, color in zip(series, palette, strict=True):
            value = max(0.0, _finite(one.values[i]) or 0.0) if i < len(one.values) else 0.0
            if not value:
                continue
            y_top, y_bottom = svg.y(below + value, top), svg.y(below, top)
            bars.append(
                f'<rect class="bar" x="{_n(x)}" y="{_n(y_top)}" width="{_n(width)}" '
                f'height="{_n(y_bottom - y_top)}" fill="{_e(color)}">'
                f"<title>{_e(label)}, {_e(one.name)}: {_e(format_value(value, scale))}</title>"
                "</rect>"
            )
            below += value
    svg.add(*bars)
    return svg.markup()


def horizontal_bar_chart(
    bars: Sequence[tuple[str, float | None]],
    *,
    title: str,
    description: str,
    scale: Scale = "count",
    color: str = PALETTE[0],
    chart_id: str = "bars",
    row_height: int = 26,
) -> Markup:
    """One labelled bar per (label, value) pair, top to bottom in the order given."""
    label_width = 232
    top_margin = _LEGEND_Y - 10
    height = top_margin + max(1, len(bars)) * row_height + _BOTTOM
    svg = _Canvas(chart_id, WIDTH, height, title, description, left=label_width, top=top_margin)
    values = [max(0.0, _finite(v) or 0.0) for _, v in bars]
    ticks = _ticks(max(values, default=0.0), scale)
    tick_top = ticks[-1]
    # Room on the right for the value printed after the longest bar.
    plot = svg.plot_width - 64
    svg.add(f'<g class="axis x-axis" fill="{_AXIS}">')
    for tick in ticks:
        x = label_width + plot * tick / tick_top
        svg.add(
            f'<line x1="{_n(x)}" y1="{top_margin}" x2="{_n(x)}" y2="{_n(svg.plot_bottom)}" '
            f'stroke="{_GRID}"/>',
            f'<text x="{_n(x)}" y="{_n(svg.plot_bottom + 16)}" text-anchor="middle">'
            f"{_e(format_value(tick, scale))}</text>",
        )
    svg.add("</g>")
    if not bars:
        svg.no_data()
        return svg.markup()
    rows: list[str] = []
    for i, ((label, raw), value) in enumerate(zip(bars, values, strict=True)):
        y = top_margin + i * row_height
        middle = y + row_height / 2
        width = plot * value / tick_top
        shown = format_value(_finite(raw), scale)
        rows.append(
            f'<text class="label" x="{label_width - 8}" y="{_n(middle + 4)}" text-anchor="end" '
            f'fill="currentColor">{_e(_shorten(label))}<title>{_e(label)}</title></text>'
        )
        rows.append(
            f'<rect class="bar" x="{label_width}" y="{_n(y + 4)}" width="{_n(width)}" '
            f'height="{row_height - 8}" fill="{_e(color)}">'
            f"<title>{_e(label)}: {_e(shown)}</title></rect>"
        )
        rows.append(
            f'<text class="value" x="{_n(label_width + width + 6)}" y="{_n(middle + 4)}" '
            f'fill="currentColor">{_e(shown)}</text>'
        )
    svg.add(*rows)
    return svg.markup()


# -- values --------------------------------------------------------------------------------


def format_value(value: float | None, scale: Scale) -> str:
    """A value as a person reads it: 12, 1m 30s, 25%; n/a when unknown."""
    if value is None:
        return "n/a"
    if scale == "seconds":
        return format_duration(value)
    if scale == "share":
        return f"{value * 100:.0f}%"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def format_duration(seconds: float) -> str:
    """Seconds as a short duration: 350 ms, 4.2 s, 12m 05s, 30m, 3h 20m, 2d 04h."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for unit, size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            rest = whole % size // small_size
            return f"{whole // size}{unit} {rest:02d}{small}" if rest else f"{whole // size}{unit}"
    return f"{whole}s"


def _ticks(highest: float, scale: Scale) -> list[float]:
    """Round tick values from 0 up to at least `highest` (at most five intervals)."""
    if scale == "share":
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    if highest <= 0:
        return [0.0, 1.0]
    if scale == "seconds":
        step = next((s for s in _DURATION_STEPS if s * 5 >= highest), None)
        if step is None:
            step = _nice_step(highest)
    else:
        step = max(1.0, _nice_step(highest))
    intervals = math.ceil(highest / step - 1e-9)
    return [step * i for i in range(intervals + 1)]


def _nice_step(highest: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten giving at most five intervals."""
    magnitude = 10.0 ** math.floor(math.log10(highest / 5))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude * 5 >= highest)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _segments(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive known values, with their positions."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        runs.append(current)
    return runs


def _colors(series: Sequence[Series], colors: Sequence[str] | None) -> list[str]:
    chosen = list(colors or ())
    return [chosen[i] if i < len(chosen) else PALETTE[i % len(PALETTE)] for i in range(len(series))]


# -- drawing -------------------------------------------------------------------------------


def _e(text: object) -> str:
    return str(escape(str(text)))


def _n(number: float) -> str:
    return f"{number:.1f}"


def _shorten(label: str, limit: int = _LABEL_CHARS) -> str:
    """Long labels are cut (before escaping, so that no entity is split); tooltips hold all."""
    flat = " ".join(label.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Canvas:
    """One SVG element under construction: frame, title, legend, axes, then the data."""

    def __init__(
        self,
        chart_id: str,
        width: int,
        height: int,
        title: str,
        description: str,
        *,
        left: int = _LEFT,
        top: int = _LEGEND_Y + 18,
    ) -> None:
        ident = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id) or "chart"
        self.width, self.height = width, height
        self.left, self.top = left, top
        self.plot_width = width - left - _RIGHT
        self.plot_bottom = height - _BOTTOM
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{ident}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-labelledby="{ident}-title {ident}-desc" '
            f'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="{_FONT}">',
            f'<title id="{ident}-title">{_e(title)}</title>',
            f'<desc id="{ident}-desc">{_e(description)}</desc>',
            f'<text class="chart-title" x="8" y="{_TITLE_Y}" '
            f'font-size="14" font-weight="600" fill="currentColor">{_e(title)}</text>',
        ]

    def add(self, *parts: str) -> None:
        self.parts.extend(parts)

    def markup(self) -> Markup:
        return Markup("\n".join([*self.parts, "</svg>"]))  # noqa: S704 - every part escaped

    def x(self, index: int, count: int) -> float:
        """The middle of the index-th of `count` bands."""
        return self.left + (index + 0.5) * self.plot_width / max(1, count)

    def y(self, value: float, top: float) -> float:
        return self.plot_bottom - (self.plot_bottom - self.top) * value / top

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        x = float(self.left)
        items = ['<g class="legend">']
        for name, color in entries:
            shown = _shorten(name, 24)
            items.append(
                f'<rect x="{_n(x)}" y="{_LEGEND_Y - 9}" width="10" height="10" '
                f'fill="{_e(color)}"/>'
                f'<text x="{_n(x + 14)}" y="{_LEGEND_Y}" fill="currentColor">{_e(shown)}</text>'
            )
            x += 14 + len(shown) * _CHAR_WIDTH + 16
        items.append("</g>")
        self.add(*items)

    def y_axis(self, ticks: Sequence[float], scale: Scale) -> float:
        """Grid lines and labels for `ticks`; returns the value at the top of the plot."""
        top = ticks[-1]
        lines = [f'<g class="axis y-axis" fill="{_AXIS}">']
        for tick in ticks:
            y = self.y(tick, top)
            lines.append(
                f'<line x1="{self.left}" y1="{_n(y)}" x2="{self.width - _RIGHT}" y2="{_n(y)}" '
                f'stroke="{_GRID}"/>'
                f'<text x="{self.left - 6}" y="{_n(y + 4)}" text-anchor="end">'
                f"{_e(format_value(tick, scale))}</text>"
            )
        lines.append(
            f'<line x1="{self.left}" y1="{_n(self.plot_bottom)}" x2="{self.width - _RIGHT}" '
            f'y2="{_n(self.plot_bottom)}" stroke="{_AXIS}"/>'
        )
        lines.append("</g>")
        self.add(*lines)
        return top

    def x_labels(self, labels: Sequence[str]) -> None:
        """Tick labels under the plot; every k-th one when they would not fit."""
        if not labels:
            return
        widest = max(len(_shorten(label, 16)) for label in labels) * _CHAR_WIDTH + 12
        every = max(1, math.ceil(len(labels) * widest / self.plot_width))
        lines = [f'<g class="axis x-axis" fill="{_AXIS}">']
        for i in range(0, len(labels), every):
            x = self.x(i, len(labels))
            lines.append(
                f'<line x1="{_n(x)}" y1="{_n(self.plot_bottom)}" x2="{_n(x)}" '
                f'y2="{_n(self.plot_bottom + 4)}" stroke="{_AXIS}"/>'
                f'<text x="{_n(x)}" y="{_n(self.plot_bottom + 18)}" text-anchor="middle">'
                f"{_e(_shorten(labels[i], 16))}</text>"
            )
        lines.append("</g>")
        self.add(*lines)

    def no_data(self) -> None:
        middle = (self.top + self.plot_bottom) / 2
        self.add(
            f'<text class="no-data" x="{_n(self.left + self.plot_width / 2)}" y="{_n(middle)}" '
            f'text-anchor="middle" fill="{_AXIS}">No data in this period</text>'
        )
