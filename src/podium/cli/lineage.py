"""``podium lineage ID``: what produced an output — a gateway request id (``req_…``) or a workflow
step (``RUN_ID/step/path``): inputs, template version, model, policy version, upstream steps.

Reads the run store and the audit trail of one database (``--db``, default the store); needs no
key: lineage shows hashes and clear headers, never content.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from podium.cli.audit import DbOption, _fail, _url
from podium.cli.render import when
from podium.errors import PodiumError
from podium.governance.lineage import Lineage, LineageNotFound

console = Console()


def _short(digest: str | None) -> str:
    return "—" if digest is None else f"sha256:{digest[:12]}"


def _tree(found: Lineage) -> Tree:
    head = f"[bold]{escape(found.id)}[/] ({found.kind})"
    tree = Tree(head)
    if found.run_id is not None:
        where = f"run {escape(found.run_id)}"
        if found.workflow:
            where += f" of workflow [bold]{escape(found.workflow)}[/]"
        if found.team:
            where += f", team {escape(found.team)}"
        tree.add(where)
    if found.step is not None:
        tree.add(
            f"step {escape(found.step)}"
            + (f" ({found.step_kind})" if found.step_kind else "")
            + (f": {found.status}" if found.status else "")
        )
    if found.output_sha256 is not None:
        audited = ""
        if found.output_audited is not None:
            audited = (
                " — matches the audit trail"
                if found.output_audited
                else " — [bold red]differs from the audit trail[/]"
            )
        tree.add(f"output {_short(found.output_sha256)}{audited}")
    if found.source_sha256 is not None:
        tree.add(f"definition {_short(found.source_sha256)}")
    if found.template is not None:
        t = tree.add(
            f"template {_short(found.template.sha256)} (model {escape(found.template.model)})"
        )
        for name, value in found.template.parts.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            t.add(f"{name}: {escape(text if len(text) <= 100 else text[:99] + '…')}")
    if found.inputs_sha256 is not None:
        reads = ", ".join(found.reads_inputs) or "none"
        tree.add(f"run inputs {_short(found.inputs_sha256)} (the step reads: {escape(reads)})")
    if found.upstream:
        up = tree.add("upstream steps")
        for u in found.upstream:
            if u.path is None:
                up.add(f"{escape(u.id)}: not run")
            else:
                up.add(f"{escape(u.path)}: output {_short(u.output_sha256)}")
    if found.model_calls:
        calls = tree.add("model calls")
        for c in found.model_calls:
            policy = c.policy or {}
            label = (
                f"{escape(c.request_id or '?')} at {when(c.ts)}: "
                f"{escape(c.model_requested or '?')} → {escape(c.model_served or '?')}"
            )
            node = calls.add(label)
            if policy:
                node.add(
                    "policy "
                    + escape(
                        f"{policy.get('id')} {policy.get('version')} rule {policy.get('rule')}"
                    )
                )
            if c.classification:
                node.add(f"class {escape(c.classification)}")
            node.add(f"audit record {c.seq}" + (" (payload shredded)" if c.shredded else ""))
    if found.purged:
        tree.add("[yellow]content purged by retention (hashes are the originals')[/]")
    for note in found.notes:
        if not note.startswith("the run's content was purged"):
            tree.add(f"[dim]{escape(note)}[/]")
    return tree


def lineage(
    id: Annotated[str, typer.Argument(help="A request id (req_…) or RUN_ID/step/path.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What produced an output: its inputs, template version, model, policy and upstream steps."""
    url = _url(db)

    async def work() -> Lineage:
        from podium.governance.audit import AuditLog
        from podium.governance.lineage import lineage as trace
        from podium.store import open_store
        from podium.types import SystemClock

        audit = await AuditLog.open(url, clock=SystemClock())
        store = await open_store(url)
        try:
            return await trace(id, audit=audit, store=store)
        finally:
            await store.close()
            await audit.close()

    try:
        found = asyncio.run(work())
    except LineageNotFound as exc:
        raise _fail(str(exc), 1) from None
    except PodiumError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        data: dict[str, Any] = found.to_dict()
        sys.stdout.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
        return
    console.print(_tree(found))
