"""SVG charts: escaped labels, the same output for the same data, one mark per value."""

from __future__ import annotations

import math
import re
from xml.etree import ElementTree

import pytest
from markupsafe import Markup

from clampdown.report.charts import (
    Series,
    format_duration,
    format_value,
    horizontal_bar_chart,
    line_chart,
    stacked_bar_chart,
)
from tests.report.conftest import HOSTILE, HOSTILE_ESCAPED

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [f"2026-11-{day}" for day in range(20, 27)]


def parse(svg: str) -> ElementTree.Element:
    """The chart as XML: it must be well-formed whatever its labels hold."""
    return ElementTree.fromstring(svg)


def texts(svg: str) -> list[str]:
    """Every visible text label of the chart."""
    return [t.text or "" for t in parse(svg).iter(f"{SVG}text")]


def contain_chart(p50: list[float | None], p90: list[float | None]) -> Markup:
    return line_chart(
        DAYS,
        [Series("p90", p90), Series("p50", p50)],
        title="Time to contain",
        description="p50 and p90 per day",
        scale="seconds",
    )


def test_line_chart_draws_one_point_per_known_value_and_breaks_lines_at_gaps() -> None:
    chart = contain_chart(
        [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0], [10.0, 20.0, None, 40.0, 50.0, 60.0, 70.0]
    )
    assert isinstance(chart, Markup)
    assert chart.count('class="point"') == 12
    # Each series is two runs around the gap: two lines and two areas per series.
    assert chart.count('class="line"') == 4
    assert chart.count('class="area"') == 4
    assert "2026-11-21, p90: 20.0 s" in chart


def test_line_chart_is_accessible() -> None:
    chart = contain_chart([1.0] * 7, [2.0] * 7)
    svg = parse(chart)
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "line-title line-desc"
    assert svg.find(f"{SVG}title").text == "Time to contain"  # type: ignore[union-attr]
    assert svg.find(f"{SVG}desc").text == "p50 and p90 per day"  # type: ignore[union-attr]
    labels = texts(chart)
    # Legend, y ticks on round durations, and x labels.
    assert {"p50", "p90"} <= set(labels)
    assert {"0", "500 ms", "1.0 s", "1.5 s", "2.0 s"} <= set(labels)
    assert "2026-11-20" in labels


def test_duration_axis_ticks_fall_on_round_times() -> None:
    chart = contain_chart([None] * 7, [100.0] + [None] * 6)
    assert [t for t in texts(chart) if t in {"0", "30.0 s", "1m", "1m 30s", "2m"}] == [
        "0",
        "30.0 s",
        "1m",
        "1m 30s",
        "2m",
    ]


def test_charts_are_deterministic() -> None:
    first = contain_chart([1.5, None, 3.0, 4.0, 5.0, 6.0, 7.25], [9.0] * 7)
    again = contain_chart([1.5, None, 3.0, 4.0, 5.0, 6.0, 7.25], [9.0] * 7)
    assert first == again
    bars = [("a", 3.0), ("b", 1.0)]
    assert horizontal_bar_chart(bars, title="t", description="d") == horizontal_bar_chart(
        bars, title="t", description="d"
    )


def test_stacked_bars_draw_one_rect_per_nonzero_value_stacked_in_order() -> None:
    chart = stacked_bar_chart(
        ["d1", "d2", "d3"],
        [Series("succeeded", [3, 0, 2]), Series("failed", [1, 0, 0])],
        title="Outcomes",
        description="by day",
        colors=["#00aa00", "#aa0000"],
    )
    rects = [r for r in parse(chart).iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(rects) == 3
    succeeded, failed = rects[0], rects[1]
    # The failed layer sits right on top of the succeeded one.
    assert float(failed.get("y", 0)) + float(failed.get("height", 0)) == pytest.approx(
        float(succeeded.get("y", 0)), abs=0.11
    )
    assert failed.get("fill") == "#aa0000"
    assert "d1, failed: 1" in chart
    assert {"succeeded", "failed", "0", "4"} <= set(texts(chart))


def test_horizontal_bars_one_per_pair_with_values_printed() -> None:
    chart = horizontal_bar_chart(
        [("block-suspicious-ip", 12.0), ("throttle-ip-on-api", 3.0), ("never", 0.0)],
        title="Remediations by playbook",
        description="per playbook",
    )
    assert chart.count('class="bar"') == 3
    labels = texts(chart)
    assert {"block-suspicious-ip", "throttle-ip-on-api", "never", "12", "3", "0"} <= set(labels)


def test_shares_read_as_percentages() -> None:
    chart = horizontal_bar_chart(
        [("a", 0.25), ("b", None)], title="Failure rate", description="d", scale="share"
    )
    assert {"25%", "n/a", "100%"} <= set(texts(chart))


@pytest.mark.parametrize(
    "chart",
    [
        lambda: line_chart([HOSTILE], [Series(HOSTILE, [1.0])], title=HOSTILE, description=HOSTILE),
        lambda: stacked_bar_chart(
            [HOSTILE], [Series(HOSTILE, [2.0])], title=HOSTILE, description=HOSTILE
        ),
        lambda: horizontal_bar_chart([(HOSTILE, 4.0)], title=HOSTILE, description=HOSTILE),
    ],
    ids=["line", "stacked", "horizontal"],
)
def test_hostile_labels_are_escaped(chart: object) -> None:
    svg = str(chart())  # type: ignore[operator]
    assert HOSTILE not in svg
    assert "<script" not in svg
    assert svg.count(HOSTILE_ESCAPED) >= 3  # title, desc, and the label or legend at least
    parse(svg)


def test_quotes_in_labels_cannot_leave_an_attribute() -> None:
    label = '" onload="alert(1)'
    chart = horizontal_bar_chart([(label, 1.0)], title=label, description=label, color=label)
    assert 'onload="' not in chart
    assert all("onload" not in key for el in parse(chart).iter() for key in el.attrib)


def test_long_labels_are_shortened_but_kept_whole_in_the_tooltip() -> None:
    label = "A" * 30 + " & " + "B" * 30
    chart = horizontal_bar_chart([(label, 1.0)], title="t", description="d")
    assert "A" * 30 + " &amp;…" not in chart  # cut before escaping: no broken entity
    assert f"<title>{'A' * 30} &amp; {'B' * 30}: 1</title>" in chart
    parse(chart)


def test_no_data_says_so_instead_of_drawing() -> None:
    empty_line = line_chart(DAYS, [Series("p50", [None] * 7)], title="t", description="d")
    empty_bars = stacked_bar_chart(DAYS, [Series("ok", [0] * 7)], title="t", description="d")
    empty_rows = horizontal_bar_chart([], title="t", description="d")
    for chart in (empty_line, empty_bars, empty_rows):
        assert "No data in this period" in chart
        assert 'class="bar"' not in chart
        assert 'class="point"' not in chart
        parse(chart)


def test_values_that_are_not_numbers_are_left_out() -> None:
    chart = line_chart(
        ["a", "b", "c"], [Series("s", [1.0, math.nan, math.inf])], title="t", description="d"
    )
    assert chart.count('class="point"') == 1
    assert "nan" not in chart.lower()
    assert "inf" not in chart.lower()


def test_chart_ids_are_safe_attribute_values() -> None:
    chart = line_chart(["a"], [Series("s", [1.0])], title="t", description="d", chart_id='x" y')
    assert re.search(r'<svg [^>]*id="x--y"', chart)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (0.35, "350 ms"),
        (4.24, "4.2 s"),
        (725, "12m 05s"),
        (1800, "30m"),
        (12000, "3h 20m"),
        (7200, "2h"),
        (187200, "2d 04h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_value() -> None:
    assert format_value(None, "count") == "n/a"
    assert format_value(3.0, "count") == "3"
    assert format_value(2.5, "count") == "2.5"
    assert format_value(0.125, "share") == "12%"
    assert format_value(90, "seconds") == "1m 30s"


def test_crowded_x_labels_are_thinned_but_every_value_is_drawn() -> None:
    hours = [f"11-{20 + h // 24} {h % 24:02d}:00" for h in range(168)]
    chart = stacked_bar_chart(hours, [Series("ok", [1.0] * 168)], title="t", description="d")
    shown = [t for t in texts(chart) if t in hours]
    assert 2 < len(shown) < 20
    assert shown[0] == hours[0]
    assert chart.count('class="bar"') == 168
