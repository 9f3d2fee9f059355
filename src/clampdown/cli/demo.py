"""`clampdown demo`: a sandbox directory with sample alerts already run through the default pack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clampdown.cli import output
from clampdown.cli.output import cell, errors_to_exit, print_json
from clampdown.config import DATABASE_URL_ENV

if TYPE_CHECKING:
    from clampdown.demo import Result

DEFAULT_PORT = 8080


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the demo (created if missing).")
    ] = Path("clampdown-demo"),
    force: Annotated[
        bool, typer.Option("--force", help="Replace the demo's files in a directory not empty.")
    ] = False,
    history: Annotated[
        bool,
        typer.Option("--history/--no-history", help="Add a week of made-up history for charts."),
    ] = True,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The port in the printed serve command.")
    ] = DEFAULT_PORT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create a local demo: config, SQLite database, tokens, sample alerts already handled.

    Nothing reaches the network (built-in target only); --config and --database-url do not apply.
    """
    from clampdown.demo import create

    with errors_to_exit():
        result = create(directory, force=force, history=history)
    if as_json:
        print_json({**result.as_json(), "serve": _serve(result, port), "console": _url(port)})
    else:
        _report(result, port)


def _serve(result: Result, port: int) -> str:
    config = result.workspace.config
    command = f"clampdown --config {config}"
    if os.environ.get(DATABASE_URL_ENV):
        # The variable would win over the config's database_url.
        command += f" --database-url {result.workspace.database_url}"
    command += " serve"
    return command if port == DEFAULT_PORT else f"{command} --port {port}"


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}/console/"


def _report(result: Result, port: int) -> None:
    from clampdown.demo.seed import HISTORY_DAYS

    ws = result.workspace
    say = output.out.print
    say(f"[bold]Demo ready in {cell(ws.directory)}[/]")
    say(f"  config    {cell(ws.config)} (built-in target only: nothing leaves this machine)")
    say(f"  database  {cell(ws.database)}")
    say(f"  tokens    {cell(ws.admin_token)} (admin), {cell(ws.read_token)} (read-only)")
    say(
        f"Sample alerts: {result.samples} files, {result.findings} findings, "
        f"{result.unmatched} matched no playbook"
    )
    say(f"  their remediations: {_counts(result.remediations)}")
    if result.history:
        say(
            f"Demo data: {result.history.get('findings', 0)} made-up findings over the last "
            f"{HISTORY_DAYS} days (source demo, people demo:*, reasons ending "
            '"(demo data)")'
        )
        say(f"  their remediations: {_counts(result.history_outcomes)}")
    say(
        f"Now: containments active {_counts(result.active) or 'none'}; "
        f"{result.awaiting_approval} awaiting approval; {result.open_tasks} guided tasks open"
    )
    say("Open the console:")
    say(f"  {cell(_serve(result, port))}")
    say(f"  then {_url(port)} with the token in {cell(ws.admin_token)}")
    say(f"  ({cell(ws.read_token)} for a read-only view)")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())
