"""FastAPI dependencies: the application, bearer-token scopes, size-limited bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clampdown.config import Scope, TokenConfig
from clampdown.services import Clampdown

_bearer = HTTPBearer(auto_error=False, description="An API token from the config file")


async def get_app(request: Request) -> Clampdown:
    """The Clampdown application this server runs."""
    app: Clampdown = request.app.state.clampdown
    return app


App = Annotated[Clampdown, Depends(get_app)]


async def _token(
    app: App, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenConfig:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = app.authenticate(creds.credentials)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return token


def require(scope: Scope) -> object:
    """A dependency that admits tokens carrying `scope` (or admin)."""

    async def check(token: Annotated[TokenConfig, Depends(_token)]) -> TokenConfig:
        if not token.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this token lacks the {scope.value} scope"
            )
        return token

    return Depends(check)


Ingester = Annotated[TokenConfig, require(Scope.INGEST)]
Reader = Annotated[TokenConfig, require(Scope.READ)]
Approver = Annotated[TokenConfig, require(Scope.APPROVE)]


async def read_body(request: Request, app: App) -> bytes:
    """The request body, refused with 413 past the configured limit (also when chunked)."""
    limit = app.config.limits.max_body_bytes
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
