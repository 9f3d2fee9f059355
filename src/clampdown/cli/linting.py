"""`clampdown playbooks lint`: every problem with file:line, exit 1 when any is an error."""

from __future__ import annotations

from pathlib import Path

import typer

from clampdown.actions.registry import CATALOG
from clampdown.cli import output
from clampdown.config import Config
from clampdown.playbooks import lint


def run_lint(config: Config, paths: list[Path], *, as_json: bool) -> None:
    """Lint `paths`, or else the configured playbooks and the default pack when it is on."""
    pack = False
    if not paths:
        paths = [config.playbooks] if config.playbooks else []
        pack = config.default_pack or not paths
    missing = [p for p in paths if not p.exists()]
    if missing:
        output.fail(f"{missing[0]}: no such file or directory")
    problems = lint(paths, actions=CATALOG, targets=config.targets, default_pack=pack)
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        output.print_json(
            {
                "problems": [
                    {
                        "path": str(p.path),
                        "line": p.line,
                        "level": p.level,
                        "message": p.message,
                        "hint": p.hint,
                    }
                    for p in problems
                ]
            }
        )
    else:
        for problem in problems:
            style = "red" if problem.level == "error" else "yellow"
            output.out.print(f"[{style}]{output.cell(str(problem))}[/]")
        output.out.print(
            f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s) "
            f"in {len(paths) + pack} source(s)"
        )
    if errors:
        raise typer.Exit(1)
