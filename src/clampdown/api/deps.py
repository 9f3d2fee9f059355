"""FastAPI dependencies: the application, bearer-token scopes, size-limited bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from clampdown.config import Scope, TokenConfig
from clampdown.services import Clampdown

BEARER = "bearer"
"""The name of the security scheme in the OpenAPI document (see app.py)."""


def _clampdown(request: Request) -> Clampdown:
    app: Clampdown = request.app.state.clampdown
    return app


async def get_app(request: Request) -> Clampdown:
    """The Clampdown application this server runs."""
    return _clampdown(request)


App = Annotated[Clampdown, Depends(get_app)]


def require(scope: Scope) -> object:
    """A dependency that admits bearer tokens carrying `scope` (or admin).

    One plain dependency per request: each dependency FastAPI resolves has a cost on the
    ingest and decision paths.
    """

    async def check(request: Request) -> TokenConfig:
        kind, _, presented = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = _clampdown(request).authenticate(presented.strip())
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if not token.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this token lacks the {scope.value} scope"
            )
        return token

    return Depends(check)


Ingester = Annotated[TokenConfig, require(Scope.INGEST)]
Reader = Annotated[TokenConfig, require(Scope.READ)]
Approver = Annotated[TokenConfig, require(Scope.APPROVE)]


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past the configured limit (also when chunked)."""
    limit = _clampdown(request).config.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


Body = Annotated[bytes, Depends(read_body)]
