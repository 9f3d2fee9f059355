"""The nginx target: two rendered include files, validated with `nginx -t`, then a reload.

A reconcile renders every containment of the target at once (see `render`), and changes the
files only when the text differs. Each file is replaced atomically (temporary file in the
same directory, fsync, rename). The test command then checks the whole nginx configuration:
if it fails, the previous files are put back byte for byte and the error is permanent. If it
passes, the reload command makes nginx load them; a failed reload is transient, and a marker
file (`.clampdown-reload-pending`) makes the next reconcile reload even when the text is
unchanged by then.

Reconciles of one directory are serialized: an asyncio lock per directory in this process,
and an exclusive `flock` on `.clampdown.lock` in the directory across processes. The wanted
containments are read while both are held, so the last writer always renders the latest set.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from clampdown.actions.contract import ContainmentSpec
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.model import ContainmentKind
from clampdown.targets.driver import Check, Driver, Wanted
from clampdown.targets.nginx import render
from clampdown.targets.settings import NginxTarget

LOCK_FILE = ".clampdown.lock"
PENDING_FILE = ".clampdown-reload-pending"
FILES = (render.HTTP_FILE, render.SERVER_FILE)
MAX_MESSAGE = 2000
"""Characters of a command's output kept in an error message."""

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _directory_lock(directory: Path) -> asyncio.Lock:
    """The in-process lock of one directory (asyncio locks belong to one event loop)."""
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(os.path.realpath(directory), asyncio.Lock())


class NginxDriver(Driver):
    """Renders block, throttle and disable containments into nginx include files."""

    type: ClassVar[str] = "nginx"
    settings: NginxTarget

    @property
    def directory(self) -> Path:
        """Where the include files are written."""
        return Path(self.settings.directory)

    # -- gateway verbs -------------------------------------------------------------------

    def accept(self, spec: ContainmentSpec) -> ContainmentSpec:
        try:
            return render.canonical(spec)
        except render.Unsupported as exc:
            raise self.unsupported(str(exc)) from None
        except PermanentError as exc:
            raise PermanentError(f"target {self.name} (nginx): {exc}") from None

    def unit(self, spec: ContainmentSpec) -> str | None:
        return None

    async def reconcile(self, scope: str | None, wanted: Wanted) -> None:
        async with self._locked():
            specs = [self._stored(spec) for spec in await wanted(None)]
            http, server = render.render(specs)
            await self._apply(
                {render.HTTP_FILE: http.encode(), render.SERVER_FILE: server.encode()}
            )

    async def enforces(self, spec: ContainmentSpec) -> bool:
        wanted = self.accept(spec)
        current = self._read_current()
        if any(text is None or not text for text in current.values()):
            return False
        if (self.directory / PENDING_FILE).exists():
            return False  # rendered, but nginx has not loaded it yet
        http, server = (current[name] or b"" for name in FILES)
        return render.parse(http.decode(), server.decode()).holds(wanted)

    async def probe(self, spec: ContainmentSpec) -> str | None:
        if spec.kind is ContainmentKind.THROTTLE:
            return None  # one request cannot show a throttle, and it would use up the rate
        return await super().probe(spec)

    # -- operations ----------------------------------------------------------------------

    async def check(self) -> list[Check]:
        directory = self.directory
        checks: list[Check] = []
        if not directory.is_dir():
            checks.append(Check("directory", False, f"{directory} does not exist"))
        elif not os.access(directory, os.W_OK | os.X_OK):
            checks.append(Check("directory", False, f"{directory} is not writable"))
        else:
            checks.append(Check("directory", True, str(directory)))
        for name in FILES:
            path = directory / name
            try:
                text = path.read_bytes()
            except FileNotFoundError:
                checks.append(Check(name, True, "not rendered yet"))
                continue
            except OSError as exc:
                checks.append(Check(name, False, f"cannot read {path}: {exc.strerror}"))
                continue
            if text and not render.intact(text):
                checks.append(Check(name, False, _edited(path)))
            else:
                checks.append(Check(name, True, "intact" if text else "empty"))
        try:
            code, message = await self._run(self.settings.test_command, "test_command")
        except (PreconditionError, TransientError) as exc:
            checks.append(Check("test_command", False, str(exc)))
        else:
            checks.append(Check("test_command", code == 0, "passed" if code == 0 else message))
        reload = self.settings.reload_command[0]
        found = shutil.which(reload)
        checks.append(
            Check(
                "reload_command",
                found is not None,
                f"{found} (not run)" if found else f"{reload!r} not found",
            )
        )
        if (directory / PENDING_FILE).exists():
            checks.append(
                Check("reload", False, "the last reload failed; the next change retries it")
            )
        return checks

    # -- internals -----------------------------------------------------------------------

    def _stored(self, spec: ContainmentSpec) -> ContainmentSpec:
        """An active containment checked again before rendering: the store is not trusted."""
        try:
            return render.canonical(spec)
        except (render.Unsupported, PermanentError) as exc:
            raise PermanentError(
                f"target {self.name} (nginx): an active containment cannot be rendered "
                f"({spec.kind.value} {spec.subject_type.value} {render.shown(spec.subject)}"
                f" at {render.shown(spec.scope)}): {exc}; lift it to unblock changes"
            ) from None

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with _directory_lock(self.directory):
            fd = await self._flock()
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    async def _flock(self) -> int:
        """An exclusive lock on the directory's lock file, waited for within the timeout."""
        directory = self.directory
        if not directory.is_dir():
            raise PreconditionError(
                f"target {self.name} (nginx): directory {directory} does not exist"
            )
        path = directory / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PreconditionError(
                f"target {self.name} (nginx): cannot open {path}: {exc.strerror}"
            ) from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.timeout + 1  # a test and a reload, and some
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                        raise
                if loop.time() > deadline:
                    raise TransientError(
                        f"target {self.name} (nginx): another process holds {path}"
                    )
                await asyncio.sleep(0.01)
        except BaseException:
            os.close(fd)
            raise

    def _read_current(self) -> dict[str, bytes | None]:
        current: dict[str, bytes | None] = {}
        for name in FILES:
            path = self.directory / name
            try:
                current[name] = path.read_bytes()
            except FileNotFoundError:
                current[name] = None
            except OSError as exc:
                raise PreconditionError(
                    f"target {self.name} (nginx): cannot read {path}: {exc.strerror}"
                ) from exc
            text = current[name]
            if text and not render.intact(text):
                raise PreconditionError(f"target {self.name} (nginx): {_edited(path)}")
        return current

    async def _apply(self, rendered: dict[str, bytes]) -> None:
        previous = self._read_current()
        pending_path = self.directory / PENDING_FILE
        was_pending = pending_path.exists()
        changed = [name for name in FILES if previous[name] != rendered[name]]
        if not changed and not was_pending:
            return
        if changed:
            await _in_thread(self._write, {n: rendered[n] for n in changed}, previous)
        try:
            code, message = await self._run(self.settings.test_command, "test_command")
        except BaseException:
            await self._put_back(changed, previous, was_pending)
            raise
        if code != 0:
            await self._put_back(changed, previous, was_pending)
            raise PermanentError(
                f"target {self.name} (nginx): the configuration test failed, previous files "
                f"kept: {message}"
            )
        code, message = await self._run(self.settings.reload_command, "reload_command")
        if code != 0:
            raise TransientError(f"target {self.name} (nginx): reload failed: {message}")
        with contextlib.suppress(FileNotFoundError):
            pending_path.unlink()

    def _write(self, files: dict[str, bytes], previous: dict[str, bytes | None]) -> None:
        """Mark a reload pending, then replace each file atomically."""
        try:
            _write_atomic(self.directory / PENDING_FILE, b"", 0o644)
            for name, text in files.items():
                _write_atomic(self.directory / name, text, _mode(self.directory / name))
        except OSError as exc:
            with contextlib.suppress(OSError):  # best effort; the pending marker stays
                self._restore(list(files), previous)
            raise PreconditionError(
                f"target {self.name} (nginx): cannot write in {self.directory}: {exc.strerror}"
            ) from exc

    async def _put_back(
        self, names: Sequence[str], previous: dict[str, bytes | None], was_pending: bool
    ) -> None:
        await _in_thread(self._restore, names, previous)
        if not was_pending:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / PENDING_FILE).unlink()

    def _restore(self, names: Sequence[str], previous: dict[str, bytes | None]) -> None:
        """The files as they were before this reconcile (removed when there were none)."""
        for name in names:
            path = self.directory / name
            text = previous[name]
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                _write_atomic(path, text, _mode(path))
        _fsync_directory(self.directory)

    async def _run(self, argv: Sequence[str], what: str) -> tuple[int, str]:
        """Run a configured command (no shell) within the timeout: exit code and its output."""
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise PreconditionError(
                f"target {self.name} (nginx): cannot run {what} {argv[0]!r}: {exc.strerror or exc}"
            ) from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise TransientError(
                    f"target {self.name} (nginx): {what} did not finish in {self.timeout:g}s"
                ) from exc
            raise
        code = process.returncode
        assert code is not None
        text = (err.strip() or out.strip()).decode("utf-8", "replace")
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE] + "..."
        return code, text or f"{what} exited with status {code}"


async def _in_thread(function: Callable[..., None], *args: Any) -> None:
    """Run blocking file work in a thread; a cancelled caller still waits for it to end.

    Otherwise the lock would be released while the thread still writes the files.
    """
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


def _edited(path: Path) -> str:
    return (
        f"{path} was changed by hand (its text no longer matches the hash in its first line, "
        "or it was not written by Clampdown); Clampdown does not overwrite it. Move your "
        "changes out of Clampdown's file into an include file of your own, then delete it: "
        "the next change renders it again"
    )


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`: a temporary file in the same directory, fsync, rename."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
