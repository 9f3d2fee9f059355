"""A real nginx for the nginx target's tests, configured from the example in the docs.

The `nginx.conf` is the example of docs/targets/nginx.md, with the test's directory and ports
put in and what a throwaway instance needs added (pid, logs and temporary paths inside its
own prefix directory, a backend that answers 200). Clients are told apart by their source
address: Linux routes all of 127.0.0.0/8 to the loopback interface, so a client can send from
127.0.0.5 while nginx listens on 127.0.0.1.

Import the fixtures into a test module: `from tests.targets.nginx_server import nginx ...`.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clampdown.targets.settings import NginxTarget

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "targets" / "nginx.md"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
DOC_DIRECTORY = "/etc/nginx/clampdown"
DOC_BACKEND = "127.0.0.1:8000"


def example_conf() -> str:
    """The complete nginx.conf example of the docs, as written there."""
    text = DOC.read_text()
    match = re.search(r"<!-- example: nginx\.conf -->\n```nginx\n(.*?)```", text, re.S)
    assert match, f"no nginx.conf example in {DOC}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NginxServer:
    """One running nginx with its own prefix directory."""

    binary: str
    prefix: Path
    conf: Path
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def test_command(self) -> list[str]:
        return [self.binary, "-t", "-q", "-p", str(self.prefix), "-c", str(self.conf)]

    @property
    def reload_command(self) -> list[str]:
        """nginx -s reload, counting each run in `reloads.log`."""
        return [
            "sh",
            "-c",
            'echo reload >> "$1" && exec "$2" -s reload -p "$3" -c "$4"',
            "reload",
            str(self.prefix / "reloads.log"),
            self.binary,
            str(self.prefix),
            str(self.conf),
        ]

    def target(self, **changes: Any) -> NginxTarget:
        settings: dict[str, Any] = {
            "directory": self.directory,
            "test_command": self.test_command,
            "reload_command": self.reload_command,
            "timeout": 10,
        }
        return NginxTarget(**(settings | changes))

    @property
    def reloads(self) -> int:
        try:
            return len((self.prefix / "reloads.log").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def status_now(self, path: str = "/", *, source: str = "127.0.0.1", method: str = "GET") -> int:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=5, source_address=(source, 0)
        )
        try:
            conn.request(method, path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    async def status(
        self, path: str = "/", *, source: str = "127.0.0.1", method: str = "GET"
    ) -> int:
        """The status nginx answers a request from `source`."""
        return await asyncio.to_thread(self.status_now, path, source=source, method=method)

    async def wait_status(
        self,
        expected: int,
        path: str = "/",
        *,
        source: str = "127.0.0.1",
        method: str = "GET",
        within: float = 5.0,
    ) -> None:
        """Poll until nginx answers `expected` and old workers are gone.

        nginx -s reload only signals the master: new workers start, old ones finish what
        they hold. A request may reach either until the old ones have exited.
        """
        deadline = time.monotonic() + within
        seen = []
        while True:
            status = await self.status(path, source=source, method=method)
            if status == expected and self.workers() <= 1:
                # Only the worker that answered is left: later requests see the same config.
                return
            seen.append(status)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{method} {path} from {source}: expected {expected}, got {seen[-10:]}"
                    f"\n{self.error_log()}"
                )
            await asyncio.sleep(0.02)

    def workers(self) -> int:
        """Child processes of the master; after a reload, old workers linger for a moment."""
        assert self.process is not None
        master, count = self.process.pid, 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            count += fields[1] == str(master)
        return count

    def error_log(self) -> str:
        try:
            return (self.prefix / "logs" / "error.log").read_text()[-3000:]
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        with (self.prefix / "logs" / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {(self.prefix / 'logs' / 'stderr.log').read_text()}"
                    f"\n{self.error_log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_conf(prefix: Path, directory: Path, port: int, backend_port: int) -> Path:
    """The docs example with this instance's paths and ports, plus what a test instance needs."""
    example = example_conf()
    for needle in (DOC_DIRECTORY, "listen 80;", DOC_BACKEND, "http {\n"):
        assert needle in example, f"the docs example no longer holds {needle!r}"
    text = (
        example.replace(DOC_DIRECTORY, str(directory))
        .replace("listen 80;", f"listen 127.0.0.1:{port};")
        .replace(DOC_BACKEND, f"127.0.0.1:{backend_port}")
        .replace(
            "http {\n",
            "http {\n"
            "    access_log off;\n"
            "    client_body_temp_path temp/body;\n"
            "    proxy_temp_path temp/proxy;\n"
            "    fastcgi_temp_path temp/fastcgi;\n"
            "    uwsgi_temp_path temp/uwsgi;\n"
            "    scgi_temp_path temp/scgi;\n"
            "    server {\n"
            f"        listen 127.0.0.1:{backend_port};\n"
            '        location / { return 200 "backend\\n"; }\n'
            "    }\n",
            1,
        )
    )
    main = [
        "pid logs/nginx.pid;",
        "error_log logs/error.log notice;",
        "worker_processes 1;",
    ]
    if os.geteuid() == 0:
        main.append("user root;")  # the prefix lives in a directory only root may enter
    conf = prefix / "nginx.conf"
    conf.write_text("\n".join(main) + "\n" + text)
    return conf


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxServer]:
    """A running nginx whose server includes Clampdown's files, created empty as the docs say."""
    if NGINX is None:
        if os.environ.get("CLAMPDOWN_REQUIRE_NGINX") == "1":
            pytest.fail("CLAMPDOWN_REQUIRE_NGINX is set but nginx is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    prefix = tmp_path / "nginx"
    directory = tmp_path / "clampdown"
    for path in (prefix / "logs", prefix / "temp", directory):
        path.mkdir(parents=True)
    (directory / "clampdown-http.conf").touch()
    (directory / "clampdown-server.conf").touch()
    port = free_port()
    conf = write_conf(prefix, directory, port, free_port())
    server = NginxServer(NGINX, prefix, conf, directory, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
