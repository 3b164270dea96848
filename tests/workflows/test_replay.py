"""Golden histories: recorded journals replay to the recorded result.

Every prefix of a recorded history is loaded as if the process had died right there; resuming it
must reach the recorded result without re-executing any step whose completion is in the prefix.
A fresh run must also write the same journal (kinds, steps, attempts, payloads) as the recording,
so a change to the journal format shows up here. Regenerate with PODIUM_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from podium import Engine, MemoryStore, load_workflow
from podium.testing import FakeClock
from podium.types import Event, RunRecord
from tests.workflows.golden import steps

GOLDEN = Path(__file__).with_name("golden")
CASES = [("claims", {"amount": 120}), ("recommend", {"kind": "personal"})]


def _portable(events: list[Event]) -> list[list[Any]]:
    rows = []
    for e in events:
        data = e.data
        if e.kind == "run_started" and data:  # the definition's absolute path varies by checkout
            started = json.loads(data)
            started.pop("file", None)
            data = json.dumps(started, separators=(",", ":"))
        rows.append([e.kind, e.step, e.attempt, data])
    return rows


async def _record(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    store = MemoryStore()
    engine = Engine(store, clock=FakeClock(), seed=1)
    result = await engine.run(load_workflow(GOLDEN / f"{name}.yaml"), inputs, run_id="golden")
    events = await store.events("golden")
    await engine.close()
    assert result.ok, result.error
    return {"inputs": inputs, "result": result.output, "events": _portable(events)}


@pytest.mark.parametrize(("name", "inputs"), CASES)
async def test_golden_history_replays_from_every_prefix(name: str, inputs: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.history.json"
    if os.environ.get("PODIUM_UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(await _record(name, inputs), indent=1) + "\n")
    golden = json.loads(path.read_text())
    plan = load_workflow(GOLDEN / f"{name}.yaml")
    recorded = [
        Event("golden", i + 1, kind, step, attempt, 0.0, data)
        for i, (kind, step, attempt, data) in enumerate(golden["events"])
    ]
    assert recorded[-1].kind == "run_completed"

    for cut in range(1, len(recorded)):
        prefix = recorded[:cut]
        store = MemoryStore()
        record = RunRecord(
            run_id="golden",
            workflow=plan.name,
            status="running",
            created_at=0.0,
            updated_at=0.0,
            inputs=json.dumps(golden["inputs"]),
            source=plan.source,
            source_hash=plan.source_hash,
        )
        await store.create_run(record, prefix)
        steps.CALLS.clear()
        engine = Engine(store, clock=FakeClock(), seed=1)
        result = await engine.resume("golden", plan)
        await engine.close()
        assert result.ok, (cut, result.error)
        assert result.output == golden["result"], f"prefix of {cut} events"
        done = {e.step for e in prefix if e.kind == "step_completed"}
        if cut == len(recorded) - 1:  # everything had finished: nothing may run again
            assert sum(steps.CALLS.values()) == 0, steps.CALLS
        # the journal after resume completes each step exactly once
        completions = [e.step for e in await store.events("golden") if e.kind == "step_completed"]
        assert len(completions) == len(set(completions)), f"prefix {cut}: a step completed twice"
        assert done <= set(completions)


@pytest.mark.parametrize(("name", "inputs"), CASES)
async def test_a_fresh_run_writes_the_recorded_journal(name: str, inputs: dict[str, Any]) -> None:
    golden = json.loads((GOLDEN / f"{name}.history.json").read_text())
    steps.CALLS.clear()
    fresh = await _record(name, inputs)
    assert fresh["result"] == golden["result"]
    assert sorted(map(json.dumps, fresh["events"])) == sorted(map(json.dumps, golden["events"]))


def test_golden_results_are_what_the_workflows_mean() -> None:
    claims = json.loads((GOLDEN / "claims.history.json").read_text())["result"]
    assert claims["items"] == [120, 240, 360]
    assert claims["handled"]["failed_step"] == "notify"
    assert claims["handled"]["compensated"] == ["hold"]  # pay has no compensation
    recommend = json.loads((GOLDEN / "recommend.history.json").read_text())["result"]
    assert recommend == "personal"
