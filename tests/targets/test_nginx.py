"""The nginx target against a real nginx: render, test, reload, and what clients then get."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import ContainmentSpec
from clampdown.actions.http import TargetHttp
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.targets.driver import Wanted
from clampdown.targets.nginx import NginxDriver
from clampdown.targets.nginx import render as nginx_render
from clampdown.targets.nginx.driver import LOCK_FILE, PENDING_FILE
from clampdown.targets.settings import NginxTarget, Probe
from tests.targets.nginx_server import DOC, NginxServer, nginx

__all__ = ["nginx"]  # the fixture, imported for pytest

HTTP = "clampdown-http.conf"
SERVER = "clampdown-server.conf"


def spec(kind: str, subject_type: str, subject: str, **extra: Any) -> ContainmentSpec:
    if kind == "disable":
        extra.setdefault("scope", subject)
    return ContainmentSpec(kind=kind, subject_type=subject_type, subject=subject, **extra)


BLOCK_5 = spec("block", "ip", "127.0.0.5")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def driver_for(server: NginxServer, session: aiohttp.ClientSession, **changes: Any) -> NginxDriver:
    settings = server.target(**changes)
    origins = [settings.probe.url] if settings.probe else []
    return NginxDriver("edge", settings, TargetHttp(session, origins, "edge"))


def wanting(driver: NginxDriver, *specs: ContainmentSpec) -> Wanted:
    """What the store would hand back: the containments as `accept` returned them."""
    accepted = [driver.accept(s) for s in specs]

    async def wanted(scope: str | None) -> list[ContainmentSpec]:
        assert scope is None
        return list(accepted)

    return wanted


def files(server: NginxServer) -> tuple[bytes, bytes]:
    return (server.directory / HTTP).read_bytes(), (server.directory / SERVER).read_bytes()


# --- against a running nginx ---------------------------------------------------------------


async def test_nothing_contained_renders_valid_files(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    await driver.reconcile(None, wanting(driver))
    http, server = files(nginx)
    assert http.startswith(b"# Rendered by Clampdown; do not edit. sha256=")
    assert nginx_render.intact(http)
    assert nginx_render.intact(server)
    assert b"limit_req zone" not in server
    assert nginx.reloads == 1
    await nginx.wait_status(200, source="127.0.0.5")


async def test_block_ip_refuses_that_client_only_until_lifted(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    assert driver.unit(BLOCK_5) is None
    await driver.reconcile(None, wanting(driver, BLOCK_5))
    await nginx.wait_status(403, source="127.0.0.5")
    assert await nginx.status(source="127.0.0.1") == 200
    assert await driver.enforces(BLOCK_5)
    assert not await driver.enforces(spec("block", "ip", "127.0.0.6"))

    await driver.reconcile(None, wanting(driver))
    await nginx.wait_status(200, source="127.0.0.5")
    assert not await driver.enforces(BLOCK_5)


async def test_block_cidr(nginx: NginxServer, session: aiohttp.ClientSession) -> None:
    driver = driver_for(nginx, session)
    block = spec("block", "cidr", "127.0.1.77/24")
    assert driver.accept(block).subject == "127.0.1.0/24"
    await driver.reconcile(None, wanting(driver, block))
    await nginx.wait_status(403, source="127.0.1.9")
    assert await nginx.status(source="127.0.1.200") == 403
    assert await nginx.status(source="127.0.2.1") == 200
    assert await nginx.status(source="127.0.0.1") == 200
    assert await driver.enforces(block)
    assert not await driver.enforces(spec("block", "ip", "127.0.1.9"))


async def test_throttle_limits_the_throttled_client_only(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    throttle = spec("throttle", "ip", "127.0.0.6", rate=1, period_seconds=1)
    await driver.reconcile(None, wanting(driver, throttle))
    assert b"rate=1r/s;" in files(nginx)[0]
    await nginx.wait_status(429, source="127.0.0.6")  # in force once a request is refused
    assert [await nginx.status(source="127.0.0.1") for _ in range(3)] == [200, 200, 200]
    await asyncio.sleep(1.1)  # one request per second: the next one is allowed again
    assert await nginx.status(source="127.0.0.6") == 200
    assert await nginx.status(source="127.0.0.6") == 429
    assert await driver.enforces(throttle)
    assert not await driver.enforces(throttle.model_copy(update={"rate": 2}))
    assert not await driver.enforces(spec("block", "ip", "127.0.0.6"))


async def test_disabled_endpoint_refused_for_everyone(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    legacy = spec("disable", "endpoint", "GET /legacy/invoices")
    admin = spec("disable", "endpoint", "/admin/*")
    await driver.reconcile(None, wanting(driver, legacy, admin))
    await nginx.wait_status(403, "/legacy/invoices")
    for path in ("/legacy/invoices/", "/legacy//invoices?page=2", "/legacy/%69nvoices"):
        assert await nginx.status(path, source="127.0.0.9") == 403, path
    assert await nginx.status("/legacy/invoices", method="POST") == 200
    assert await nginx.status("/legacy/invoices-2024") == 200
    assert await nginx.status("/orders") == 200
    assert await nginx.status("/admin/users/1", method="DELETE") == 403
    assert await nginx.status("/administrator") == 200
    assert await driver.enforces(legacy)
    assert await driver.enforces(spec("disable", "endpoint", "* /admin/*"))
    assert not await driver.enforces(spec("disable", "endpoint", "POST /legacy/invoices"))


async def test_probe_of_a_disabled_endpoint(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session, probe=Probe(url=nginx.url("/health")))
    legacy = spec("disable", "endpoint", "GET /legacy/invoices")
    await driver.reconcile(None, wanting(driver, legacy))
    await nginx.wait_status(403, "/legacy/invoices")
    assert await driver.probe(driver.accept(legacy)) is None
    throttle = spec("throttle", "ip", "127.0.0.6", rate=1, period_seconds=1)
    assert await driver.probe(driver.accept(throttle)) is None  # not probed: nothing to see
    await driver.reconcile(None, wanting(driver))
    await nginx.wait_status(200, "/legacy/invoices")
    assert "got 200, expected 403" in (await driver.probe(driver.accept(legacy)) or "")


async def test_repeat_neither_rewrites_nor_reloads(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    wanted = wanting(driver, BLOCK_5, spec("disable", "endpoint", "/x"))
    await driver.reconcile(None, wanted)
    mtimes = [(nginx.directory / name).stat().st_mtime_ns for name in (HTTP, SERVER)]
    assert nginx.reloads == 1
    await driver.reconcile(None, wanted)
    await driver_for(nginx, session).reconcile(None, wanted)
    assert nginx.reloads == 1
    assert [(nginx.directory / n).stat().st_mtime_ns for n in (HTTP, SERVER)] == mtimes
    await driver.reconcile(None, wanting(driver, BLOCK_5))
    assert nginx.reloads == 2
    assert sorted(p.name for p in nginx.directory.iterdir()) == [".clampdown.lock", HTTP, SERVER]


async def test_failed_test_keeps_previous_files_byte_for_byte(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    await driver.reconcile(None, wanting(driver, BLOCK_5))
    await nginx.wait_status(403, source="127.0.0.5")
    before = files(nginx)

    failing = driver_for(nginx, session, test_command=["false"])
    with pytest.raises(PermanentError, match=r"test failed, previous files kept: .*status 1"):
        await failing.reconcile(None, wanting(failing, spec("block", "ip", "127.0.0.7")))
    assert files(nginx) == before
    assert not (nginx.directory / PENDING_FILE).exists()
    assert nginx.reloads == 1
    assert await nginx.status(source="127.0.0.5") == 403
    assert await nginx.status(source="127.0.0.7") == 200


def broken_conf(server: NginxServer) -> Path:
    """An nginx.conf that includes the server file where nginx refuses it."""
    conf = server.prefix / "broken.conf"
    conf.write_text(
        "pid logs/broken.pid;\nevents {}\nhttp {\n"
        f"    include {server.directory / HTTP};\n"
        f"    include {server.directory / SERVER};\n"
        "}\n"
    )
    return conf


async def test_nginx_message_when_it_refuses_the_render(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    test = [*nginx.test_command[:-1], str(broken_conf(nginx))]
    driver = driver_for(nginx, session, test_command=test)
    with pytest.raises(PermanentError, match='"if" directive is not allowed here') as caught:
        await driver.reconcile(None, wanting(driver, BLOCK_5))
    assert "[emerg]" in str(caught.value)
    assert files(nginx) == (b"", b"")  # the empty files of the setup, as they were
    assert nginx.reloads == 0

    for name in (HTTP, SERVER):
        (nginx.directory / name).unlink()
    with pytest.raises(PermanentError):
        await driver.reconcile(None, wanting(driver, BLOCK_5))
    assert not (nginx.directory / HTTP).exists()
    assert not (nginx.directory / SERVER).exists()
    assert not (nginx.directory / PENDING_FILE).exists()


async def test_failed_reload_is_transient_and_retried_by_the_next_reconcile(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    broken = driver_for(nginx, session, reload_command=["false"])
    with pytest.raises(TransientError, match="reload failed"):
        await broken.reconcile(None, wanting(broken, BLOCK_5))
    assert (nginx.directory / PENDING_FILE).exists()
    assert not await broken.enforces(BLOCK_5)  # written, but nginx has not loaded it
    assert any(c.name == "reload" and not c.ok for c in await broken.check())

    driver = driver_for(nginx, session)
    await driver.reconcile(None, wanting(driver, BLOCK_5))  # same text: reloads anyway
    assert nginx.reloads == 1
    assert not (nginx.directory / PENDING_FILE).exists()
    await nginx.wait_status(403, source="127.0.0.5")
    assert await driver.enforces(BLOCK_5)


async def test_hand_edited_file_is_not_overwritten(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    await driver.reconcile(None, wanting(driver, BLOCK_5))
    path = nginx.directory / HTTP
    edited = path.read_bytes().replace(b"127.0.0.5 1;", b"127.0.0.5 1;\n    127.0.0.8 1;")
    path.write_bytes(edited)
    server_before = (nginx.directory / SERVER).read_bytes()

    with pytest.raises(PreconditionError, match=r"changed by hand.*Move your changes out"):
        await driver.reconcile(None, wanting(driver))
    assert path.read_bytes() == edited
    assert (nginx.directory / SERVER).read_bytes() == server_before
    assert nginx.reloads == 1
    with pytest.raises(PreconditionError):
        await driver.enforces(BLOCK_5)
    assert [c.ok for c in await driver.check() if c.name == HTTP] == [False]

    path.write_text("geo $mine { default 0; }\n")  # no header: not Clampdown's file either
    with pytest.raises(PreconditionError, match="changed by hand"):
        await driver.reconcile(None, wanting(driver))

    path.unlink()  # what the operator is told to do
    await driver.reconcile(None, wanting(driver))
    await nginx.wait_status(200, source="127.0.0.5")


async def test_concurrent_reconciles_end_with_the_latest_set(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    drivers = [driver_for(nginx, session) for _ in range(3)]
    active: list[ContainmentSpec] = []

    async def wanted(scope: str | None) -> list[ContainmentSpec]:
        return list(active)

    async def add(driver: NginxDriver, n: int) -> None:
        active.append(driver.accept(spec("block", "ip", f"127.0.3.{n}")))
        await driver.reconcile(None, wanted)

    await asyncio.gather(*(add(drivers[n % 3], n) for n in range(1, 7)))
    http, server = nginx_render.render(active)
    assert files(nginx) == (http.encode(), server.encode())
    await nginx.wait_status(403, source="127.0.3.6")
    assert await nginx.status(source="127.0.3.1") == 403


async def test_another_process_holding_the_lock_is_waited_for(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    with (nginx.directory / LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another worker process would
        impatient = driver_for(nginx, session, timeout=0.1)
        with pytest.raises(TransientError, match="another process holds"):
            await impatient.reconcile(None, wanting(impatient, BLOCK_5))
        driver = driver_for(nginx, session)
        waiting = asyncio.create_task(driver.reconcile(None, wanting(driver, BLOCK_5)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert files(nginx) == (b"", b"")
        fcntl.flock(held, fcntl.LOCK_UN)
        await waiting
    assert nginx.reloads == 1
    await nginx.wait_status(403, source="127.0.0.5")


async def test_check(nginx: NginxServer, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    driver = driver_for(nginx, session)
    checks = {c.name: c for c in await driver.check()}
    assert all(c.ok for c in checks.values()), checks
    assert set(checks) == {"directory", HTTP, SERVER, "test_command", "reload_command"}
    assert checks[HTTP].detail == "empty"
    await driver.reconcile(None, wanting(driver, BLOCK_5))
    before = files(nginx)
    assert all(c.ok for c in await driver.check())
    assert files(nginx) == before
    assert nginx.reloads == 1

    failing = driver_for(nginx, session, test_command=["false"])
    assert [c.ok for c in await failing.check() if c.name == "test_command"] == [False]
    missing = driver_for(nginx, session, test_command=["/nonexistent/nginx", "-t"])
    detail = [c.detail for c in await missing.check() if c.name == "test_command"]
    assert "cannot run test_command" in detail[0]
    elsewhere = driver_for(nginx, session, directory=tmp_path / "absent")
    assert [c.ok for c in await elsewhere.check() if c.name == "directory"] == [False]
    with pytest.raises(PreconditionError, match="does not exist"):
        await elsewhere.reconcile(None, wanting(elsewhere))


async def test_containment_in_the_store_that_no_longer_validates(
    nginx: NginxServer, session: aiohttp.ClientSession
) -> None:
    driver = driver_for(nginx, session)
    hostile = spec("disable", "endpoint", 'GET /x"; } include /etc/passwd; #')

    async def wanted(scope: str | None) -> list[ContainmentSpec]:
        return [driver.accept(BLOCK_5), hostile]

    with pytest.raises(PermanentError, match="cannot be rendered"):
        await driver.reconcile(None, wanted)
    assert files(nginx) == (b"", b"")
    assert nginx.reloads == 0


# --- validation, without nginx ---------------------------------------------------------------


@pytest.fixture
async def offline(tmp_path: Path, session: aiohttp.ClientSession) -> NginxDriver:
    target = NginxTarget(directory=tmp_path, test_command=["false"], reload_command=["false"])
    return NginxDriver("edge", target, TargetHttp(session, [], "edge"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (spec("block", "ip", " 2001:DB8::1 "), ("2001:db8::1", "*")),
        (spec("block", "ip", "::ffff:203.0.113.7"), ("203.0.113.7", "*")),
        (spec("block", "cidr", "10.1.2.3/8", scope=" * "), ("10.0.0.0/8", "*")),
        (spec("block", "cidr", "::ffff:10.0.0.0/104"), ("10.0.0.0/8", "*")),
        (spec("disable", "endpoint", "GET /legacy/invoices"), ("GET /legacy/invoices",) * 2),
        (spec("disable", "endpoint", "* //admin/**/"), ("/admin/*",) * 2),
        (spec("disable", "endpoint", "/a/%69%2a%2f%7e"), ("/a/i%2A/~",) * 2),
        (spec("disable", "endpoint", "DELETE /", scope="*"), ("DELETE /",) * 2),
    ],
)
def test_accept_returns_canonical_values(
    offline: NginxDriver, given: ContainmentSpec, expected: tuple[str, str]
) -> None:
    accepted = offline.accept(given)
    assert (accepted.subject, accepted.scope) == expected
    assert offline.accept(accepted) == accepted  # canonical is a fixed point


def test_accept_keeps_the_throttle_rate(offline: NginxDriver) -> None:
    accepted = offline.accept(spec("throttle", "ip", "192.0.2.1", rate=5, period_seconds=60))
    assert (accepted.rate, accepted.period_seconds) == (5, 60)
    assert offline.accept(spec("block", "ip", "192.0.2.1", rate=5)).rate is None


HOSTILE = [
    spec("block", "ip", "127.0.0.1; include /etc/shadow"),
    spec("block", "ip", "127.0.0.1\n127.0.0.2"),
    spec("block", "ip", "fe80::1%eth0"),
    spec("block", "cidr", "10.0.0.0/8 1; default 1"),
    spec("block", "cidr", "fe80::%1/64"),
    spec("throttle", "ip", "192.0.2.1", rate=0, period_seconds=60),
    spec("throttle", "ip", "192.0.2.1", rate=5),
    spec("throttle", "ip", "192.0.2.1", rate=10**9, period_seconds=1),
    spec("disable", "endpoint", 'GET /x";} include /etc/passwd; #'),
    spec("disable", "endpoint", "GET /x\nreturn 200"),
    spec("disable", "endpoint", "GET /$host"),
    spec("disable", "endpoint", "GET /x{1,2}"),
    spec("disable", "endpoint", "GET /x y"),
    spec("disable", "endpoint", "get /x"),
    spec("disable", "endpoint", "G3T /x"),
    spec("disable", "endpoint", "GET x"),
    spec("disable", "endpoint", "/a/../b"),
    spec("disable", "endpoint", "/a/%2e/b"),
    spec("disable", "endpoint", "/a%zz"),
    spec("disable", "endpoint", "/a%4"),
    spec("disable", "endpoint", "/" + "a" * 2000),
    spec("disable", "endpoint", ""),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda s: repr(s.subject[:30]))
def test_hostile_values_are_refused(offline: NginxDriver, hostile: ContainmentSpec) -> None:
    with pytest.raises(PermanentError, match=r"^target edge \(nginx\): ") as caught:
        offline.accept(hostile)
    assert "\n" not in str(caught.value)
    assert list(offline.settings.directory.iterdir()) == []


@pytest.mark.parametrize(
    "unsupported",
    [
        spec("block", "api_key", "k-123"),
        spec("throttle", "user", "mallory"),
        spec("block", "ip", "192.0.2.1", scope="orders-api"),
        spec("throttle", "cidr", "192.0.2.0/24", scope="/orders/*", rate=1, period_seconds=1),
        spec("disable", "ip", "192.0.2.1"),
        spec("disable", "endpoint", "/x", scope="/y"),
    ],
)
def test_unsupported_containments(offline: NginxDriver, unsupported: ContainmentSpec) -> None:
    with pytest.raises(PermanentError, match=r"target edge \(nginx\) cannot "):
        offline.accept(unsupported)


@pytest.mark.parametrize(
    ("rate", "period", "nginx_rate", "burst"),
    [
        (1, 1, "1r/s", 0),
        (60, 60, "1r/s", 59),
        (100, 60, "100r/m", 99),
        (100, 3600, "2r/m", 99),
        (1, 3600, "1r/m", 0),
        (1, 120, "1r/m", 0),  # 0.5 per minute rounds half up
        (5, 1, "5r/s", 4),
        (7, 2, "210r/m", 6),
    ],
)
def test_rate_conversion(rate: int, period: int, nginx_rate: str, burst: int) -> None:
    assert nginx_render.nginx_rate(rate, period) == nginx_rate
    assert nginx_render.burst(rate) == burst


def test_render_is_deterministic_and_merges() -> None:
    specs = [
        spec("block", "ip", "198.51.100.2"),
        spec("block", "cidr", "198.51.100.2/32"),
        spec("block", "cidr", "2001:db8::/32"),
        spec("block", "ip", "9.9.9.9"),
        spec("throttle", "ip", "192.0.2.1", rate=2, period_seconds=1),
        spec("throttle", "ip", "192.0.2.1", rate=1, period_seconds=1),
        spec("disable", "endpoint", "/b"),
        spec("disable", "endpoint", "GET /a"),
    ]
    canonical = [nginx_render.canonical(s) for s in specs]
    http, server = nginx_render.render(canonical)
    assert nginx_render.render(list(reversed(canonical))) == (http, server)
    assert http.count("198.51.100.2") == 1
    assert http.index("9.9.9.9 1;") < http.index("198.51.100.2 1;") < http.index("2001:db8::/32")
    assert server.index("zone=clampdown_1_1 ") < server.index("zone=clampdown_2_1 burst=1 ")
    enforced = nginx_render.parse(http, server)
    assert all(enforced.holds(s) for s in canonical)
    header, _, body = http.partition("\n")
    assert header == nginx_render.HEADER_PREFIX + hashlib.sha256(body.encode()).hexdigest()


def test_the_rendered_example_in_the_docs_is_current() -> None:
    """docs/targets/nginx.md shows the render of these containments, hashes aside."""
    specs = [
        spec("block", "cidr", "10.0.0.0/8"),
        spec("block", "ip", "203.0.113.7"),
        spec("throttle", "ip", "198.51.100.23", rate=60, period_seconds=60),
        spec("disable", "endpoint", "GET /legacy/invoices"),
    ]
    http, server = nginx_render.render([nginx_render.canonical(s) for s in specs])
    shown = re.findall(r"```nginx\n(# Rendered by Clampdown.*?)```", DOC.read_text(), re.S)
    unhashed = [re.sub(r"sha256=[0-9a-f]{64}", "sha256=...", text) for text in (http, server)]
    assert shown == unhashed
