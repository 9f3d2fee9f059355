"""The `clampdown` command: one entry point, thin over the services layer."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from clampdown import logs
from clampdown.cli import output
from clampdown.cli.demo import demo
from clampdown.cli.output import errors_to_exit, fail, listing, print_json
from clampdown.cli.playbooks import playbooks_app
from clampdown.cli.report import report
from clampdown.cli.sources import sources_app
from clampdown.cli.targets import targets_app
from clampdown.config import Config, load_config
from clampdown.durations import parse_duration
from clampdown.services import Clampdown, parse_json

app = typer.Typer(
    name="clampdown",
    help="Turn API threat detections into enforced, verified, reversible action.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
remediations_app = typer.Typer(
    help="Inspect, approve and reject remediations.", no_args_is_help=True
)
containments_app = typer.Typer(help="The built-in containment list.", no_args_is_help=True)
tasks_app = typer.Typer(help="Guided remediation tasks.", no_args_is_help=True)
actions_app = typer.Typer(help="The action catalog.", no_args_is_help=True)
findings_app = typer.Typer(help="Stored findings.", no_args_is_help=True)
app.add_typer(remediations_app, name="remediations")
app.add_typer(containments_app, name="containments")
app.add_typer(tasks_app, name="tasks")
app.add_typer(actions_app, name="actions")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(findings_app, name="findings")
app.add_typer(targets_app, name="targets")
app.add_typer(sources_app, name="sources")
app.command("report")(report)
app.command("demo")(demo)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="How many rows at most.")]


@dataclass
class _Options:
    config_path: Path | None
    database_url: str | None

    def config(self) -> Config:
        with errors_to_exit():
            return load_config(self.config_path)

    def open(self) -> Clampdown:
        config = self.config()
        with errors_to_exit():
            return Clampdown.open(config, database_url=self.database_url)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $CLAMPDOWN_CONFIG, or none)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL (default: $CLAMPDOWN_DATABASE_URL, the config, "
            "or sqlite:///clampdown.db).",
        ),
    ] = None,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log JSON lines (to stderr) instead of text.")
    ] = False,
) -> None:
    """Clampdown."""
    logs.configure(json=log_json)
    ctx.obj = _Options(config, database_url)


def _opts(ctx: typer.Context) -> _Options:
    opts: _Options = ctx.obj
    return opts


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# -- serve ---------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    token_file: Annotated[
        Path,
        typer.Option(help="Where the admin token is kept when the config defines no tokens."),
    ] = Path("clampdown-token"),
) -> None:
    """Run the REST API, the worker and the scheduler in one process."""
    from clampdown.cli.serving import run_server

    opts = _opts(ctx)
    with errors_to_exit():
        run_server(opts.config(), opts.database_url, host=host, port=port, token_file=token_file)


# -- ingest --------------------------------------------------------------------------------


@app.command()
def ingest(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A JSON file, or - for standard input.")],
    shape: Annotated[
        str | None, typer.Option(help="Skip detection: the delivery shape of the file.")
    ] = None,
    as_json: JsonFlag = False,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to let planned steps run before exiting.")
    ] = 30.0,
) -> None:
    """Store the findings of a file, plan their remediations and run them."""
    data = sys.stdin.buffer.read() if file == "-" else _read(file)
    where = "stdin" if file == "-" else file
    clampdown = _opts(ctx).open()
    try:
        with errors_to_exit():
            payload = parse_json(data, where=where)
            results = clampdown.ingest(payload, shape=shape)
            if wait > 0 and any(r.remediations or r.followed_up for r in results):
                asyncio.run(clampdown.settle(wait))
        report = [r.as_json() for r in results]
        for item in report:
            for rem in item["remediations"] + item["followed_up"]:
                rem["state"] = clampdown.get_remediation(rem["id"])["state"]
    finally:
        clampdown.close()
    if as_json:
        print_json({"findings": report})
        return
    for item in report:
        status = "new" if item["new"] else "duplicate"
        if item["changed"]:
            status = f"status {output.cell(item['changed'])}"
        output.out.print(
            f"{output.cell(item['type'])} \\[{status}] finding {item['finding_id']} "
            f"ips={output.cell(', '.join(item['ips']) or '-')}"
        )
        for rem in item["remediations"]:
            joined = " (joined open remediation)" if rem["joined"] else ""
            output.out.print(
                f"  -> {rem['playbook']}: remediation {rem['id']} {rem['state']}{joined}"
            )
        for rem in item["followed_up"]:
            output.out.print(
                f"  -> {rem['playbook']}: remediation {rem['id']} {rem['state']} "
                f"({rem['did']}: the detector's report)"
            )


def _read(file: str) -> bytes:
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror}")


# -- findings ------------------------------------------------------------------------------


@findings_app.command("list")
def findings_list(
    ctx: typer.Context,
    type_: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """Newest findings first."""
    with _session(ctx) as clampdown:
        rows = clampdown.list_findings(limit=limit, type_=type_)
    listing(
        as_json,
        "findings",
        rows,
        "Findings",
        [
            ("id", lambda r: r["id"]),
            ("received", lambda r: r["received_at"]),
            ("type", lambda r: r["type"]),
            ("severity", lambda r: r["severity"]),
            ("source", lambda r: f"{r['source']}/{r['source_id']}"),
        ],
    )


# -- remediations --------------------------------------------------------------------------


@remediations_app.command("list")
def remediations_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    playbook: Annotated[str | None, typer.Option(help="Only this playbook.")] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """Newest remediations first."""
    with _session(ctx) as clampdown:
        rows = clampdown.list_remediations(state=state, playbook=playbook, limit=limit)
    listing(
        as_json,
        "remediations",
        rows,
        "Remediations",
        [
            ("id", lambda r: r["id"]),
            ("created", lambda r: r["created_at"]),
            ("playbook", lambda r: r["playbook"]),
            ("mode", lambda r: r["mode"]),
            ("state", lambda r: r["state"]),
            ("findings", lambda r: r["finding_count"]),
        ],
    )


@remediations_app.command("show")
def remediations_show(
    ctx: typer.Context,
    remediation_id: Annotated[str, typer.Argument(help="The remediation id.")],
    as_json: JsonFlag = False,
) -> None:
    """A remediation's steps and history."""
    with _session(ctx) as clampdown:
        rem = clampdown.get_remediation(remediation_id)
    if as_json:
        print_json(rem)
        return
    output.out.print(
        f"remediation {rem['id']}  playbook {output.cell(rem['playbook'])}  "
        f"mode {rem['mode']}  state [bold]{rem['state']}[/]"
    )
    output.table(
        "Steps",
        ["#", "step", "action", "state", "attempts", "expires", "error"],
        [
            [
                s["position"] + 1,
                s["key"],
                s["action"],
                s["state"],
                s["attempts"],
                s["expires_at"],
                s["error"],
            ]
            for s in rem["steps"]
        ],
    )
    output.table(
        "History",
        ["when", "step", "from", "to", "why", "by"],
        [
            [h["at"], h["step_key"], h["from_state"], h["to_state"], h["reason"], h["actor"]]
            for h in rem["history"]
        ],
    )


@remediations_app.command("approve")
def remediations_approve(
    ctx: typer.Context,
    remediation_id: Annotated[str, typer.Argument(help="The remediation id.")],
    note: Annotated[str, typer.Option(help="Recorded with the approval.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Approve a remediation that waits for approval; it starts running."""
    with _session(ctx) as clampdown:
        rem = clampdown.approve(remediation_id, actor=_actor(), note=note)
    _done(as_json, rem, "approved")


@remediations_app.command("reject")
def remediations_reject(
    ctx: typer.Context,
    remediation_id: Annotated[str, typer.Argument(help="The remediation id.")],
    reason: Annotated[str, typer.Option(help="Recorded with the rejection.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Reject a remediation that waits for approval; nothing of it runs."""
    with _session(ctx) as clampdown:
        rem = clampdown.reject(remediation_id, actor=_actor(), reason=reason)
    _done(as_json, rem, "rejected")


def _done(as_json: bool, rem: dict[str, Any], verb: str) -> None:
    _answer(as_json, rem, f"remediation {rem['id']} {verb}; now {rem['state']}")


def _answer(as_json: bool, value: dict[str, Any], text: str) -> None:
    """`value` as JSON for scripts, or one line for people."""
    if as_json:
        print_json(value)
    else:
        output.out.print(text)


# -- containments, tasks, actions ----------------------------------------------------------


@containments_app.command("list")
def containments_list(
    ctx: typer.Context,
    include_removed: Annotated[bool, typer.Option("--all", help="Include lifted ones.")] = False,
    limit: Limit = 500,
    as_json: JsonFlag = False,
) -> None:
    """Active containments (with --all, lifted ones too)."""
    with _session(ctx) as clampdown:
        rows = clampdown.list_containments(include_removed=include_removed, limit=limit)
    listing(
        as_json,
        "containments",
        rows,
        "Containments",
        [
            ("id", lambda r: r["id"]),
            ("kind", lambda r: r["kind"]),
            ("subject", lambda r: f"{r['subject_type']} {r['subject']}"),
            ("scope", lambda r: r["scope"]),
            ("expires", lambda r: r["expires_at"] or "never"),
            ("lifted", lambda r: r["removed_at"]),
            ("remediation", lambda r: r["remediation_id"]),
        ],
    )


@containments_app.command("undo")
def containments_undo(
    ctx: typer.Context,
    containment_id: Annotated[str, typer.Argument(help="The containment id.")],
    reason: Annotated[str, typer.Option(help="Recorded with the undo.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Lift a containment before its expiry (the engine undoes it on its target)."""
    with _session(ctx) as clampdown:
        row = clampdown.undo_containment(containment_id, actor=_actor(), reason=reason)
    _answer(as_json, row, f"containment {row['id']}: undo queued")


@containments_app.command("extend")
def containments_extend(
    ctx: typer.Context,
    containment_id: Annotated[str, typer.Argument(help="The containment id.")],
    by: Annotated[str, typer.Option(help="Add this much to the expiry, e.g. 4h or 1d.")],
    note: Annotated[str, typer.Option(help="Recorded with the change.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Keep a temporary containment in force longer."""
    try:
        extra = parse_duration(by)
    except ValueError as exc:
        fail(f"--by: {exc}")
    with _session(ctx) as clampdown:
        row = clampdown.extend_containment(containment_id, actor=_actor(), by=extra, note=note)
    _answer(as_json, row, f"containment {row['id']} now expires at {row['expires_at']}")


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="open, done or all.")] = "open",
    limit: Limit = 100,
    as_json: JsonFlag = False,
) -> None:
    """Guided tasks."""
    with _session(ctx) as clampdown:
        rows = clampdown.list_tasks(status=None if status == "all" else status, limit=limit)
    listing(
        as_json,
        "tasks",
        rows,
        "Tasks",
        [
            ("id", lambda r: r["id"]),
            ("title", lambda r: r["title"]),
            ("owner", lambda r: r["owner"]),
            ("due", lambda r: r["due_at"]),
            ("status", lambda r: r["status"]),
        ],
    )


@tasks_app.command("complete")
def tasks_complete(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    note: Annotated[str, typer.Option(help="What was done; recorded.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Mark a guided task done; its remediation goes on."""
    with _session(ctx) as clampdown:
        task = clampdown.complete_task(task_id, actor=_actor(), note=note)
    _answer(as_json, task, f"task {task['id']} done")


@actions_app.command("list")
def actions_list(as_json: JsonFlag = False) -> None:
    """Every action with its parameters, target types and an example."""
    catalog = Clampdown.actions()
    if as_json:
        print_json({"actions": catalog})
        return
    for action in catalog:
        flags = [f for f in ("idempotent", "reversible", "verifiable") if action[f]]
        output.out.print(
            f"[bold]{action['name']}[/]  targets: {', '.join(action['target_types'])}"
            + (f"  ({', '.join(flags)})" if flags else "")
        )
        output.out.print(f"  {output.cell(action['summary'])}")
        for name, schema in action["parameters"].items():
            required = " (required)" if name in action["required"] else ""
            output.out.print(f"    {name}{required}: {output.cell(schema.get('description', ''))}")
        output.out.print(f"  example: {output.cell(action['example'])}")


@contextmanager
def _session(ctx: typer.Context) -> Iterator[Clampdown]:
    """Open the application; Clampdown errors become a message and an exit code."""
    clampdown = _opts(ctx).open()
    try:
        with errors_to_exit():
            yield clampdown
    finally:
        clampdown.close()
