"""``podium``: run, inspect, resume and approve durable workflows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.syntax import Syntax
from rich.text import Text

from podium.cli import render
from podium.config import Settings
from podium.errors import DefinitionError, PodiumError
from podium.gateway.build import open_gateway
from podium.store import open_store
from podium.types import RUN_STATUSES, RunStatus, Store
from podium.workflows.diagram import to_mermaid
from podium.workflows.engine import Engine, RunResult
from podium.workflows.history import model_calls, steps_of
from podium.workflows.plan import Plan, load_workflow, plan
from podium.workflows.resolve import ResolveError, load_object
from podium.workflows.spec import Workflow, json_schema

app = typer.Typer(
    name="podium",
    help="Podium: durable multi-model AI workflows behind one governed gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Store URL (default: SQLite in .podium/; env PODIUM_DATABASE_URL)."),
]


def _settings(db: str | None) -> Settings:
    settings = Settings.from_env(os.environ)
    if db:
        settings = settings.model_copy(update={"database_url": db})
    return settings


@asynccontextmanager
async def _engine(db: str | None) -> AsyncIterator[Engine]:
    settings = _settings(db)
    store: Store = await open_store(
        settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        gateway = await open_gateway(settings)
    except BaseException:
        await store.close()
        raise
    from podium.governance.workflow_audit import audited

    engine = Engine(audited(store, gateway), settings=settings, gateway=gateway)
    try:
        yield engine
    finally:
        await engine.close()
        await gateway.close()
        await store.close()


def _run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(fn())
    except DefinitionError as exc:
        render.print_definition_error(err, exc)
        raise typer.Exit(2) from None
    except PodiumError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: the run stays resumable with 'podium resume'")
        raise typer.Exit(130) from None


def _load(target: str) -> Plan:
    """A YAML file, or ``module:attr`` / ``file.py:attr`` naming a Workflow defined in Python."""
    if target.endswith((".yaml", ".yml")) or ":" not in target:
        return load_workflow(target)
    module_ref, _, attr = target.rpartition(":")
    if module_ref.endswith(".py"):
        target = f"{Path(module_ref).resolve()}:{attr}"
    try:
        obj = load_object(target)
    except ResolveError as exc:
        raise typer.BadParameter(str(exc)) from None
    if isinstance(obj, Plan):
        return obj
    if isinstance(obj, Workflow):
        return plan(obj, source_ref=target)
    raise typer.BadParameter(f"{target!r} is a {type(obj).__name__}, not a Workflow")


def _parse_inputs(pairs: list[str], file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"cannot read input file {file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"input file {file} must hold a mapping")
        values.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--input takes key=value, got {pair!r}")
        try:
            values[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            values[key] = raw
    return values


def _report(result: RunResult, as_json: bool) -> None:
    if as_json:
        console.print_json(
            data={
                "run_id": result.run_id,
                "status": result.status,
                "output": result.output,
                "error": result.error,
                "waiting_on": result.waiting_on,
            }
        )
    elif result.status == "completed":
        console.print(f"[green]✔ completed[/] run [bold]{result.run_id}[/]")
        console.print(
            Syntax(
                json.dumps(result.output, indent=2, ensure_ascii=False, default=str),
                "json",
                theme="ansi_dark",
                background_color="default",
            )
        )
    elif result.status == "waiting":
        console.print(
            f"[yellow]⏸ waiting[/] run [bold]{result.run_id}[/] "
            f"for review of: {', '.join(result.waiting_on)}"
        )
        for step in result.waiting_on:
            console.print(
                f"  podium approve {result.run_id} {step} --comment '…'   (or: podium reject …)"
            )
    else:
        error = result.error or {}
        console.print(
            f"[red]✘ {result.status}[/] run [bold]{result.run_id}[/]: {error.get('message', '')}",
            highlight=False,
        )
        if error.get("step"):
            console.print(f"  failed step: {error['step']}  —  see: podium show {result.run_id}")
    if not as_json and result.status != "waiting":
        console.print(f"[dim]details: podium show {result.run_id}[/]")


def _exit_code(result: RunResult) -> int:
    return {"completed": 0, "waiting": 0}.get(result.status, 1)


async def _follow(engine: Engine, run_id: str, work: Awaitable[RunResult], live: bool) -> RunResult:
    """Await ``work`` while showing the run's steps as the journal grows."""
    task = asyncio.ensure_future(work)
    if not live:
        return await task
    with Live(console=console, refresh_per_second=8, transient=True) as view:
        while not task.done():
            events = await engine.store.events(run_id)
            view.update(
                Group(Text(f"run {run_id}", style="bold"), render.steps_table(steps_of(events)))
            )
            await asyncio.wait({task}, timeout=0.15)
    return await task


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="Workflow YAML file, or package.module:workflow.")],
    input: Annotated[
        list[str], typer.Option("--input", "-i", help="key=value (value parsed as YAML).")
    ] = [],  # noqa: B006
    input_file: Annotated[
        Path | None, typer.Option("--input-file", help="YAML/JSON mapping of inputs.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Run a workflow and show its steps live."""

    async def go() -> RunResult:
        p = _load(target)
        inputs = p.validate_inputs(_parse_inputs(input, input_file))
        async with _engine(db) as engine:
            run_id = engine._new_id()
            live = console.is_terminal and not as_json
            result = await _follow(engine, run_id, engine.run(p, inputs, run_id=run_id), live)
            if not as_json and result.status != "completed":
                console.print(render.steps_table(steps_of(await engine.store.events(run_id))))
            return result

    result = _run_async(go)
    _report(result, as_json)
    raise typer.Exit(_exit_code(result))


@app.command()
def runs(
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    db: DbOption = None,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in RUN_STATUSES:
        raise typer.BadParameter(f"status must be one of: {', '.join(RUN_STATUSES)}")
    wanted: RunStatus | None = status  # narrowed by the check above

    async def go() -> None:
        async with _engine(db) as engine:
            found = await engine.store.list_runs(status=wanted, workflow=workflow, limit=limit)
            if not found:
                console.print("no runs yet — try: podium run examples/hello.yaml --input name=you")
                return
            console.print(render.runs_table(found))

    _run_async(go)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Show a run: its steps, timings, outputs and errors."""

    async def go() -> None:
        async with _engine(db) as engine:
            record = await engine.store.get_run(run_id)
            events = await engine.store.events(run_id)
            steps = steps_of(events)
            calls = model_calls(steps)
            cost = sum((c.cost for c in calls), Decimal(0))
            preferred = sum(
                (c.would_cost if c.would_cost is not None else c.cost for c in calls), Decimal(0)
            )
            if as_json:
                console.print_json(
                    data={
                        "run_id": record.run_id,
                        "workflow": record.workflow,
                        "status": record.status,
                        "inputs": json.loads(record.inputs),
                        "output": json.loads(record.result) if record.result else None,
                        "error": json.loads(record.error) if record.error else None,
                        "steps": [
                            {
                                "step": s.path,
                                "status": s.status,
                                "attempts": s.attempts,
                                "duration_s": s.duration,
                                "output": s.output,
                                "error": s.error,
                                **({"meta": s.meta} if s.meta else {}),
                            }
                            for s in steps
                        ],
                        "model_calls": [
                            {
                                "step": c.step,
                                "served": c.served,
                                "preferred": c.preferred,
                                "reason": c.reason,
                                "cost": str(c.cost),
                                "would_cost": str(c.would_cost)
                                if c.would_cost is not None
                                else None,
                            }
                            for c in calls
                        ],
                        "cost": str(cost),
                        "preferred_route_cost": str(preferred),
                    }
                )
                return
            took = record.updated_at - record.created_at
            console.print(
                f"[bold]{record.workflow}[/]  run {record.run_id}  ",
                render.status(record.status),
                f"  started {render.when(record.created_at)}  took {took:.3f}s",
                f"  events {len(events)}",
            )
            console.print(
                f"inputs: {render.short(json.loads(record.inputs), 120)}", highlight=False
            )
            console.print(render.steps_table(steps))
            if calls:
                console.print(render.model_calls_table(calls))
                console.print(
                    f"model calls cost ${cost}; on their preferred routes they would have cost"
                    f" ${preferred}",
                    highlight=False,
                )
            if record.result:
                console.print(
                    f"output: {render.short(json.loads(record.result), 200)}", highlight=False
                )
            if record.error:
                error = json.loads(record.error)
                console.print(f"[red]error[/]: {error.get('message')}", highlight=False)

    _run_async(go)


@app.command()
def resume(
    run_id: Annotated[str | None, typer.Argument(help="The run to continue.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Resume every run a crash left running.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Continue even if the definition changed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Continue a run from its journal: finished steps are replayed, never re-executed."""
    if not run_id and not all_:
        raise typer.BadParameter("give a RUN_ID or --all")

    async def go() -> list[RunResult]:
        async with _engine(db) as engine:
            if all_:
                return await engine.recover()
            assert run_id is not None
            return [await engine.resume(run_id, force=force)]

    results = _run_async(go)
    if all_ and not results:
        console.print("nothing to resume")
    for result in results:
        _report(result, as_json)
    raise typer.Exit(max((_exit_code(r) for r in results), default=0))


def _decide(
    run_id: str, step: str, approved: bool, comment: str, by: str, db: str | None, as_json: bool
) -> None:
    async def go() -> RunResult:
        async with _engine(db) as engine:
            path = await engine.decide(run_id, step, approved=approved, comment=comment, by=by)
            verb = "approved" if approved else "rejected"
            if not as_json:
                console.print(f"{verb} [bold]{path}[/] of run {run_id}; resuming…")
            return await engine.resume(run_id)

    result = _run_async(go)
    _report(result, as_json)
    raise typer.Exit(_exit_code(result))


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The waiting run.")],
    step: Annotated[str, typer.Argument(help="The review step (id or full path).")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    by: Annotated[str, typer.Option(help="Who decides.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Approve a human-review step, then continue the run."""
    _decide(run_id, step, True, comment, by or os.environ.get("USER", ""), db, as_json)


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(help="The waiting run.")],
    step: Annotated[str, typer.Argument(help="The review step (id or full path).")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    by: Annotated[str, typer.Option(help="Who decides.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Reject a human-review step, then continue the run (it fails unless on_reject: continue)."""
    _decide(run_id, step, False, comment, by or os.environ.get("USER", ""), db, as_json)


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="The run.")], db: DbOption = None) -> None:
    """Cancel a run that is waiting or was left running."""

    async def go() -> RunResult:
        async with _engine(db) as engine:
            return await engine.cancel(run_id)

    result = _run_async(go)
    console.print(f"run {result.run_id}: ", render.status(result.status))


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Workflow YAML files.")],
) -> None:
    """Check workflow files; every problem is reported with file:line:column."""
    failed = False
    for file in files:
        try:
            p = load_workflow(file)
        except DefinitionError as exc:
            render.print_definition_error(err, exc)
            failed = True
        else:
            console.print(f"[green]✔[/] {file}: workflow [bold]{p.name}[/] is valid")
    raise typer.Exit(2 if failed else 0)


@app.command()
def diagram(
    target: Annotated[str, typer.Argument(help="Workflow YAML file, or package.module:workflow.")],
) -> None:
    """Print a Mermaid flowchart of a workflow."""
    try:
        p = _load(target)
    except DefinitionError as exc:
        render.print_definition_error(err, exc)
        raise typer.Exit(2) from None
    sys.stdout.write(to_mermaid(p.workflow))


@app.command()
def schema() -> None:
    """Print the JSON Schema of workflow files (for editors and CI)."""
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


from podium.cli.serve import serve  # noqa: E402

app.command()(serve)

from podium.cli.models import models_app  # noqa: E402

app.add_typer(models_app, name="models")

from podium.cli.costs import costs  # noqa: E402

app.command()(costs)

from podium.cli.route import route_app  # noqa: E402

app.add_typer(route_app, name="route")

from podium.cli.demo import demo  # noqa: E402

app.command()(demo)

from podium.cli.audit import audit_app  # noqa: E402

app.add_typer(audit_app, name="audit")

from podium.cli.policy import policy_app  # noqa: E402

app.add_typer(policy_app, name="policy")

from podium.cli.keys import keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")

from podium.cli.retention import retention_app  # noqa: E402

app.add_typer(retention_app, name="retention")

from podium.cli.lineage import lineage  # noqa: E402

app.command("lineage")(lineage)


def main() -> None:
    """Entry point of the ``podium`` script."""
    app()
