"""Printing for the CLI: Rich tables for people, JSON for scripts, errors on stderr."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def fail(message: str, *, code: int = 2) -> NoReturn:
    """Print an error (escaped: it may quote attacker data) and exit non-zero."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    """Indented JSON on stdout."""
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def cell(value: Any) -> str:
    """One table cell; text from findings is escaped so it is never read as markup."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return escape(str(value))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on stdout."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(cell(v) for v in row))
    out.print(grid)


def listing(
    as_json: bool,
    key: str,
    rows: list[dict[str, Any]],
    title: str,
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
) -> None:
    """Print `rows` as JSON ({key: rows}) or as a table of the given columns."""
    if as_json:
        print_json({key: rows})
        return
    table(title, [c for c, _ in columns], [[get(r) for _, get in columns] for r in rows])


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turn Clampdown errors into a message and an exit code (2 for bad input, 1 otherwise)."""
    from sqlalchemy.exc import DBAPIError

    from clampdown.errors import ClampdownError, InputError

    try:
        yield
    except InputError as exc:
        fail(str(exc), code=2)
    except ClampdownError as exc:
        fail(str(exc), code=1)
    except DBAPIError as exc:
        # The driver's own words (e.g. "database is locked"), never the statement or its values.
        fail(
            f"database: {str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__}", code=1
        )
