"""A real nginx that asks a running `clampdown serve` about every request (`auth_request`).

The configuration is the example of docs/decision-api.md, as written there, with this
instance's addresses and token put in, inside an `http {}` block that also holds what a
throwaway instance needs (pid, logs and temporary paths inside its own prefix directory, a
backend that answers 200). Clients are told apart by their source address, as in
tests/targets/nginx_server.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.targets.nginx_server import NGINX, NginxServer, free_port

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "decision-api.md"
DOC_CLAMPDOWN = "server 127.0.0.1:8080;"
DOC_BACKEND = "server 10.0.0.12:8000;"
DOC_LISTEN = "listen 80;"
DOC_TOKEN = "REPLACE-WITH-A-READ-TOKEN"


def auth_example_conf() -> str:
    """The auth_request example of docs/decision-api.md (directives of the `http` block)."""
    text = DOC.read_text()
    match = re.search(r"<!-- example: auth_request -->\n```nginx\n(.*?)```", text, re.S)
    assert match, f"no auth_request example in {DOC}"
    return match.group(1)


def write_auth_conf(
    prefix: Path, *, port: int, backend_port: int, clampdown_port: int, token: str
) -> Path:
    """The docs example with this instance's ports and token, plus what a test instance needs."""
    example = auth_example_conf()
    for needle in (DOC_CLAMPDOWN, DOC_BACKEND, DOC_LISTEN, DOC_TOKEN):
        assert example.count(needle) == 1, f"the docs example no longer holds {needle!r} once"
    example = (
        example.replace(DOC_CLAMPDOWN, f"server 127.0.0.1:{clampdown_port};")
        .replace(DOC_BACKEND, f"server 127.0.0.1:{backend_port};")
        .replace(DOC_LISTEN, f"listen 127.0.0.1:{port};")
        .replace(DOC_TOKEN, token)
    )
    main = ["pid logs/nginx.pid;", "error_log logs/error.log notice;", "worker_processes 1;"]
    if os.geteuid() == 0:
        main.append("user root;")  # the prefix lives in a directory only root may enter
    body = "\n".join("    " + line if line else line for line in example.splitlines())
    text = (
        "\n".join(main)
        + "\nevents {}\n\nhttp {\n"
        + "    access_log off;\n"
        + "    client_body_temp_path temp/body;\n"
        + "    proxy_temp_path temp/proxy;\n"
        + "    fastcgi_temp_path temp/fastcgi;\n"
        + "    uwsgi_temp_path temp/uwsgi;\n"
        + "    scgi_temp_path temp/scgi;\n"
        + "    server {\n"
        + f"        listen 127.0.0.1:{backend_port};\n"
        + '        location / { return 200 "backend\\n"; }\n'
        + "    }\n\n"
        + body
        + "\n}\n"
    )
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def auth_nginx(root: Path, *, clampdown_port: int, token: str) -> NginxServer:
    """An nginx (not started yet) in `root`/nginx-auth that asks Clampdown on `clampdown_port`.

    Raises LookupError when nginx is not installed.
    """
    if NGINX is None:
        raise LookupError("nginx is not installed")
    prefix = root / "nginx-auth"
    for path in (prefix / "logs", prefix / "temp"):
        path.mkdir(parents=True)
    port = free_port()
    conf = write_auth_conf(
        prefix, port=port, backend_port=free_port(), clampdown_port=clampdown_port, token=token
    )
    # No include directory here: nothing is rendered, nginx asks Clampdown instead.
    return NginxServer(NGINX, prefix, conf, prefix, port)
