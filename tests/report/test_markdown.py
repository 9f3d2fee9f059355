"""Markdown escaping: text from an alert stays literal text on one line."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from clampdown.report.markdown import (
    Verbatim,
    code_spans,
    escape,
    mermaid_lines,
    mermaid_stacked_bars,
    table,
)

COMMONMARK = MarkdownIt("commonmark").enable("table")


def rendered(text: str) -> str:
    """The HTML a CommonMark renderer makes of one paragraph of `text`."""
    html = COMMONMARK.render(text).strip()
    assert html.startswith("<p>"), html
    assert html.endswith("</p>"), html
    return html.removeprefix("<p>").removesuffix("</p>")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a|b", "a\\|b"),
        ("[x](http://e)", "\\[x\\](http\\://e)"),
        ("![i](u)", "!\\[i\\](u)"),
        ("<img src=x>", "&lt;img src=x&gt;"),
        ("a & b", "a &amp; b"),
        ("`code`", "\\`code\\`"),
        ("*a* _b_ ~c~", "\\*a\\* \\_b\\_ \\~c\\~"),
        ("line\nnext\r\nthird\u2028", "line next third "),
        ("# title", "\\# title"),
        ("- item", "\\- item"),
        ("1. item", "1\\. item"),
        ("2.5 s", "2.5 s"),
        ("see www.evil.example", "see www\\.evil.example"),
        ("mail a@b.example", "mail a\\@b.example"),
        ("$x$", "\\$x\\$"),
        ("back\\slash", "back\\\\slash"),
        ("block-suspicious-ip", "block-suspicious-ip"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "[click](http://evil.example)",
        "![x](http://evil.example/p.png)",
        "<http://evil.example>",
        "*bold* and _em_ and `code`",
        "# heading",
        "> quote",
        "&lt;b&gt; entity",
        "a\n\n<div>block</div>",
    ],
)
def test_escaped_text_renders_as_itself(text: str) -> None:
    """Whatever it holds, a renderer shows the text, not links, images, markup or emphasis."""
    html = rendered(escape(text))
    for tag in ("<a", "<img", "<script", "<em", "<strong", "<code", "<div", "<h1", "<blockquote"):
        assert tag not in html
    flat = " ".join(text.split())
    expected = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert html == expected.replace('"', "&quot;")


def test_verbatim_is_written_as_it_is() -> None:
    assert escape(Verbatim("**ours**")) == "**ours**"


def test_code_spans() -> None:
    assert code_spans("set `on_failure: continue` or *not*") == (
        "set `on_failure: continue` or \\*not\\*"
    )
    # An odd backtick opens nothing; hostile text never goes into a code span.
    assert code_spans("a `b` `c") == "a `b` \\`c"
    assert code_spans("`<script>`") == "\\`&lt;script&gt;\\`"
    assert code_spans("x `` y") == "x \\`\\` y"


def test_table_escapes_every_cell() -> None:
    text = table(["name", "n"], [["a|b", 1], ["<i>", 2]], [False, True])
    assert text == "| name | n |\n|---|---:|\n| a\\|b | 1 |\n| &lt;i&gt; | 2 |"
    html = COMMONMARK.render(text)
    assert html.count("<td>") + html.count('<td style="text-align:right">') == 4


def test_mermaid_lines() -> None:
    block = mermaid_lines(
        'Time "to" contain', ["d1", "d`2"], [[1.0, 2.5], [0.25, 0.0]], y_title="seconds"
    )
    assert block == (
        "```mermaid\n"
        "xychart-beta\n"
        '    title "Time to contain"\n'
        '    x-axis ["d1", "d2"]\n'
        '    y-axis "seconds"\n'
        "    line [1, 2.5]\n"
        "    line [0.25, 0]\n"
        "```"
    )


def test_mermaid_stacked_bars_draw_running_totals_tallest_first() -> None:
    block = mermaid_stacked_bars(
        "Outcomes",
        ["d1", "d2"],
        [[3.0, 1.0], [1.0, 0.0]],
        y_title="remediations",
        colors=["#00aa00", "not a colour"],
    )
    assert "    bar [4, 1]\n    bar [3, 1]\n```" in block
    # Colours follow the drawing order; what is not a hex colour becomes grey.
    assert '"plotColorPalette": "#718096, #00aa00"' in block
