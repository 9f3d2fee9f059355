"""The effectiveness report: charts, tuning suggestions, and HTML, Markdown and JSON output.

- `charts`: inline SVG charts from plain data (the web console draws them too)
- `suggestions`: `suggest(eff)`, what to change in which playbook, with its thresholds
- `view`: the report's content as text cells and chart data, shared by every format
- `markdown`: Markdown escaping and Mermaid blocks
- `render`: `render(eff, suggestions, fmt)`, and one function per format
"""
