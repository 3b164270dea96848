"""Each orchestration pattern, their nesting, and the step options (retry, timeout, fallback)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium import Engine, ModelError, StepContext
from podium.dsl import (
    call,
    for_each,
    if_,
    loop,
    orchestrate,
    parallel,
    review,
    saga,
    sequence,
    sub,
    switch,
    workflow,
)
from podium.testing import FakeClock, flaky


class Recorder:
    """Step functions that log what ran, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def fn(self, name: str, result: Any = None, fail: bool = False, delay: float = 0.0) -> Any:
        async def step(**kwargs: Any) -> Any:
            if delay:
                await asyncio.sleep(delay)
            self.log.append(name)
            if fail:
                raise RuntimeError(f"{name} broke")
            if callable(result):
                return result(**kwargs)
            return result if result is not None else {"step": name, **kwargs}

        step.__name__ = name
        return step


async def test_sequential_feeds_outputs_forward(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "seq",
        call(
            "sentiment",
            rec.fn(
                "sentiment", lambda text: {"label": "negative" if "angry" in text else "positive"}
            ),
            text="{{ inputs.email }}",
        ),
        call(
            "priority",
            rec.fn("priority", lambda label, text: "high" if label == "negative" else "low"),
            label="{{ steps.sentiment.output.label }}",
            text="{{ inputs.email }}",
        ),
        call("reply", rec.fn("reply", lambda p: f"[{p}] thanks"), p="{{ steps.priority.output }}"),
        inputs={"email": "string"},
    )
    result = await make_engine().run(wf, {"email": "I am angry about my bill"})
    assert result.ok
    assert result.output == "[high] thanks"
    assert rec.log == ["sentiment", "priority", "reply"]


async def test_sync_step_functions_run_off_the_event_loop(make_engine: Any) -> None:
    import threading

    main = threading.get_ident()

    def where() -> bool:
        return threading.get_ident() != main

    result = await make_engine().run(workflow("t", call("w", where)))
    assert result.output is True


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("all", {"a": "x", "b": "y", "c": "x"}),
        ("vote", {"winner": "x", "votes": 2, "total": 3, "agreement": 2 / 3}),
    ],
)
async def test_parallel_aggregators(make_engine: Any, aggregate: str, expected: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "par",
        parallel(
            "p",
            call("a", rec.fn("a", "x")),
            call("b", rec.fn("b", "y")),
            call("c", rec.fn("c", "x")),
            aggregate=aggregate,
        ),
    )
    result = await make_engine().run(wf)
    assert result.output == expected
    assert sorted(rec.log) == ["a", "b", "c"]


async def test_parallel_weighted_score(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "risk",
        parallel(
            "risk",
            call("spend", rec.fn("spend", {"score": 0.9})),
            call("geo", rec.fn("geo", {"score": 0.1})),
            call("velocity", rec.fn("velocity", {"risk": 0.5})),
            aggregate="weighted",
            weights={"spend": 3, "geo": 1, "velocity": 1},
            score="{{ output.score if output.score is defined else output.risk }}",
        ),
    )
    result = await make_engine().run(wf)
    assert result.output["scores"] == {"spend": 0.9, "geo": 0.1, "velocity": 0.5}
    assert result.output["score"] == pytest.approx((3 * 0.9 + 0.1 + 0.5) / 5)


async def test_parallel_custom_aggregate_function(make_engine: Any) -> None:
    def longest(results: dict[str, str]) -> str:
        return max(results.values(), key=len)

    rec = Recorder()
    wf = workflow(
        "c",
        parallel(
            "p",
            call("a", rec.fn("a", "short")),
            call("b", rec.fn("b", "much longer")),
            aggregate=longest,
        ),
    )
    assert (await make_engine().run(wf)).output == "much longer"


async def test_parallel_first_success_cancels_the_rest(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "first",
        parallel(
            "p",
            call("slow", rec.fn("slow", "slow", delay=5)),
            call("broken", rec.fn("broken", fail=True)),
            call("fast", rec.fn("fast", "fast", delay=0.01)),
            aggregate="first",
        ),
    )
    result = await asyncio.wait_for(make_engine().run(wf), 3)
    assert result.output == "fast"
    assert "slow" not in rec.log


async def test_parallel_fail_fast_cancels_siblings(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "ff",
        parallel("p", call("slow", rec.fn("slow", delay=5)), call("bad", rec.fn("bad", fail=True))),
    )
    result = await asyncio.wait_for(make_engine().run(wf), 3)
    assert result.status == "failed"
    assert "bad broke" in result.error["message"]
    assert result.error["step"] == "p/bad"
    assert "slow" not in rec.log


async def test_parallel_quorum_degrades_but_succeeds(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "q",
        parallel(
            "p",
            call("a", rec.fn("a", "ok")),
            call("b", rec.fn("b", fail=True)),
            call("c", rec.fn("c", "ok")),
            failure="quorum",
            quorum=2,
        ),
        call(
            "after",
            rec.fn("after", lambda d, e: {"degraded": d, "errors": e}),
            d="{{ steps.p.degraded }}",
            e="{{ steps.p.errors }}",
        ),
    )
    result = await make_engine().run(wf)
    assert result.ok
    assert result.output["degraded"] is True
    assert list(result.output["errors"]) == ["b"]


async def test_parallel_quorum_not_met_fails(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "q",
        parallel(
            "p",
            call("a", rec.fn("a", "ok")),
            call("b", rec.fn("b", fail=True)),
            call("c", rec.fn("c", fail=True)),
            failure="quorum",
            quorum=2,
        ),
    )
    result = await make_engine().run(wf)
    assert result.status == "failed"
    assert result.error["type"] == "QuorumNotMet"
    assert "1 of 3 branches succeeded, 2 needed" in result.error["message"]


async def test_parallel_best_effort_keeps_partial_results(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "be",
        parallel(
            "p", call("a", rec.fn("a", 1)), call("b", rec.fn("b", fail=True)), failure="best_effort"
        ),
    )
    result = await make_engine().run(wf)
    assert result.ok
    assert result.output == {"a": 1}


async def test_parallel_bounded_concurrency(make_engine: Any) -> None:
    running = 0
    peak = 0

    async def tracked(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return i

    wf = workflow(
        "bounded",
        for_each(
            "each", "{{ range(20) | list }}", call("t", tracked, i="{{ item }}"), max_concurrency=3
        ),
    )
    result = await make_engine().run(wf)
    assert result.output == list(range(20))
    assert peak == 3


async def test_for_each_over_a_dynamic_list(make_engine: Any) -> None:
    async def ocr(doc: str, i: int) -> str:
        return f"{i}:{doc.upper()}"

    wf = workflow(
        "docs",
        for_each("pages", "{{ inputs.docs }}", call("ocr", ocr, doc="{{ item }}", i="{{ index }}")),
        inputs={"docs": "array"},
    )
    result = await make_engine().run(wf, {"docs": ["a", "b", "c"]})
    assert result.output == ["0:A", "1:B", "2:C"]


async def test_orchestrator_picks_workers_at_run_time(make_engine: Any) -> None:
    rec = Recorder()

    def plan(kind: str) -> list[dict[str, Any]]:
        if kind == "personalised":
            return [
                {"worker": "behaviour", "input": {"user": "u1"}},
                {"worker": "similar", "input": {"sku": "s1"}},
                {"worker": "similar", "input": {"sku": "s2"}},
            ]
        return [{"worker": "trending", "input": {}}]

    def synth(results: list[dict[str, Any]]) -> list[str]:
        return [f"{r['worker']}:{r['output']}" for r in results]

    wf = workflow(
        "recs",
        orchestrate(
            "recommend",
            call("planner", plan, kind="{{ inputs.kind }}"),
            {
                "behaviour": call(
                    "behaviour", rec.fn("behaviour", lambda user: f"likes-of-{user}")
                ),
                "similar": call("similar", rec.fn("similar", lambda sku: f"near-{sku}")),
                "trending": call("trending", rec.fn("trending", "top10")),
            },
            call("synth", synth, results="{{ results }}"),
        ),
        inputs={"kind": "string"},
    )
    engine = make_engine()
    personal = await engine.run(wf, {"kind": "personalised"})
    assert personal.output == ["behaviour:likes-of-u1", "similar:near-s1", "similar:near-s2"]
    assert sorted(rec.log) == ["behaviour", "similar", "similar"]
    rec.log.clear()
    trending = await engine.run(wf, {"kind": "anonymous"})
    assert trending.output == ["trending:top10"]
    assert rec.log == ["trending"]


async def test_orchestrator_rejects_an_invalid_plan(make_engine: Any) -> None:
    wf = workflow(
        "bad-plan",
        orchestrate(
            "o", call("planner", lambda: [{"worker": "ghost"}]), {"real": call("real", lambda: 1)}
        ),
    )
    result = await make_engine().run(wf)
    assert result.status == "failed"
    assert "unknown worker 'ghost' (known: real)" in result.error["message"]


async def test_saga_compensates_in_reverse_order(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "trip",
        saga(
            "book",
            call(
                "flight",
                rec.fn("flight", "F1"),
                compensate=call(
                    "unflight", rec.fn("cancel-flight"), ref="{{ steps.flight.output }}"
                ),
            ),
            call(
                "hotel", rec.fn("hotel", "H1"), compensate=call("unhotel", rec.fn("cancel-hotel"))
            ),
            call("car", rec.fn("car", "C1"), compensate=call("uncar", rec.fn("cancel-car"))),
            call("pay", rec.fn("pay", fail=True)),
        ),
    )
    result = await make_engine().run(wf)
    assert result.status == "failed"
    assert result.error["type"] == "SagaAborted"
    assert rec.log == [
        "flight",
        "hotel",
        "car",
        "pay",
        "cancel-car",
        "cancel-hotel",
        "cancel-flight",
    ]


async def test_saga_degrades_gracefully_keeping_verified_documents(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "claim",
        saga(
            "claim",
            call(
                "verify",
                rec.fn("verify", {"docs": ["id", "invoice"]}),
                compensate=call("unverify", rec.fn("unverify")),
            ),
            call(
                "fraud",
                rec.fn("fraud", {"score": 0.2}),
                compensate=call("unfraud", rec.fn("unfraud")),
            ),
            call("assess", rec.fn("assess", fail=True)),
            keep=["verify"],
            then=[
                call(
                    "flag",
                    rec.fn(
                        "flag", lambda docs, why: {"manual_review": True, "docs": docs, "why": why}
                    ),
                    docs="{{ steps.verify.output.docs }}",
                    why="{{ saga.error }}",
                )
            ],
        ),
    )
    result = await make_engine().run(wf)
    assert result.ok
    assert result.output["manual_review"] is True
    assert result.output["docs"] == ["id", "invoice"]
    assert "assess broke" in result.output["why"]
    assert rec.log == ["verify", "fraud", "assess", "unfraud", "flag"]


async def test_saga_retries_then_falls_back_before_compensating(
    make_engine: Any, clock: FakeClock
) -> None:
    rec = Recorder()
    primary = flaky(10, RuntimeError("provider down"))
    wf = workflow(
        "reroute",
        saga(
            "s",
            call("reserve", rec.fn("reserve"), compensate=call("release", rec.fn("release"))),
            call(
                "charge",
                primary,
                retry={"max_attempts": 3, "initial_delay": 1, "jitter": False},
                fallback=call("charge_backup", rec.fn("backup", "charged-by-backup")),
            ),
        ),
    )
    result = await make_engine().run(wf)
    assert result.ok
    assert result.output == "charged-by-backup"
    assert primary.state["calls"] == 3  # type: ignore[attr-defined]
    assert clock.sleeps == [1.0, 2.0]  # exponential backoff between the three attempts
    assert "release" not in rec.log


async def test_compensations_are_retried(make_engine: Any) -> None:
    undo = flaky(2, RuntimeError("undo failed"))
    wf = workflow(
        "s",
        saga(
            "s",
            call(
                "do",
                lambda: "done",
                compensate=call("undo", undo, retry={"max_attempts": 5, "initial_delay": 0.01}),
            ),
            call("boom", lambda: 1 / 0),
        ),
    )
    result = await make_engine().run(wf)
    assert result.error["type"] == "SagaAborted"
    assert undo.state["calls"] == 3  # type: ignore[attr-defined]


async def test_retry_jitter_stays_within_the_backoff(make_engine: Any, clock: FakeClock) -> None:
    step = flaky(4)
    wf = workflow(
        "j",
        call(
            "s",
            step,
            retry={"max_attempts": 5, "initial_delay": 1, "multiplier": 2, "max_delay": 5},
        ),
    )
    assert (await make_engine().run(wf)).ok
    caps = [1, 2, 4, 5]
    assert len(clock.sleeps) == 4
    assert all(0 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True))


async def test_retry_on_limits_retried_errors(make_engine: Any) -> None:
    step = flaky(1, KeyError("nope"))
    wf = workflow(
        "r",
        call(
            "s", step, retry={"max_attempts": 3, "retry_on": ["ModelError"], "initial_delay": 0.01}
        ),
    )
    result = await make_engine().run(wf)
    assert result.status == "failed"
    assert step.state["calls"] == 1  # type: ignore[attr-defined]


async def test_non_retryable_model_errors_are_not_retried(make_engine: Any) -> None:
    step = flaky(1, ModelError("bad api key", retryable=False))
    wf = workflow("r", call("s", step, retry={"max_attempts": 3, "initial_delay": 0.01}))
    assert (await make_engine().run(wf)).status == "failed"
    assert step.state["calls"] == 1  # type: ignore[attr-defined]


async def test_step_timeout(make_engine: Any) -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    wf = workflow("t", call("slow", slow, timeout=0.05))
    result = await asyncio.wait_for(make_engine().run(wf), 3)
    assert result.status == "failed"
    assert result.error["type"] == "StepTimeout"
    assert "timed out after 0.05s" in result.error["message"]


async def test_run_timeout(make_engine: Any) -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    wf = workflow("t", call("a", lambda: 1), call("slow", slow), timeout=0.05)
    result = await asyncio.wait_for(make_engine().run(wf), 3)
    assert result.status == "failed"
    assert "exceeded its timeout" in result.error["message"]


async def test_cancel_a_running_run(make_engine: Any) -> None:
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.sleep(60)

    engine = make_engine()
    run_id = await engine.start(workflow("c", call("a", lambda: 1), call("w", wait_forever)))
    await asyncio.wait_for(started.wait(), 3)
    result = await engine.cancel(run_id)
    assert result.status == "cancelled"
    stored = await engine.store.get_run(run_id)
    assert stored.status == "cancelled"
    assert (await engine.resume(run_id)).status == "cancelled"


async def test_if_and_switch(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "branch",
        if_(
            "needs_translation",
            "{{ inputs.lang != 'en' }}",
            then=[
                call(
                    "translate",
                    rec.fn("translate", lambda text: f"EN({text})"),
                    text="{{ inputs.text }}",
                )
            ],
            else_=[call("keep", rec.fn("keep", lambda text: text), text="{{ inputs.text }}")],
        ),
        switch(
            "route",
            "{{ inputs.lang }}",
            {
                "fr": [call("fr", rec.fn("fr", "bonjour"))],
                "de": [call("de", rec.fn("de", "hallo"))],
            },
            default=[call("other", rec.fn("other", "hello"))],
        ),
        output={
            "text": "{{ steps.needs_translation.output }}",
            "greeting": "{{ steps.route.output }}",
            "case": "{{ steps.route.case }}",
        },
        inputs={"lang": "string", "text": "string"},
    )
    engine = make_engine()
    fr = await engine.run(wf, {"lang": "fr", "text": "salut"})
    assert fr.output == {"text": "EN(salut)", "greeting": "bonjour", "case": "fr"}
    en = await engine.run(wf, {"lang": "en", "text": "hi"})
    assert en.output == {"text": "hi", "greeting": "hello", "case": "default"}


async def test_when_skips_a_step(make_engine: Any) -> None:
    rec = Recorder()
    wf = workflow(
        "w",
        call("maybe", rec.fn("maybe"), when="{{ inputs.go }}"),
        inputs={"go": "boolean"},
        output="{{ steps.maybe.skipped | default(false) }}",
    )
    assert (await make_engine().run(wf, {"go": False})).output is True
    assert rec.log == []


async def test_bounded_loop_evaluator_optimizer(make_engine: Any) -> None:
    def draft(previous: Any) -> str:
        return "draft" if previous is None else previous + "+"

    def evaluate(text: str) -> float:
        return len(text) / 10

    wf = workflow(
        "refine",
        loop(
            "improve",
            call("write", draft, previous="{{ loop.previous.write if loop.previous else none }}"),
            call("score", evaluate, text="{{ steps.write.output }}"),
            until="{{ steps.score.output >= 0.8 }}",
            max_iterations=10,
        ),
        output={
            "text": "{{ steps.improve.output }}",
            "n": "{{ steps.improve.iterations }}",
            "ok": "{{ steps.improve.converged }}",
        },
    )
    result = await make_engine().run(wf)
    assert result.output == {"text": 0.8, "n": 4, "ok": True}


async def test_loop_stops_at_its_bound(make_engine: Any) -> None:
    wf = workflow(
        "never",
        loop("l", call("x", lambda: 0), until="{{ false }}", max_iterations=3),
        output="{{ [steps.l.iterations, steps.l.converged] }}",
    )
    assert (await make_engine().run(wf)).output == [3, False]


async def test_patterns_nest(make_engine: Any) -> None:
    """A parallel block inside a saga step, a sequence inside an orchestrator worker,
    a for_each inside a parallel branch, and a sub-workflow."""
    rec = Recorder()
    inner = workflow(
        "inner", call("double", lambda x: x * 2, x="{{ inputs.x }}"), inputs={"x": "integer"}
    )
    wf = workflow(
        "nested",
        saga(
            "outer",
            parallel(
                "checks",
                sequence(
                    "chain",
                    call("c1", rec.fn("c1", 1)),
                    call("c2", lambda v: v + 1, v="{{ steps.c1.output }}"),
                ),
                for_each("many", "{{ [1, 2, 3] }}", call("sq", lambda i: i * i, i="{{ item }}")),
                sub("child", inner, x=21),
            ),
            orchestrate(
                "dispatch",
                call(
                    "plan",
                    lambda n: [{"worker": "w", "input": {"v": i}} for i in range(n)],
                    n="{{ steps.checks.output.many | length }}",
                ),
                {
                    "w": sequence(
                        "w",
                        call("inc", lambda: 0),
                        call("use", lambda v: v * 10, v="{{ task.input.v }}"),
                    )
                },
            ),
        ),
        output={
            "checks": "{{ steps.checks.output }}",
            "dispatch": "{{ steps.dispatch.output | map(attribute='output') | list }}",
        },
    )
    result = await make_engine().run(wf)
    assert result.ok, result.error
    assert result.output == {
        "checks": {"chain": 2, "many": [1, 4, 9], "child": 42},
        "dispatch": [0, 10, 20],
    }


async def test_step_context_gives_a_stable_idempotency_key(make_engine: Any) -> None:
    seen: list[StepContext] = []

    async def effect(ctx: StepContext) -> str:
        seen.append(ctx)
        if len(seen) < 2:
            raise RuntimeError("transient")
        return ctx.idempotency_key

    engine: Engine = make_engine()
    result = await engine.run(
        workflow("k", call("pay", effect, retry={"max_attempts": 2, "initial_delay": 0.01}))
    )
    assert result.output == f"{result.run_id}/pay"
    assert [c.attempt for c in seen] == [1, 2]
    assert seen[0].idempotency_key == seen[1].idempotency_key


async def test_run_inputs_are_validated_before_anything_runs(make_engine: Any) -> None:
    from podium import DefinitionError

    engine = make_engine()
    wf = workflow("typed", call("a", lambda n: n, n="{{ inputs.n }}"), inputs={"n": "integer"})
    with pytest.raises(DefinitionError, match="input 'n'"):
        await engine.run(wf, {"n": "not a number"})
    with pytest.raises(DefinitionError, match="unknown input 'm'"):
        await engine.run(wf, {"n": 1, "m": 2})
    with pytest.raises(DefinitionError, match="missing required input 'n'"):
        await engine.run(wf, {})
    assert await engine.store.list_runs() == []


async def test_cancel_before_the_run_starts_is_recorded(make_engine: Any) -> None:
    engine = make_engine()
    run_id = await engine.start(workflow("c", call("a", lambda: 1)))
    result = await engine.cancel(run_id)  # the task has not run a single step yet
    assert result.status == "cancelled"
    assert (await engine.store.get_run(run_id)).status == "cancelled"


async def test_concurrent_resumes_drive_a_run_once(make_engine: Any) -> None:
    calls = 0

    async def once() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    wf = workflow("r", review("gate", "go?"), call("after", once))
    engine = make_engine()
    waiting = await engine.run(wf)
    await engine.approve(waiting.run_id, "gate")
    first, second = await asyncio.gather(
        engine.resume(waiting.run_id, wf), engine.resume(waiting.run_id, wf)
    )
    assert first.output == second.output == 1
    assert calls == 1
