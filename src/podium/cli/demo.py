"""``podium demo``: run the seed examples (``examples/<name>/workflow.yaml`` with the inputs in
``inputs.json`` beside it) on one engine and one gateway, and show what each did — its
outcome, cold and warm time, what it cost, what the hosted route would have cost, and which
models served."""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

if TYPE_CHECKING:
    from podium.gateway.pipeline import Gateway
    from podium.gateway.records import CallRecord
    from podium.workflows.engine import Engine

PATTERNS = ("sequential", "parallel", "orchestrator-worker", "saga")


@dataclass(frozen=True, slots=True)
class Example:
    """One runnable example: its workflow file and demo inputs."""

    name: str
    workflow: Path
    inputs: dict[str, Any]
    """As in ``inputs.json``: ``{tmp}`` in a text stands for a fresh directory per run (e.g. the
    file of a side-effecting example's own system, so a rerun starts clean)."""

    def inputs_for(self, tmp: Path) -> dict[str, Any]:
        """The inputs of one run, with ``{tmp}`` replaced by ``tmp``."""

        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace("{tmp}", str(tmp))
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            return value

        return {k: fill(v) for k, v in self.inputs.items()}

    @classmethod
    def find(cls, directory: Path) -> list[Example]:
        """The examples under ``directory``, in name order (a subdirectory holding a
        ``workflow.yaml``; ``inputs.json`` is optional: ``{"inputs": {...}}``)."""
        out: list[Example] = []
        for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
            workflow = sub / "workflow.yaml"
            if not workflow.is_file():
                continue
            inputs: dict[str, Any] = {}
            spec = sub / "inputs.json"
            if spec.is_file():
                try:
                    raw = json.loads(spec.read_text())
                except json.JSONDecodeError as exc:
                    raise typer.BadParameter(f"{spec}:{exc.lineno}: {exc.msg}") from None
                if not isinstance(raw, dict) or not isinstance(raw.get("inputs", {}), dict):
                    raise typer.BadParameter(f'{spec}: expected {{"inputs": {{...}}}}')
                inputs = raw.get("inputs", {})
            out.append(cls(sub.name, workflow, inputs))
        return out


@dataclass(slots=True)
class Outcome:
    """What one example's runs did."""

    example: Example
    status: str = "not run"
    run_id: str | None = None
    output: Any = None
    error: str | None = None
    waiting_on: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    """Wall time of each run: the first is cold (models load), the rest warm."""
    cost: Decimal = Decimal(0)
    hosted_cost: Decimal = Decimal(0)
    """What the runs' model calls would have cost on their preferred (hosted) models."""
    served: set[str] = field(default_factory=set)
    calls: int = 0


class _Costs:
    """A gateway record sink: each run's calls."""

    def __init__(self) -> None:
        self.by_run: dict[str, list[CallRecord]] = defaultdict(list)

    async def __call__(self, record: CallRecord) -> None:
        run_id = record.caller.attribution.run_id
        if run_id is not None:
            self.by_run[run_id].append(record)


async def run_examples(
    engine: Engine, gateway: Gateway, costs: _Costs, examples: list[Example], *, repeat: int = 2
) -> list[Outcome]:
    """Run each example ``repeat`` times in a row (the first run is cold, the others warm);
    the outcome of the last run, the time of each, and the cost over all of them per run."""
    from podium.workflows.plan import load_workflow

    outcomes: list[Outcome] = []
    for example in examples:
        outcome = Outcome(example)
        outcomes.append(outcome)
        try:
            plan = load_workflow(example.workflow, registry=engine.registry)
        except Exception as exc:
            outcome.status, outcome.error = "invalid", str(exc)
            continue
        for _ in range(max(1, repeat)):
            tmp = Path(tempfile.mkdtemp(prefix=f"podium-demo-{example.name}-"))
            start = time.perf_counter()
            result = await engine.run(plan, example.inputs_for(tmp))
            outcome.seconds.append(time.perf_counter() - start)
            outcome.status, outcome.run_id = result.status, result.run_id
            outcome.output, outcome.waiting_on = result.output, result.waiting_on
            outcome.error = (result.error or {}).get("message") if result.error else None
            if not result.ok:
                break
        await gateway.flush()
        records = costs.by_run.get(outcome.run_id or "", [])
        outcome.calls = len(records)
        for r in records:
            outcome.cost += r.cost
            outcome.hosted_cost += r.baseline_cost if r.baseline_cost is not None else r.cost
            if r.served:
                outcome.served.add(r.served)
    return outcomes


def _money(value: Decimal) -> str:
    return "$0" if value == 0 else f"${value:.6f}".rstrip("0")


def _brief(value: Any, width: int = 72) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(o: Outcome) -> Any:
    return o.output if o.status == "completed" else (o.error or o.waiting_on)


def table(outcomes: list[Outcome], *, outputs: bool = True) -> Table:
    """The Rich summary: one row per example (``outputs``: with an output column, for a wide
    terminal)."""
    t = Table(
        title="Podium demo: the seed workflows, offline on local models", title_justify="left"
    )
    names = max((len(o.example.name) for o in outcomes), default=7)
    t.add_column("example", style="bold", no_wrap=True, min_width=names)
    t.add_column("outcome")
    t.add_column("cold s", justify="right")
    t.add_column("warm s", justify="right")
    t.add_column("cost", justify="right")
    t.add_column("hosted route", justify="right")
    t.add_column("served by", overflow="fold")
    if outputs:
        t.add_column("output", overflow="fold")
    for o in outcomes:
        style = {"completed": "green", "waiting": "yellow"}.get(o.status, "red")
        cold = f"{o.seconds[0]:.3f}" if o.seconds else "-"
        warm = f"{min(o.seconds[1:]):.3f}" if len(o.seconds) > 1 else "-"
        cells = [
            o.example.name,
            f"[{style}]{o.status}[/]",
            cold,
            warm,
            _money(o.cost),
            _money(o.hosted_cost) if o.calls else "-",
            ", ".join(sorted(o.served)) or "-",
        ]
        t.add_row(*cells, *([_brief(_shown(o))] if outputs else []))
    return t


def demo(
    examples: Annotated[
        Path, typer.Option(help="Directory of examples (subdirectories with workflow.yaml).")
    ] = Path("examples"),
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these examples (repeatable).")
    ] = None,
    repeat: Annotated[
        int, typer.Option(min=1, help="Runs per example: the first is cold, the rest warm.")
    ] = 2,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Store URL (default: SQLite in .podium/; env PODIUM_DATABASE_URL)."
        ),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            help="Let warm runs be answered from the gateway's cache (off: every run computes, "
            "so warm times are the models' own)."
        ),
    ] = False,
) -> None:
    """Run the seed examples and show what each did, what it cost, and what the hosted route
    would have cost."""
    from podium.cli.app import _run_async, _settings, console, err

    if not examples.is_dir():
        err.print(f"[bold red]error[/]: no examples directory {examples}")
        raise typer.Exit(2)
    found = Example.find(examples)
    if only:
        unknown = sorted(set(only) - {e.name for e in found})
        if unknown:
            names = ", ".join(e.name for e in found) or "none"
            err.print(f"[bold red]error[/]: no example {', '.join(unknown)} (have: {names})")
            raise typer.Exit(2)
        found = [e for e in found if e.name in only]
    if not found:
        err.print(
            f"[bold red]error[/]: no examples (subdirectories with workflow.yaml) in {examples}"
        )
        raise typer.Exit(2)

    async def go() -> list[Outcome]:
        from podium.gateway.build import open_gateway
        from podium.store import open_store
        from podium.workflows.engine import Engine

        settings = _settings(db)
        costs = _Costs()
        store = await open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            gateway = await open_gateway(settings, record_sinks=(costs,))
            if not cache:
                gateway.cache = None
            from podium.governance.workflow_audit import audited

            engine = Engine(audited(store, gateway), settings=settings, gateway=gateway)
            try:
                with console.status(
                    "running the examples (the first run of each loads its models)…"
                ):
                    return await run_examples(engine, gateway, costs, found, repeat=repeat)
            finally:
                await engine.close()
                await gateway.close()
        finally:
            await store.close()

    outcomes = _run_async(go)
    wide = console.width >= 140
    console.print(table(outcomes, outputs=wide))
    if not wide:  # a narrow terminal: each output on its own line, under the table
        for o in outcomes:
            console.print(
                f"[bold]{o.example.name}[/]: {_brief(_shown(o), console.width - 2)}",
                highlight=False,
                overflow="ellipsis",
                no_wrap=True,
            )
    for o in outcomes:
        if o.status not in ("completed", "waiting"):
            err.print(f"[bold red]{o.example.name}[/] {o.status}: {o.error}", highlight=False)
        if o.status == "waiting":
            console.print(
                f"[yellow]{o.example.name}[/] waits for a human: "
                f"podium approve {o.run_id} {' '.join(o.waiting_on)}"
            )
    console.print(
        "Next: [bold]podium runs[/] lists these runs, [bold]podium show RUN_ID[/] shows one, "
        "[bold]podium costs --by model[/] prices them."
    )
    if any(o.status not in ("completed", "waiting") for o in outcomes):
        raise typer.Exit(1)
