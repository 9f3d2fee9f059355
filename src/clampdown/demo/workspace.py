"""The demo directory: a config with the built-in target only, two API tokens, a database file."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from clampdown.errors import ConflictError, InputError

CONFIG = "clampdown.yaml"
DATABASE = "clampdown.db"
ADMIN_TOKEN_FILE = "token"  # noqa: S105 - a file name
READ_TOKEN_FILE = "token-read"  # noqa: S105 - a file name
# Every file the demo writes: the only ones --force replaces.
FILES = (CONFIG, DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", ADMIN_TOKEN_FILE, READ_TOKEN_FILE)
PROTECTED = "198.51.100.248/29"
"""The demo's uptime monitors: a safety rail keeps them from ever being contained."""

_HEADER = """\
# Written by `clampdown demo`: a local sandbox, nothing here reaches the network.
# Only the built-in target exists (containments on the built-in list, guided tasks), which
# is all the default playbook pack uses. The database holds sample alerts and, unless
# --no-history was given, a week of made-up history marked "(demo data)".
# Open the console:  clampdown --config {config} serve
"""


@dataclass(frozen=True)
class Workspace:
    """Where the demo's files are."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / CONFIG

    @property
    def database(self) -> Path:
        return self.directory / DATABASE

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def admin_token(self) -> Path:
        return self.directory / ADMIN_TOKEN_FILE

    @property
    def read_token(self) -> Path:
        return self.directory / READ_TOKEN_FILE


def prepare(directory: Path, *, force: bool) -> Workspace:
    """An empty demo directory (created readable by its owner only), or an error.

    An existing directory that holds anything is refused unless `force`; then the demo's own
    files in it are removed, and nothing else.
    """
    workspace = Workspace(directory.expanduser().resolve())
    where = workspace.directory
    if where.exists() and not where.is_dir():
        raise InputError(f"{where} exists and is not a directory")
    if where.is_dir() and any(where.iterdir()):
        if not force:
            raise ConflictError(
                f"{where} is not empty; choose another --dir, or pass --force to replace the "
                "demo's files in it"
            )
        for name in FILES:
            (where / name).unlink(missing_ok=True)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    return workspace


def write_files(workspace: Workspace) -> None:
    """Two random tokens (admin, read-only; files readable by their owner only) and the config."""
    for path in (workspace.admin_token, workspace.read_token):
        _write_private(path, secrets.token_urlsafe(32) + "\n")
    config = {
        "database_url": workspace.database_url,
        "default_pack": True,
        "tokens": [
            {
                "name": "demo-admin",
                "secret": {"file": str(workspace.admin_token)},
                "scopes": ["admin"],
            },
            {
                "name": "demo-read",
                "secret": {"file": str(workspace.read_token)},
                "scopes": ["read"],
            },
        ],
        "safety": {"protected": {"ips": [PROTECTED]}},
    }
    text = _HEADER.format(config=workspace.config) + yaml.safe_dump(config, sort_keys=False)
    workspace.config.write_text(text)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
