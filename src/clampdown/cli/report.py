"""`clampdown report`: how well remediation worked, with tuning suggestions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Protocol, cast

import typer

from clampdown.cli.output import errors_to_exit, fail
from clampdown.durations import parse_instant
from clampdown.report.render import Format, render
from clampdown.report.suggestions import suggest
from clampdown.services import Clampdown


class _Options(Protocol):
    """What the root command passes down (`clampdown.cli.main._Options`)."""

    def open(self) -> Clampdown: ...


def report(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            help="Remediations opened since: a duration before --until (7d, 24h) or an ISO time."
        ),
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(help="... and before: an ISO time or a duration ago (default: now)."),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", case_sensitive=False, help="Output format.")
    ] = Format.MD,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write here (default: stdout)."),
    ] = None,
) -> None:
    """Report how well remediation worked over a period, with tuning suggestions."""
    now = datetime.now(UTC)
    end = instant(until, now, "--until") if until is not None else now
    # A duration counts back from the end, as GET /v1/effectiveness does: the week to --until.
    start = instant(since, end, "--since")
    if start >= end:
        fail(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    clampdown = cast(_Options, ctx.obj).open()
    try:
        with errors_to_exit():
            eff = clampdown.effectiveness(since=start, until=end)
    finally:
        clampdown.close()
    text = render(eff, suggest(eff), fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{output}: cannot write: {exc.strerror}", code=1)


def instant(text: str, now: datetime, option: str) -> datetime:
    """A time given as a duration before `now` (7d, 12h) or as an ISO 8601 time (UTC when naive).

    Exits with code 2 and a message naming `option` when it is neither.
    """
    try:
        return parse_instant(text, now)
    except ValueError as exc:
        fail(f"{option}: {exc}")
