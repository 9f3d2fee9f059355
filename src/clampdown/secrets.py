"""Secrets given by reference (an environment variable or a file), never inline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from clampdown.errors import ConfigError


class SecretRef(BaseModel):
    """A secret given by reference: an environment variable or a file, never inline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("give a secret by reference, {env: NAME} or {file: PATH}, not inline")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret names exactly one of 'env' or 'file'")
        return self

    def resolve(self) -> str:
        """Read the secret now; the error names the reference, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc

    def describe(self) -> str:
        """Where the secret lives, safe to print."""
        return f"env:{self.env}" if self.env else f"file:{self.file}"


def fingerprint(secret: str) -> str:
    """A short, stable name for a secret that does not reveal it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]
