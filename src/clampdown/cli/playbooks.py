"""`clampdown playbooks lint | test | simulate`: check playbooks before they act in production.

Without a path, each command works on the configured playbooks: the `playbooks` directory of
the config plus the default pack when `default_pack` is on, or the default pack alone when no
directory is configured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clampdown.cli import output
from clampdown.cli.output import errors_to_exit
from clampdown.config import Config
from clampdown.durations import parse_instant
from clampdown.engine import safety
from clampdown.errors import InputError
from clampdown.ownership import Enricher
from clampdown.playbooks import Playbook, load_default_pack, load_playbooks
from clampdown.playbooks.loader import PLAYBOOK_SUFFIXES
from clampdown.playbooks.simulation import (
    BudgetCheck,
    Contained,
    PlaybookReport,
    ProtectedCheck,
    Replay,
    SimulationReport,
    simulate,
)
from clampdown.playbooks.testcases import (
    Case,
    CaseResult,
    Source,
    case_sources,
    load_cases,
    pack_case_sources,
    run_cases,
    untested,
)
from clampdown.services import load_playbook_set, parse_json
from clampdown.sources import normalize
from clampdown.store import findings
from clampdown.store.db import Database

playbooks_app = typer.Typer(help="Check, test and simulate playbooks.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
PROGRESS_FROM = 500
"""Replays of at least this many findings show a progress bar (on a terminal, never in JSON)."""
_PAGE = 500


class _Options(Protocol):
    """What the root command passes down (`clampdown.cli.main._Options`)."""

    database_url: str | None

    def config(self) -> Config: ...


def _opts(ctx: typer.Context) -> _Options:
    return cast(_Options, ctx.obj)


def configured_playbooks(config: Config) -> list[Playbook]:
    """The configured playbook set; the default pack alone when no directory is configured."""
    if config.playbooks is None:
        return load_default_pack()
    return load_playbook_set(config)


# -- lint ------------------------------------------------------------------------------------


@playbooks_app.command("lint")
def playbooks_lint(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Playbook files or directories.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Report every problem in playbooks with file:line; exit 1 on errors."""
    from clampdown.cli.linting import run_lint

    run_lint(_opts(ctx).config(), paths or [], as_json=as_json)


# -- test ------------------------------------------------------------------------------------


@playbooks_app.command("test")
def playbooks_test(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="A directory of playbooks and their *.test.yaml files, or one test file "
            "(its folder holds the playbooks). Default: the configured playbooks."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run playbook unit tests: a finding in, the expected plan out; exit 1 on a failure."""
    config = _opts(ctx).config()
    with errors_to_exit():
        suites = _test_suites(config, directory)
    results: list[CaseResult] = []
    cases: list[Case] = []
    playbooks: dict[str, Playbook] = {}
    for suite_playbooks, sources in suites:
        suite_cases: list[Case] = []
        for source in sources:
            loaded, broken = load_cases(source)
            suite_cases.extend(loaded)
            results.extend(broken)
        results.extend(run_cases(suite_cases, suite_playbooks))
        cases.extend(suite_cases)
        playbooks.update((p.name, p) for p in suite_playbooks)
    results.sort(key=lambda r: (r.path, r.line))
    missing = untested(list(playbooks.values()), cases)
    failed = [r for r in results if not r.passed]
    if as_json:
        output.print_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "cases": [r.as_json() for r in results],
                "untested": missing,
            }
        )
    else:
        _print_results(results, missing)
    if failed or not results:
        if not results and not as_json:
            output.err.print("no test cases found (files named *.test.yaml)")
        raise typer.Exit(1)


def _test_suites(
    config: Config, directory: Path | None
) -> list[tuple[list[Playbook], list[Source]]]:
    """(playbooks, test files) to run together: each test runs against its own set."""
    if directory is not None:
        if not directory.exists():
            raise InputError(f"{directory}: no such file or directory")
        folder = directory if directory.is_dir() else directory.parent
        return [(load_playbooks([folder]), list(case_sources([directory])))]
    suites = []
    if config.playbooks is not None:
        suites.append((load_playbook_set(config), list(case_sources([config.playbooks]))))
    if config.default_pack or config.playbooks is None:
        # The pack's own tests describe the pack alone, whatever else is configured.
        suites.append((load_default_pack(), list(pack_case_sources())))
    return suites


def _print_results(results: Sequence[CaseResult], missing: Sequence[str]) -> None:
    for result in results:
        where = output.cell(f"{result.path}:{result.line}")
        if result.passed:
            output.out.print(f"[green]PASS[/] {where} {output.cell(result.name)}")
            continue
        output.out.print(f"[bold red]FAIL[/] {where} {output.cell(result.name)}")
        for difference in result.differences:
            head = f"{difference.path}:{difference.line}: {difference.where}: {difference.message}"
            output.out.print(f"    {output.cell(head)}")
            for line in difference.diff():
                style = {"-": "red", "+": "green"}.get(line[:1], "")
                text = output.cell(line)
                output.out.print(f"        [{style}]{text}[/]" if style else f"        {text}")
    if missing:
        output.out.print(f"[yellow]untested playbooks:[/] {output.cell(', '.join(missing))}")
    failed = sum(1 for r in results if not r.passed)
    output.out.print(f"{len(results) - failed} passed, {failed} failed")


# -- simulate --------------------------------------------------------------------------------


@playbooks_app.command("simulate")
def playbooks_simulate(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Playbook directories or .yaml files (default: the configured playbooks), and "
            "finding files (JSON, any delivery shape) to replay instead of stored findings.",
        ),
    ] = None,
    since: Annotated[
        str, typer.Option(help="Stored findings received since: a duration ago (7d) or a time.")
    ] = "7d",
    until: Annotated[
        str | None, typer.Option(help="... and before: a duration ago or a time (default: now).")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="The delivery shape of the finding files (else detected).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay findings against playbooks without acting, and report what would have happened."""
    opts = _opts(ctx)
    config = opts.config()
    playbook_paths = [p for p in paths or [] if p.is_dir() or p.suffix in PLAYBOOK_SUFFIXES]
    files = [p for p in paths or [] if p not in playbook_paths]
    now = datetime.now(UTC)
    with errors_to_exit():
        playbooks = (
            load_playbooks(playbook_paths) if playbook_paths else configured_playbooks(config)
        )
        budget, protected = _rails(config)
        if files:
            replays = _file_replays(files, shape, now, Enricher(config.ownership))
            scope: dict[str, Any] = {"files": [str(f) for f in files]}
            report = _run(replays, len(replays), playbooks, budget, protected, as_json)
        else:
            start, end = _instant(since, now, "--since"), _instant(until, now, "--until")
            scope = {"since": start.isoformat(), "until": end.isoformat()}
            db = Database(config.effective_database_url(opts.database_url))
            try:
                db.migrate()
                with db.read() as conn:
                    total = findings.count_between(conn, start, end)
                stored = _stored_replays(db, start, end)
                report = _run(stored, total, playbooks, budget, protected, as_json)
            finally:
                db.dispose()
    if as_json:
        output.print_json({**scope, **report.as_json()})
    else:
        _print_report(report, scope, len(playbooks))


def _rails(config: Config) -> tuple[BudgetCheck, ProtectedCheck]:
    """The engine's safety rails for this config, as the simulation's hooks."""
    counter = safety.BudgetCounter(config.safety.budget)
    budget = config.safety.budget
    limits = ", ".join(
        f"per_{what} {limit}"
        for what, limit in (("target", budget.per_target), ("playbook", budget.per_playbook))
        if limit is not None
    )
    protected = safety.Protected(config.safety.protected)

    def over_budget(contained: Contained) -> str | None:
        if counter.admit(contained.target, contained.playbook, contained.at):
            return None
        return f"blast-radius budget reached (safety.budget: {limits} in {budget.window})"

    def protected_hit(action: str, params: Mapping[str, Any]) -> str | None:
        return protected.hit(dict(params)) if action in safety.CONTAINING else None

    return over_budget, protected_hit


def _instant(text: str | None, now: datetime, option: str) -> datetime:
    """A time given as a duration ago (7d, 12h) or as an ISO 8601 time (UTC when naive)."""
    if text is None:
        return now
    try:
        return parse_instant(text, now)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _file_replays(
    files: Sequence[Path], shape: str | None, now: datetime, enricher: Enricher
) -> list[Replay]:
    """The findings of the files, oldest first, with the context the ownership rules give."""
    replays = []
    for file in files:
        where = "stdin" if str(file) == "-" else str(file)
        try:
            data = sys.stdin.buffer.read() if where == "stdin" else file.read_bytes()
        except OSError as exc:
            raise InputError(f"{where}: {exc.strerror}") from exc
        try:
            normalized = enricher.enrich(normalize(parse_json(data, where=where), shape))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        for index, finding in enumerate(normalized):
            at = finding.reported_at or finding.last_seen or finding.first_seen or now
            origin = where if len(normalized) == 1 else f"{where}[{index}]"
            replays.append(Replay(finding, at if at.tzinfo else at.replace(tzinfo=UTC), origin))
    return sorted(replays, key=lambda r: r.at)


def _stored_replays(db: Database, start: datetime, end: datetime) -> Iterator[Replay]:
    """Stored findings received in [start, end), in order of arrival, a page at a time."""
    after = 0
    while True:
        with db.read() as conn:
            page = findings.received_between(conn, start, end, after_id=after, limit=_PAGE)
        for finding_id, finding, received in page:
            yield Replay(finding, received, f"finding {finding_id}")
        if len(page) < _PAGE:
            return
        after = page[-1][0]


def _run(
    replays: Iterator[Replay] | list[Replay],
    total: int,
    playbooks: list[Playbook],
    budget: BudgetCheck,
    protected: ProtectedCheck,
    as_json: bool,
) -> SimulationReport:
    if as_json or total < PROGRESS_FROM or not output.err.is_terminal:
        return simulate(replays, playbooks, budget=budget, protected=protected)
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=output.err, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        advance: Callable[[], None] = lambda: bar.advance(task)  # noqa: E731
        return simulate(replays, playbooks, budget=budget, protected=protected, progress=advance)


def _print_report(report: SimulationReport, scope: dict[str, Any], playbooks: int) -> None:
    if "files" in scope:
        origin = f"{len(scope['files'])} file(s)"
    else:
        origin = f"stored findings received {scope['since']} .. {scope['until']}"
    entries = sorted(report.playbooks.values(), key=lambda e: e.name)
    columns = [
        "playbook",
        "mode",
        "findings",
        "remediations",
        "approval",
        "containments",
        "subjects",
        "budget",
        "problems",
    ]
    rows = [_row(entry) for entry in entries]
    if any(entry.rungs for entry in entries):
        columns.append("ladder rungs")
        for row, entry in zip(rows, entries, strict=True):
            row.append(", ".join(f"{rung} {n}" for rung, n in entry.rungs.items()) or None)
    grid = Table(
        title=f"Simulated {report.findings} finding(s) from {origin}; nothing was done",
        title_justify="left",
    )
    for column in columns:
        # Playbook names are what people search for: never cut them.
        grid.add_column(column, no_wrap=column == "playbook")
    for row in rows:
        grid.add_row(*(output.cell(value) for value in row))
    output.out.print(grid)
    silent = playbooks - len(entries)
    output.out.print(
        f"{report.unmatched} finding(s) matched no playbook; "
        f"{silent} of {playbooks} playbook(s) matched no finding"
    )
    for trip in report.trips[:10]:
        output.out.print(
            f"[yellow]budget:[/] {output.cell(trip.at.isoformat())} {output.cell(trip.playbook)}"
            f" ({output.cell(trip.origin)}): {output.cell(trip.reason)}"
        )
    if len(report.trips) > 10:
        output.out.print(f"[yellow]budget:[/] ... {len(report.trips) - 10} more (see --json)")
    for name, count in report.when_errors.items():
        output.out.print(
            f"[red]when failed[/] {output.cell(name)}: {count} time(s), counted as no match"
        )


def _row(entry: PlaybookReport) -> list[Any]:
    contained = ", ".join(
        [f"{kind} {n}" for kind, n in sorted(entry.containments.items())]
        + [f"{kind} {n} pending" for kind, n in sorted(entry.pending.items())]
    )
    kinds: dict[str, set[str]] = {}
    for kind, subject_type, subject, _ in entry.subjects:
        kinds.setdefault(subject_type, set()).add(f"{kind}/{subject}")
    subjects = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    budget = f"{len(entry.trips)} trip(s)" if entry.trips else ""
    problems = [
        f"{sum(entry.problems.values())} failing" if entry.problems else "",
        f"{sum(entry.refused.values())} protected" if entry.refused else "",
    ]
    return [
        entry.name,
        entry.mode.value,
        entry.matched,
        entry.remediations,
        entry.needs_approval,
        contained or None,
        subjects or None,
        budget or None,
        ", ".join(p for p in problems if p) or None,
    ]
