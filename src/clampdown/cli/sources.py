"""`clampdown sources`: the configured sources' health, one pull, and a read-only check."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Protocol, cast

import typer

from clampdown.cli import output
from clampdown.cli.output import errors_to_exit, fail, print_json
from clampdown.collectors.health import read_health
from clampdown.collectors.runner import check_sources, pull_once
from clampdown.config import Config
from clampdown.services import Clampdown

sources_app = typer.Typer(help="Pull findings from the detector.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class _Options(Protocol):
    """What the root command passes down (`clampdown.cli.main._Options`)."""

    def config(self) -> Config: ...

    def open(self) -> Clampdown: ...


def _opts(ctx: typer.Context) -> _Options:
    return cast(_Options, ctx.obj)


@sources_app.command("list")
def sources_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every configured source: last success, lag behind the detector, last error."""
    clampdown = _opts(ctx).open()
    try:
        with errors_to_exit():
            rows = read_health(clampdown)
    finally:
        clampdown.close()
    if as_json:
        print_json({"sources": rows})
        return
    output.table(
        "Sources",
        ("name", "type", "enabled", "status", "last success", "lag", "last error"),
        [
            (
                r["name"],
                r["type"],
                "yes" if r["enabled"] else "no",
                r["status"],
                r["last_success_at"],
                span(r["lag_seconds"]),
                _last_error(r),
            )
            for r in rows
        ],
    )


@sources_app.command("pull")
def sources_pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The source, as named in the config.")],
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds to run the planned steps before exiting (0: leave them)."
        ),
    ] = 10.0,
    as_json: JsonFlag = False,
) -> None:
    """Pull one source now (enabled or not): every page since its checkpoint, ingested.

    Remediations are planned as for any ingest, and their steps run for up to `--wait`
    seconds, as `clampdown ingest` does; `clampdown serve` runs whatever is left.
    """
    clampdown = _opts(ctx).open()
    try:
        with errors_to_exit():
            result = asyncio.run(pull_once(clampdown, name))
            if wait > 0 and result.new:
                asyncio.run(clampdown.settle(wait))
    finally:
        clampdown.close()
    if as_json:
        print_json(result.as_json())
        return
    output.out.print(
        f"source {output.cell(result.source)}: {result.pages} pages, {result.received} records "
        f"read, {result.kept} kept: {result.new} new findings, {result.repeats} already "
        f"known, {result.rejected} unreadable; checkpoint {output.cell(result.checkpoint)}"
    )


@sources_app.command("check")
def sources_check(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="One source (default: every enabled one).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sign in and read one page of each source; ingests nothing."""
    config = _opts(ctx).config()
    with errors_to_exit():
        results = asyncio.run(check_sources(config, [name] if name is not None else None))
    failed = [detail for ok, detail in results.values() if not ok]
    if not results and not as_json:
        output.out.print("no enabled source is configured")
        return
    if as_json:
        print_json(
            {
                "ok": not failed,
                "sources": [
                    {"name": source, "ok": ok, "detail": detail}
                    for source, (ok, detail) in results.items()
                ],
            }
        )
    else:
        output.table(
            "Sources",
            ("source", "result", "detail"),
            [
                (source, "ok" if ok else "FAILED", detail)
                for source, (ok, detail) in results.items()
            ],
        )
    if failed:
        fail("\n".join(failed), code=1)


def span(seconds: float | None) -> str | None:
    """A duration for people: 45s, 12m5s, 3h20m, 2d4h."""
    if seconds is None:
        return None
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _last_error(row: dict[str, Any]) -> str | None:
    if row["last_error"] is None:
        return None
    return f"{row['last_error_at']:%Y-%m-%d %H:%M:%S}: {row['last_error']}"
