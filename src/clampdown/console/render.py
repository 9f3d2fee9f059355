"""HTML pages from Jinja templates, escaped by default, with the console's security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse, Response

from clampdown.console import formatting
from clampdown.report.render import code_spans

HEADERS = {
    # No script at all; styles and images only from this server; forms post only here.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _web_link(url: object) -> str | None:
    """`url` when it is an http(s) address (safe to put in href), else None."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("clampdown.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        iso=formatting.iso,
        span=formatting.span,
        value=formatting.value,
        short=formatting.short_id,
        web_link=_web_link,
        code_spans=code_spans,
    )
    env.globals.update(relative=formatting.relative, time_left=formatting.time_left)
    return env


ENV = _environment()


def secure(response: Response) -> Response:
    """Add the console's security headers to any response."""
    response.headers.update(HEADERS)
    return response


def page(template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """Render one page; `now` is added for relative times."""
    html = ENV.get_template(template).render({"now": datetime.now(UTC), **context})
    response = HTMLResponse(html, status_code=status)
    secure(response)
    return response
