"""The effectiveness report as one HTML page, as Markdown, or as JSON.

HTML and Markdown come from templates under `templates/` fed by one view (`view.py`), so
they hold the same sections. Both escape by default: the HTML environment autoescapes, and
the Markdown one passes every value through `markdown.escape` unless it is `Verbatim`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from functools import cache
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from clampdown.effectiveness.model import Effectiveness
from clampdown.report import charts
from clampdown.report import markdown as md
from clampdown.report.suggestions import Suggestion
from clampdown.report.view import ReportView, Table, Timeline, build_view

__all__ = ["Format", "render", "render_html", "render_json", "render_markdown"]


class Format(StrEnum):
    """The report's output formats."""

    HTML = "html"
    MD = "md"
    JSON = "json"


def render(eff: Effectiveness, suggestions: Sequence[Suggestion], fmt: Format) -> str:
    """The report in `fmt`."""
    renderers = {Format.HTML: render_html, Format.MD: render_markdown, Format.JSON: render_json}
    return renderers[fmt](eff, suggestions)


def render_html(eff: Effectiveness, suggestions: Sequence[Suggestion]) -> str:
    """A self-contained page: inline CSS and SVG, no script, no external asset."""
    view = build_view(eff, suggestions)
    template = _html_env().get_template("report.html.j2")
    return template.render(view=view, charts=svg_charts(view))


def render_markdown(eff: Effectiveness, suggestions: Sequence[Suggestion]) -> str:
    """Markdown with Mermaid charts, and tables that carry the same numbers."""
    view = build_view(eff, suggestions)
    key_figures = Table(
        ["Figure", "Value", "What it counts"],
        [[f.label, f.value, f.detail] for f in view.figures],
        [False, True, False],
    )
    template = _markdown_env().get_template("report.md.j2")
    text = template.render(
        view=view, charts=_mermaid_charts(view.timeline), key_figures=key_figures
    )
    return text.rstrip() + "\n"


def render_json(eff: Effectiveness, suggestions: Sequence[Suggestion]) -> str:
    """The measurements as they are, with the suggestions."""
    data: dict[str, Any] = eff.model_dump(mode="json")
    data["suggestions"] = [s.model_dump(mode="json") for s in suggestions]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


# -- charts --------------------------------------------------------------------------------


def svg_charts(view: ReportView) -> dict[str, Markup]:
    """The report's charts as inline SVG, by name (the console shows the same ones)."""
    timeline = view.timeline
    per = f"per {view.bucket}"
    return {
        "contain": charts.line_chart(
            timeline.labels,
            [
                charts.Series("p90", timeline.contain_p90),
                charts.Series("p50", timeline.contain_p50),
            ],
            title="Time to contain",
            description=f"Time from the alert to a containment in effect, p50 and p90 {per}.",
            scale="seconds",
            colors=[charts.PALETTE[1], charts.PALETTE[0]],
            chart_id="chart-contain",
        ),
        "outcomes": charts.stacked_bar_chart(
            timeline.labels,
            timeline.outcomes,
            title="Remediations by outcome",
            description=f"Remediations opened {per}, by their state at the end of the period.",
            colors=[charts.STATE_COLORS.get(s.name, "#718096") for s in timeline.outcomes],
            chart_id="chart-outcomes",
        ),
        "playbooks": charts.horizontal_bar_chart(
            view.playbook_bars,
            title="Remediations by playbook",
            description="Remediations each playbook opened in the period, most first.",
            chart_id="chart-playbooks",
        ),
        "playbook_contain": charts.horizontal_bar_chart(
            view.contain_bars,
            title="Time to contain by playbook (p50)",
            description="Median time from the alert to a containment in effect, slowest first.",
            scale="seconds",
            color=charts.PALETTE[1],
            chart_id="chart-playbook-contain",
        ),
        "recurring": charts.horizontal_bar_chart(
            view.recurring_bars,
            title="Top recurring threats",
            description="Threats seen again after their remediation closed, by recurrences.",
            color=charts.PALETTE[3],
            chart_id="chart-recurring",
        ),
    }


def _mermaid_charts(timeline: Timeline) -> dict[str, md.Verbatim | None]:
    known = [
        (label, low, high)
        for label, low, high in zip(
            timeline.labels, timeline.contain_p50, timeline.contain_p90, strict=True
        )
        if low is not None and high is not None
    ]
    contain = None
    if known:
        unit, divisor = _duration_unit(max(high for _, _, high in known))
        contain = md.mermaid_lines(
            f"Time to contain, p90 and p50 ({unit})",
            [label for label, _, _ in known],
            [[high / divisor for _, _, high in known], [low / divisor for _, low, _ in known]],
            y_title=unit,
            colors=[charts.PALETTE[1], charts.PALETTE[0]],
        )
    outcomes = None
    if any(any(s.values) for s in timeline.outcomes):
        outcomes = md.mermaid_stacked_bars(
            "Remediations by outcome",
            timeline.labels,
            [[v or 0.0 for v in s.values] for s in timeline.outcomes],
            y_title="remediations",
            colors=[charts.STATE_COLORS.get(s.name, "#718096") for s in timeline.outcomes],
        )
    return {"contain": contain, "outcomes": outcomes}


def _duration_unit(highest: float) -> tuple[str, float]:
    """The unit a duration axis reads best in, and seconds per unit."""
    if highest >= 2 * 3600:
        return "hours", 3600.0
    if highest >= 2 * 60:
        return "minutes", 60.0
    return "seconds", 1.0


# -- environments --------------------------------------------------------------------------


@cache
def _html_env() -> Environment:
    env = Environment(
        loader=PackageLoader("clampdown.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code_spans"] = code_spans
    return env


def code_spans(value: object) -> Markup:
    """Text whose parts between backticks become <code>, every part escaped."""
    parts = str(value).split("`")
    tail = ""
    if len(parts) % 2 == 0:  # an odd backtick opens nothing: it stays a character
        tail = "`" + parts.pop()
    out = Markup()
    for i, part in enumerate(parts):
        out += Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
    return out + escape(tail)


@cache
def _markdown_env() -> Environment:
    env = Environment(
        loader=PackageLoader("clampdown.report", "templates"),
        autoescape=False,  # noqa: S701 - Markdown, not HTML: `finalize` escapes every value
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=md.escape,
    )
    env.globals["grid"] = _grid
    env.filters["code_spans"] = md.code_spans
    return env


def _grid(table: Table) -> md.Verbatim:
    return md.table(table.columns, table.rows, table.numeric)
