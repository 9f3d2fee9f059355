"""`clampdown targets`: the target types and a read-only check of the configured targets."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from clampdown.cli import output
from clampdown.cli.output import errors_to_exit, print_json
from clampdown.config import load_config
from clampdown.targets.catalog import check_targets, describe_types

targets_app = typer.Typer(help="Configured targets and target types.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@targets_app.command("types")
def targets_types(as_json: JsonFlag = False) -> None:
    """Every target type with the verbs it implements and its settings."""
    types = describe_types()
    if as_json:
        print_json({"types": types})
        return
    for kind in types:
        output.out.print(f"[bold]{kind['type']}[/]  {output.cell(kind['summary'])}")
        output.out.print(f"  verbs: {', '.join(kind['verbs']) or '-'}")
        settings = [
            f"{name}{'*' if info['required'] else ''}" for name, info in kind["settings"].items()
        ]
        output.out.print(f"  settings: {', '.join(settings)}  (* required)")


@targets_app.command("check")
def targets_check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Test connectivity and permissions of every configured target; changes nothing."""
    with errors_to_exit():
        config = load_config(ctx.obj.config_path)
        results = asyncio.run(check_targets(config.targets))
    failed = any(not check.ok for checks in results.values() for check in checks)
    if as_json:
        print_json(
            {
                "ok": not failed,
                "targets": {
                    name: [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
                    for name, checks in results.items()
                },
            }
        )
    else:
        rows = [
            (name, config.targets[name].type, c.name, "ok" if c.ok else "FAILED", c.detail)
            for name, checks in results.items()
            for c in checks
        ]
        output.table("Targets", ("target", "type", "check", "result", "detail"), rows)
    if failed:
        raise typer.Exit(1)
