"""JSON responses encoded with orjson (datetimes as ISO 8601) and the error body shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class Json(JSONResponse):
    """A JSON response encoded with orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Json:
    """The one error shape of the API: {"error": {"code", "message"}}."""
    return Json({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
