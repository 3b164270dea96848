"""The durable engine: starts, resumes, suspends and cancels runs of planned workflows.

A run is its journal. Starting a run writes its header and ``run_started`` in one transaction;
every step's completion is committed before the next step can see it; resuming folds the
journal into a :class:`~podium.workflows.journal.Replay` and runs the plan again, returning
recorded outputs for finished steps instead of executing them. So a process killed at any
instant loses nothing that was acknowledged and repeats no finished step.

A run has an **owner**: the :class:`~podium.finops.ledger.Attribution` of whoever started it (the
API passes the caller's). Its org and team are written on the run's header (tenant isolation
filters on them); the whole owner is journaled in ``run_started``, so a resume in another process
— or :meth:`Engine.recover` after a crash — charges the run's model calls to the same org, team,
project and use case as before. Sub-workflows run inside their parent's run and journal, so they
share its owner by construction.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from podium.config import Settings
from podium.errors import (
    NonDeterminism,
    PodiumError,
    RunCancelled,
    StepTimeout,
    WorkflowError,
    WorkflowSuspended,
)
from podium.finops.ledger import Attribution
from podium.types import (
    DEFAULT_ORG,
    Clock,
    Event,
    ModelCall,
    ModelGateway,
    ModelReply,
    RunRecord,
    RunStatus,
    RunUpdate,
    StepExecutor,
    Store,
    SystemClock,
    ordered_id,
)
from podium.workflows.context import RunState
from podium.workflows.executors import InlineExecutor
from podium.workflows.history import pending_reviews
from podium.workflows.journal import Journal, Replay, dumps
from podium.workflows.nodes import describe
from podium.workflows.plan import Plan, load_text, plan
from podium.workflows.resolve import Registry, load_object
from podium.workflows.spec import Workflow

_FINAL: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")

OWNER_FIELDS: Final = ("org", "team", "project", "key_id", "use_case")
"""The parts of an owner a run keeps and charges its model calls to (never ``run_id``/``step``:
those name the call, and the step path sets them)."""


def owner_metadata(owner: Attribution) -> dict[str, str]:
    """An owner as :class:`~podium.types.ModelCall` metadata (the keys
    :func:`podium.gateway.steps.caller_of` reads), without its empty parts."""
    return {f: v for f in OWNER_FIELDS if (v := getattr(owner, f)) is not None}


def owner_of(record: RunRecord, events: list[Event]) -> Attribution:
    """A stored run's owner: the one journaled in ``run_started``, else the header's org/team
    (a run journaled before owners were)."""
    if events and events[0].kind == "run_started" and events[0].data:
        saved = json.loads(events[0].data).get("owner")
        if isinstance(saved, dict):
            owner = Attribution(**{f: saved.get(f) for f in OWNER_FIELDS})
            return replace(owner, org=owner.org or DEFAULT_ORG)
    return Attribution(org=record.org or DEFAULT_ORG, team=record.team)


@dataclass(frozen=True, slots=True)
class OwnedGateway:
    """A run's view of the model gateway: every call carries the run owner's attribution.

    The owner's fields override whatever the step put in the metadata under the same names, so
    a run's spend always lands on the team that started it.
    """

    inner: ModelGateway
    owner: Mapping[str, str]

    async def call(self, request: ModelCall) -> ModelReply:
        return await self.inner.call(replace(request, metadata={**request.metadata, **self.owner}))


@dataclass(frozen=True)
class RunResult:
    """How a run stands after the engine let go of it."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: dict[str, Any] | None = None
    waiting_on: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_record(cls, record: RunRecord, waiting_on: list[str] | None = None) -> RunResult:
        return cls(
            record.run_id,
            record.status,
            json.loads(record.result) if record.result else None,
            json.loads(record.error) if record.error else None,
            waiting_on or [],
        )


class Engine:
    """Runs workflows durably against a :class:`~podium.types.Store`."""

    def __init__(
        self,
        store: Store,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        gateway: ModelGateway | None = None,
        clock: Clock | None = None,
        executor: StepExecutor | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.registry = registry or Registry()
        self.gateway = gateway
        self.clock: Clock = clock or SystemClock()
        self._own_executor = executor is None
        self.executor: StepExecutor = executor or InlineExecutor(self.settings.thread_pool_size)
        self._rng = random.Random(seed)
        self._active: dict[str, asyncio.Task[RunResult]] = {}
        self._starting: set[str] = set()
        """Runs being created: stored as ``running`` but not yet driven, so ``recover`` (which
        a server runs while it already accepts new runs) must not drive them a second time."""
        self._cancelling: set[str] = set()

    async def close(self) -> None:
        """Stop background runs (they stay resumable) and release the thread pool."""
        for task in list(self._active.values()):
            task.cancel()
        await asyncio.gather(*self._active.values(), return_exceptions=True)
        if self._own_executor and isinstance(self.executor, InlineExecutor):
            self.executor.close()

    # -- definitions ----------------------------------------------------------------------
    def plan(self, workflow: Workflow | Plan) -> Plan:
        """Plan a Python-defined workflow with this engine's registry."""
        if isinstance(workflow, Plan):
            return workflow
        return plan(workflow, registry=self.registry)

    def _new_id(self) -> str:
        return ordered_id(self.clock.now(), random_bytes=5)

    # -- starting -------------------------------------------------------------------------
    async def _create(
        self,
        target: Workflow | Plan,
        inputs: dict[str, Any] | None,
        run_id: str | None,
        owner: Attribution | None,
    ) -> tuple[Plan, str, dict[str, Any], Attribution]:
        p = self.plan(target)
        values = p.validate_inputs(inputs or {})
        run_id = run_id or self._new_id()
        now = self.clock.now()
        started: dict[str, Any] = {"inputs": values}
        if owner is None:  # journaled as before owners existed: the header says it all
            owner = Attribution(org=DEFAULT_ORG)
        else:
            owner = replace(owner, org=owner.org or DEFAULT_ORG, run_id=None, step=None)
            started["owner"] = owner_metadata(owner)
        if p.location:
            started["file"] = p.location
        record = RunRecord(
            run_id=run_id,
            workflow=p.name,
            status="running",
            created_at=now,
            updated_at=now,
            inputs=dumps(values),
            source=p.source,
            source_hash=p.source_hash,
            org=owner.org,
            team=owner.team,
        )
        self._starting.add(run_id)
        try:
            await self.store.create_run(
                record, [Event(run_id, 1, "run_started", "", 0, now, dumps(started))]
            )
        except BaseException:
            self._starting.discard(run_id)
            raise
        return p, run_id, values, owner

    async def run(
        self,
        target: Workflow | Plan,
        inputs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        owner: Attribution | None = None,
    ) -> RunResult:
        """Start a run and wait until it completes, fails or suspends.

        ``owner``: who the run belongs to and its model calls are charged to (``None``: the
        default organisation, no team).
        """
        p, run_id, values, owner = await self._create(target, inputs, run_id, owner)
        drive = self._drive(p, run_id, values, Replay(last_seq=1), owner)
        return await self._track(run_id, drive)

    async def start(
        self,
        target: Workflow | Plan,
        inputs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        owner: Attribution | None = None,
    ) -> str:
        """Start a run in the background; ``wait(run_id)`` for its result. ``owner`` as in
        :meth:`run`."""
        p, run_id, values, owner = await self._create(target, inputs, run_id, owner)
        task = asyncio.ensure_future(self._drive(p, run_id, values, Replay(last_seq=1), owner))
        self._active[run_id] = task
        self._starting.discard(run_id)
        task.add_done_callback(lambda _t: self._active.pop(run_id, None))
        return run_id

    async def wait(self, run_id: str) -> RunResult:
        """Wait for a background run; for a run not active here, report its stored state."""
        task = self._active.get(run_id)
        if task is not None:
            return await asyncio.shield(task)
        return await self.result(run_id)

    async def result(self, run_id: str) -> RunResult:
        """The stored state of a run."""
        record = await self.store.get_run(run_id)
        waiting = (
            pending_reviews(await self.store.events(run_id)) if record.status == "waiting" else []
        )
        return RunResult.from_record(record, waiting)

    async def _track(self, run_id: str, coro: Any) -> RunResult:
        task: asyncio.Task[RunResult] = asyncio.ensure_future(coro)
        self._active[run_id] = task
        self._starting.discard(run_id)
        try:
            return await task
        finally:
            self._active.pop(run_id, None)

    # -- resuming -------------------------------------------------------------------------
    def rebuild(self, record: RunRecord, replay: Replay) -> Plan:
        """Rebuild a run's plan from the definition stored with it."""
        source = record.source
        if source.startswith("python:"):
            ref = source.removeprefix("python:")
            obj = load_object(ref)
            if not isinstance(obj, Workflow | Plan):
                raise WorkflowError(f"{ref!r} no longer names a Workflow", run_id=record.run_id)
            return self.plan(obj)
        if not source:
            known = self.registry.workflow(record.workflow)
            if known is None:
                raise WorkflowError(
                    f"run {record.run_id} was started from a Python object: pass the workflow "
                    "to resume(), or register it "
                    f"(registry.register_workflow({record.workflow!r}, …))",
                    run_id=record.run_id,
                )
            return self.plan(known)
        file = replay.file or f"<stored:{record.workflow}>"
        base = Path(replay.file).parent if replay.file else None
        return load_text(source, file, registry=self.registry, base_dir=base)

    async def resume(
        self, run_id: str, target: Workflow | Plan | None = None, *, force: bool = False
    ) -> RunResult:
        """Continue a run from its journal. Finished steps are replayed, never re-executed.

        A run already being driven by this engine is not driven twice: the call waits for it.
        """
        active = self._active.get(run_id)
        if active is not None:
            return await asyncio.shield(active)
        # registered before the first await, so a concurrent resume() finds it
        return await self._track(run_id, self._resume(run_id, target, force))

    async def plan_for_resume(
        self, run_id: str, target: Workflow | Plan | None = None, *, force: bool = False
    ) -> Plan | None:
        """The plan a resume would run (``None`` when the run is over), or raise why it cannot:
        ``NonDeterminism`` when the definition changed since the run started."""
        record = await self.store.get_run(run_id)
        if record.status in _FINAL:
            return None
        return self._checked_plan(
            record, Replay.from_events(await self.store.events(run_id)), target, force
        )

    def _checked_plan(
        self, record: RunRecord, replay: Replay, target: Workflow | Plan | None, force: bool
    ) -> Plan:
        p = self.plan(target) if target is not None else self.rebuild(record, replay)
        if p.source_hash != record.source_hash and not force:
            raise NonDeterminism(
                f"run {record.run_id}: the workflow definition changed since the run started "
                "(resume with force to continue with the new definition)",
                run_id=record.run_id,
            )
        return p

    async def _resume(self, run_id: str, target: Workflow | Plan | None, force: bool) -> RunResult:
        record = await self.store.get_run(run_id)
        if record.status in _FINAL:
            return RunResult.from_record(record)
        events = await self.store.events(run_id)
        replay = Replay.from_events(events)
        p = self._checked_plan(record, replay, target, force)
        if record.status == "waiting":
            await self.store.append(
                [Event(run_id, replay.last_seq + 1, "run_resumed", "", 0, self.clock.now())],
                RunUpdate("running", self.clock.now()),
            )
            replay.last_seq += 1
        inputs = replay.inputs if replay.inputs is not None else json.loads(record.inputs)
        return await self._drive(p, run_id, inputs, replay, owner_of(record, events))

    async def recover(self, *workflows: Workflow | Plan) -> list[RunResult]:
        """Resume every run a crash left ``running`` (call at start-up).

        Runs of YAML workflows rebuild their plan from the stored definition; pass (or register)
        Python-defined workflows so their runs can be rebuilt too.
        """
        for wf in workflows:
            self.registry.register_workflow(
                wf.workflow.name if isinstance(wf, Plan) else wf.name, wf
            )
        results = []
        for record in await self.store.list_runs(status="running", limit=10_000):
            if record.run_id not in self._active and record.run_id not in self._starting:
                results.append(await self.resume(record.run_id))
        return results

    # -- humans and cancellation ----------------------------------------------------------
    async def decide(
        self, run_id: str, step: str, *, approved: bool, comment: str = "", by: str = ""
    ) -> str:
        """Record a review decision for a waiting step. Returns the step's full path."""
        record = await self.store.get_run(run_id)
        waiting = pending_reviews(await self.store.events(run_id))
        matches = [p for p in waiting if p == step or p.endswith("/" + step)]
        if record.status != "waiting" or not matches:
            raise WorkflowError(
                f"run {run_id} is not waiting for a review at {step!r} "
                f"(status {record.status}; waiting on: {', '.join(waiting) or 'nothing'})",
                run_id=run_id,
                step_id=step,
            )
        if len(matches) > 1:
            raise WorkflowError(
                f"{step!r} matches several waiting steps: {', '.join(matches)}; give the full path",
                run_id=run_id,
            )
        payload = {"approved": approved, "comment": comment, "by": by, "at": self.clock.now()}
        await self.store.put_signal(run_id, f"review:{matches[0]}", dumps(payload))
        return matches[0]

    async def approve(self, run_id: str, step: str, *, comment: str = "", by: str = "") -> str:
        """Approve a waiting review step (then ``resume`` the run)."""
        return await self.decide(run_id, step, approved=True, comment=comment, by=by)

    async def reject(self, run_id: str, step: str, *, comment: str = "", by: str = "") -> str:
        """Reject a waiting review step (then ``resume`` the run)."""
        return await self.decide(run_id, step, approved=False, comment=comment, by=by)

    async def cancel(self, run_id: str) -> RunResult:
        """Cancel a run: a running one here is interrupted; a stored one is marked cancelled."""
        task = self._active.get(run_id)
        if task is not None:
            self._cancelling.add(run_id)
            task.cancel()
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                pass  # cancelled before it started: nothing recorded it, so record it below
            finally:
                self._cancelling.discard(run_id)
        record = await self.store.get_run(run_id)
        if record.status in _FINAL:
            return RunResult.from_record(record)
        events = await self.store.events(run_id)
        last = events[-1].seq if events else 0
        error = dumps({"type": "RunCancelled", "message": "cancelled"})
        await self.store.append(
            [Event(run_id, last + 1, "run_cancelled", "", 0, self.clock.now())],
            RunUpdate("cancelled", self.clock.now(), error=error),
        )
        return await self.result(run_id)

    # -- the drive loop -------------------------------------------------------------------
    async def _drive(
        self, p: Plan, run_id: str, inputs: dict[str, Any], replay: Replay, owner: Attribution
    ) -> RunResult:
        journal = Journal(self.store, run_id, self.clock, replay.last_seq)
        gateway = self.gateway
        if gateway is not None:
            gateway = OwnedGateway(gateway, owner_metadata(owner))
        rt = RunState(
            run_id=run_id,
            journal=journal,
            replay=replay,
            clock=self.clock,
            executor=self.executor,
            store=self.store,
            gateway=gateway,
            max_concurrency=self.settings.max_concurrency,
            rng=random.Random(self._rng.random()),
        )
        ns = {"inputs": inputs, "steps": {}, "run": {"id": run_id, "workflow": p.name}}
        timeout = p.workflow.timeout
        try:
            if timeout is None:
                out = await p.execute(rt, ns, "")
            else:
                try:
                    async with asyncio.timeout(timeout):
                        out = await p.execute(rt, ns, "")
                except TimeoutError:
                    raise StepTimeout(
                        f"run {run_id} exceeded its timeout of {timeout:g}s", run_id=run_id
                    ) from None
        except WorkflowSuspended as suspended:
            await journal.finish(
                "run_suspended",
                RunUpdate("waiting", self.clock.now()),
                dumps({"waiting_on": suspended.waiting_on}),
            )
            return RunResult(run_id, "waiting", waiting_on=suspended.waiting_on)
        except asyncio.CancelledError:
            if run_id not in self._cancelling:
                raise  # the process is stopping: the run stays resumable
            error = {"type": RunCancelled.__name__, "message": "cancelled"}
            await journal.finish(
                "run_cancelled", RunUpdate("cancelled", self.clock.now(), error=dumps(error))
            )
            return RunResult(run_id, "cancelled", error=error)
        except Exception as exc:
            error = describe(exc)
            if isinstance(exc, WorkflowError) and exc.step_id:
                error["step"] = exc.step_id
            if not isinstance(exc, PodiumError):
                error["message"] = f"{type(exc).__name__}: {exc}"
            await journal.finish(
                "run_failed",
                RunUpdate("failed", self.clock.now(), error=dumps(error)),
                dumps(error),
            )
            return RunResult(run_id, "failed", error=error)
        text = dumps(out)
        await journal.finish("run_completed", RunUpdate("completed", self.clock.now(), result=text))
        return RunResult(run_id, "completed", json.loads(text))
