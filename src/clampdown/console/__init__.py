"""The web console: server-rendered pages over the services, served by the API's own app.

No JavaScript and no build step: Jinja templates, one stylesheet, and HTML forms that post
and redirect back. People log in with an API token of the config (docs/console.md).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from clampdown.console.auth import Sessions
from clampdown.console.routes import LoginNeeded, Refused, refused, router, to_login
from clampdown.services import Clampdown

__all__ = ["STATIC_PATH", "install"]

STATIC_PATH = "/console/static"


def install(app: FastAPI, clampdown: Clampdown) -> None:
    """Serve the console from `app`: its routes (left out of the OpenAPI document), its
    stylesheet, its session keys, and a redirect from `/` when nothing else answers there.

    A `console.session_secret` that cannot be read fails here, when the server starts.
    """
    app.state.console_sessions = Sessions.from_config(clampdown.config.console)
    # Mounted before the routes: the console's catch-all page must not shadow it.
    app.mount(
        STATIC_PATH,
        StaticFiles(packages=[("clampdown.console", "static")]),
        name="console-static",
    )
    app.include_router(router, include_in_schema=False)
    app.add_exception_handler(LoginNeeded, to_login)
    app.add_exception_handler(Refused, refused)
    if not any(getattr(route, "path", None) == "/" for route in app.routes):

        async def home() -> RedirectResponse:
            return RedirectResponse("/console/", status_code=307)

        app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
