"""A real `clampdown serve` process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import yaml

from tests.conftest import TOKENS, make_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, **extra: Any) -> Path:
    """A config file with the test tokens (secrets in files) and `extra` settings."""
    config = make_config(tmp_path, **extra)
    path = tmp_path / "clampdown.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return path


class Server:
    """`python -m clampdown serve` on a free port; stopped or killed by the test."""

    def __init__(self, config: Path, database_url: str, workdir: Path) -> None:
        self.config = config
        self.database_url = database_url
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with (self.workdir / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clampdown",
                    "--config",
                    str(self.config),
                    "--database-url",
                    self.database_url,
                    "serve",
                    "--port",
                    str(self.port),
                ],
                cwd=self.workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("serve did not start")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return (self.workdir / "serve.log").read_text(errors="replace")[-4000:]


def headers(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}", "Content-Type": "application/json"}


def client(server: Server, scope: str = "read") -> httpx2.Client:
    """A client of the running server carrying the token of `scope`."""
    return httpx2.Client(base_url=server.base, headers=headers(scope), timeout=10)
