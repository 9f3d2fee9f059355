"""`clampdown serve`: uvicorn running the API with the engine in the same process."""

from __future__ import annotations

import gc
import secrets
from pathlib import Path

import structlog
import uvicorn

from clampdown.api.app import create_app
from clampdown.cli.output import err
from clampdown.config import Config, Scope, TokenConfig
from clampdown.secrets import SecretRef
from clampdown.services import Clampdown

log = structlog.get_logger("clampdown.serve")


def with_local_admin_token(config: Config, token_file: Path) -> Config:
    """With no tokens configured, use (creating it once) a random admin token in a 0600 file."""
    if config.tokens:
        return config
    if not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_urlsafe(32) + "\n")
        err.print(f"created an admin API token in {token_file} (readable by you only)")
    token = TokenConfig(
        name="local-admin", secret=SecretRef(file=token_file.resolve()), scopes=[Scope.ADMIN]
    )
    return config.model_copy(update={"tokens": [token]})


def _tune_gc() -> None:
    # Full collections over a large heap pause every request for 100 ms or more: keep what
    # start-up built out of them, and collect young objects less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_server(
    config: Config, database_url: str | None, *, host: str, port: int, token_file: Path
) -> None:
    """Open the app, then serve until interrupted."""
    config = with_local_admin_token(config, token_file)
    for token in config.tokens:
        token.digest()  # a missing secret fails now, not on the first request
    clampdown = Clampdown.open(config, database_url=database_url)
    try:
        url = config.effective_database_url(database_url)
        store = "SQLite" if url.startswith("sqlite") else url.split("://", 1)[0]
        err.print(
            f"clampdown: {len(clampdown.playbooks)} playbooks, {store} store, "
            f"listening on http://{host}:{port}"
        )
        _tune_gc()
        uvicorn.run(
            create_app(clampdown),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            loop="auto",
            http="auto",
        )
    finally:
        clampdown.close()
