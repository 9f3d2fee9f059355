"""The HTML, Markdown and JSON reports: every section, the charts, and hostile text kept inert."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from clampdown.effectiveness.model import Bucket, Collateral, Effectiveness, Figures, Group
from clampdown.report.render import Format, render, render_html, render_json, render_markdown
from clampdown.report.suggestions import suggest
from tests.report.conftest import (
    HOSTILE,
    HOSTILE_ESCAPED,
    SINCE,
    busy_week,
    contain,
    effectiveness,
)

SECTIONS = [
    "Key figures",
    "Suggestions",
    "Charts",
    "Top recurring threats",
    "Playbooks",
    "Targets",
    "Alert types",
    "Collateral",
]
LINK = "[click](http://evil.example/x)"


class Tags(HTMLParser):
    """The start tags and text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def hostile_week() -> Effectiveness:
    """A busy week where every text that can come from outside is hostile."""
    week = busy_week(title=f"{HOSTILE} | {LINK}\nsecond line")
    figures = week.overall
    bad = f"{HOSTILE}|`x`|{LINK}"
    return week.model_copy(
        update={
            "playbooks": [bad],
            "by_playbook": [Group(key=bad, figures=figures)],
            "by_target": [Group(key=bad, figures=figures)],
            "by_alert_type": [Group(key=bad, figures=figures)],
            "recurring": [
                r.model_copy(update={"type": bad, "fingerprint": bad, "playbook": bad})
                for r in week.recurring
            ],
            "collateral": [
                Collateral(api=bad, allowed=1, denied=9, throttled=0, refused_share=0.9)
            ],
        }
    )


# -- HTML ----------------------------------------------------------------------------------


def test_html_has_every_section_and_the_charts() -> None:
    week = busy_week()
    page = render_html(week, suggest(week))
    for title in SECTIONS:
        assert f">{title}</h2>" in page
    tags = parsed(page)
    assert tags.tags.count("svg") == 5
    assert 'id="chart-contain"' in page
    assert 'id="chart-outcomes"' in page
    assert 'id="chart-recurring"' in page
    assert "Playbook block-suspicious-ip failed 4 of 18" in page
    assert "<code>on_failure: continue</code>" in page
    assert "400 ms / 2.5 s" in page


def test_html_is_self_contained() -> None:
    week = busy_week()
    page = render_html(week, suggest(week))
    tags = parsed(page)
    assert "script" not in tags.tags
    assert not {"link", "img", "iframe", "object"} & set(tags.tags)
    assert not re.search(r"\b(src|href)=", page)
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page


def test_html_escapes_hostile_text() -> None:
    week = hostile_week()
    page = render_html(week, suggest(week))
    assert HOSTILE not in page
    assert HOSTILE_ESCAPED in page
    tags = parsed(page)
    assert not {"script", "a"} & set(tags.tags)
    # The text reads as it came: a person sees the attacker's string, not its effect.
    assert any(HOSTILE in text for text in tags.text)


def test_html_of_an_empty_period() -> None:
    page = render_html(effectiveness(), [])
    assert "No suggestion: no figure crossed a threshold." in page
    assert "No data in this period" in page
    assert "No threat came back after its remediation closed." in page
    assert parsed(page).tags.count("svg") == 4


# -- Markdown ------------------------------------------------------------------------------


def test_markdown_has_every_section_and_the_charts() -> None:
    week = busy_week()
    text = render_markdown(week, suggest(week))
    for title in SECTIONS:
        assert f"\n## {title}\n" in text
    assert text.count("```mermaid\n") == 2
    assert text.count("xychart-beta") == 2
    assert '    x-axis ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-24",' in text
    assert "    line [2, 3, 4, 6, 7, 8]" in text
    # Stacked look: running totals, the tallest drawn first.
    assert "    bar [3, 3, 3, 3, 3, 3, 3]\n    bar [3, 2, 3, 2, 3, 2, 3]" in text
    assert "Layers, bottom to top: succeeded, failed." in text
    # The numbers read without Mermaid too.
    assert "| 2026-11-21 | 3 | 2 | 1 | 400 ms | 3.0 s |" in text
    assert "`on_failure: continue`" in text


def test_markdown_tables_and_links_survive_hostile_text() -> None:
    week = hostile_week()
    text = render_markdown(week, suggest(week))
    assert HOSTILE not in text
    assert LINK not in text
    assert "second line" in text
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<script" not in html
    assert "<a " not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Every table row keeps its columns.
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        heads = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>.*?</tr>", table.split("</thead>")[1], flags=re.S):
            assert len(re.findall(r"<td[ >]", row)) == heads, row


def test_markdown_of_an_empty_period() -> None:
    text = render_markdown(effectiveness(), [])
    assert "```mermaid" not in text
    assert "No remediation contained anything in this period." in text
    assert "No suggestion: no figure crossed a threshold." in text


def test_markdown_duration_axis_in_a_readable_unit() -> None:
    slow = contain(600.0, 9000.0)
    timeline = [Bucket(start=SINCE, figures=Figures(remediations=1, time_to_contain=slow))]
    text = render_markdown(effectiveness(timeline=timeline), [])
    assert 'title "Time to contain, p90 and p50 (hours)"' in text
    assert "    line [2.5]\n    line [0.17]" in text


# -- JSON ----------------------------------------------------------------------------------


def test_json_is_the_measurement_with_the_suggestions() -> None:
    week = busy_week()
    found = suggest(week)
    data = json.loads(render_json(week, found))
    suggestions = data.pop("suggestions")
    assert data == json.loads(week.model_dump_json())
    assert [s["kind"] for s in suggestions] == ["fails_often", "collateral", "never_fires"]
    assert suggestions[0]["evidence"]["ended"] == 18
    assert Effectiveness.model_validate(data) == week


@pytest.mark.parametrize("fmt", list(Format))
def test_render_dispatches_on_the_format(fmt: Format) -> None:
    eff = effectiveness(playbooks=["a"], by_playbook=[Group(key="a", figures=Figures())])
    out = render(eff, suggest(eff), fmt)
    assert out.endswith("\n")
    assert {"html": "<!DOCTYPE html>", "md": "# Remediation", "json": "{"}[fmt] in out
