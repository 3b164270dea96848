"""Durability: resume replays finished steps, reviews wait across processes, and a changed
definition is refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from podium import Engine, NonDeterminism, open_store
from podium.dsl import call, parallel, review, saga, workflow
from podium.types import Store

ROOT = Path(__file__).resolve().parents[2]


class Counter:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def fn(self, name: str, block: asyncio.Event | None = None) -> Any:
        async def step(**kw: Any) -> str:
            self.calls[name] = self.calls.get(name, 0) + 1
            if block is not None:
                await block.wait()
            return f"{name}-done"

        return step


async def _completed(store: Store, run_id: str, step: str) -> bool:
    return any(e.kind == "step_completed" and e.step == step for e in await store.events(run_id))


async def test_resume_replays_finished_steps_and_runs_the_rest(any_store: Store) -> None:
    store = any_store
    counter = Counter()
    gate = asyncio.Event()
    wf = workflow(
        "r",
        call("a", counter.fn("a")),
        parallel("p", call("b", counter.fn("b")), call("c", counter.fn("c", gate))),
        call("d", counter.fn("d")),
    )
    first = Engine(store)
    run_id = await first.start(wf)
    # wait until c is running and b's completion is durable (b's journal write may still be in
    # flight when c starts: a step whose completion was not journaled is run again, by design)
    while counter.calls.get("c") != 1 or not await _completed(store, run_id, "p/b"):
        await asyncio.sleep(0.001)
    await first.close()  # like a crash: the run is left "running" mid-step
    assert (await store.get_run(run_id)).status == "running"

    gate.set()
    second = Engine(store)
    [result] = await second.recover(wf)
    await second.close()
    assert result.output == "d-done"
    # a and b finished before the "crash": never executed again; c was interrupted: re-run once
    assert counter.calls == {"a": 1, "b": 1, "c": 2, "d": 1}


async def test_resuming_a_finished_run_executes_nothing(any_store: Store) -> None:
    store = any_store
    counter = Counter()
    wf = workflow("done", call("a", counter.fn("a")))
    engine = Engine(store)
    result = await engine.run(wf)
    again = await engine.resume(result.run_id, wf)
    await engine.close()
    assert again.output == result.output == "a-done"
    assert counter.calls == {"a": 1}


async def test_a_changed_definition_is_refused_on_resume(any_store: Store) -> None:
    store = any_store
    wf = workflow("v", call("a", lambda: 1), review("ok", "go?"))
    engine = Engine(store)
    result = await engine.run(wf)
    assert result.status == "waiting"
    changed = workflow("v", call("a", lambda: 1), call("extra", lambda: 2), review("ok", "go?"))
    with pytest.raises(NonDeterminism, match="definition changed"):
        await engine.resume(result.run_id, changed)
    await engine.close()


async def test_review_waits_then_approval_continues(any_store: Store) -> None:
    store = any_store
    counter = Counter()
    wf = workflow(
        "payout",
        call("assess", counter.fn("assess")),
        review("approve", "Pay out {{ steps.assess.output }}?", data="{{ steps.assess.output }}"),
        call("pay", counter.fn("pay")),
        output={"paid": "{{ steps.pay.output }}", "review": "{{ steps.approve.output }}"},
    )
    engine = Engine(store)
    waiting = await engine.run(wf)
    assert waiting.status == "waiting"
    assert waiting.waiting_on == ["approve"]
    assert (await engine.result(waiting.run_id)).waiting_on == ["approve"]
    events = await store.events(waiting.run_id)
    request = next(e for e in events if e.kind == "review_requested")
    assert json.loads(request.data or "{}") == {
        "prompt": "Pay out assess-done?",
        "data": "assess-done",
    }

    await engine.approve(waiting.run_id, "approve", comment="looks right", by="ana")
    done = await engine.resume(waiting.run_id, wf)
    await engine.close()
    assert done.ok
    assert done.output["paid"] == "pay-done"
    assert done.output["review"]["approved"] is True
    assert done.output["review"]["comment"] == "looks right"
    assert counter.calls == {"assess": 1, "pay": 1}


async def test_rejection_fails_the_step_and_a_saga_compensates(any_store: Store) -> None:
    store = any_store
    log: list[str] = []
    wf = workflow(
        "reject",
        saga(
            "s",
            call(
                "reserve",
                lambda: log.append("reserve"),
                compensate=call("release", lambda: log.append("release")),
            ),
            review("check", "ok?"),
        ),
    )
    engine = Engine(store)
    waiting = await engine.run(wf)
    with pytest.raises(Exception, match="not waiting for a review at 'nope'"):
        await engine.approve(waiting.run_id, "nope")
    await engine.reject(waiting.run_id, "check", comment="no receipts", by="bo")
    result = await engine.resume(waiting.run_id, wf)
    await engine.close()
    assert result.status == "failed"
    assert "rejected by bo: no receipts" in result.error["message"]
    assert log == ["reserve", "release"]


def _podium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODIUM_HOME": str(cwd / ".podium"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "podium.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_review_survives_a_process_restart(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "def assess(amount):\n    return {'amount': amount, 'large': amount > 1000}\n"
        "def pay(amount):\n    return f'paid {amount}'\n"
    )
    (tmp_path / "claim.yaml").write_text(
        """
name: claim
inputs:
  amount: integer
steps:
  - id: assess
    call: ./steps.py:assess
    input: {amount: "{{ inputs.amount }}"}
  - id: approve_payout
    when: "{{ steps.assess.output.large }}"
    review: "Approve a payout of {{ inputs.amount }}?"
  - id: pay
    call: ./steps.py:pay
    input: {amount: "{{ inputs.amount }}"}
"""
    )
    started = _podium("run", "claim.yaml", "--input", "amount=5000", "--json", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["status"] == "waiting"
    assert state["waiting_on"] == ["approve_payout"]

    # a different process decides and continues the run
    approved = _podium(
        "approve",
        state["run_id"],
        "approve_payout",
        "--comment",
        "ok",
        "--by",
        "cfo",
        "--json",
        cwd=tmp_path,
    )
    assert approved.returncode == 0, approved.stderr
    final = json.loads(approved.stdout)
    assert final["status"] == "completed"
    assert final["output"] == "paid 5000"

    shown = _podium("show", state["run_id"], "--json", cwd=tmp_path)
    steps = {s["step"]: s for s in json.loads(shown.stdout)["steps"]}
    assert steps["approve_payout"]["output"]["by"] == "cfo"
    assert steps["pay"]["status"] == "completed"


async def test_sqlite_store_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = await open_store(url)
    engine = Engine(store)
    waiting = await engine.run(workflow("w", call("a", lambda: 5), review("r", "ok?")))
    await engine.close()
    await store.close()

    store = await open_store(url)
    engine = Engine(store)
    await engine.approve(waiting.run_id, "r")
    wf = workflow("w", call("a", lambda: 5), review("r", "ok?"))
    result = await engine.resume(waiting.run_id, wf)
    await engine.close()
    await store.close()
    assert result.ok
