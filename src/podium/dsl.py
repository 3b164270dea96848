"""Python front door: build the same validated workflow model the YAML files describe.

>>> from podium.dsl import workflow, call, parallel
>>> wf = workflow("support",
...     call("sentiment", classify, text="{{ inputs.email }}"),
...     parallel("checks", call("a", check_a), call("b", check_b), aggregate="vote"),
...     inputs={"email": "string"})

Every builder returns a ``podium.workflows.spec`` model; keyword options shared by all steps are
``retry`` (dict or :class:`~podium.workflows.spec.RetryPolicy`), ``timeout``, ``fallback``,
``compensate``, ``when`` and ``description``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podium.workflows import spec

_COMMON = ("retry", "timeout", "fallback", "compensate", "when", "description")


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    common = {k: options.pop(k) for k in _COMMON if k in options}
    return common, options


def call(id: str, fn: Callable[..., Any] | str, /, **options: Any) -> spec.CallStep:
    """A function step; keyword arguments other than the common options become its input."""
    common, inputs = _split(dict(options))
    if "input" in inputs and isinstance(inputs["input"], Mapping) and len(inputs) == 1:
        inputs = dict(inputs["input"])
    return spec.CallStep(id=id, call=fn, input=inputs, **common)


def model(id: str, name: str, prompt: str | None = None, /, **options: Any) -> spec.ModelStep:
    """A model step through the governed call path."""
    return spec.ModelStep(id=id, model=name, prompt=prompt, **options)


def review(id: str, question: str, /, **options: Any) -> spec.ReviewStep:
    """A human review step that waits durably for approve/reject."""
    return spec.ReviewStep(id=id, review=question, **options)


def sub(id: str, target: spec.Workflow | str, /, **options: Any) -> spec.WorkflowStep:
    """Run another workflow inline; keyword arguments other than the common options are inputs."""
    common, inputs = _split(dict(options))
    return spec.WorkflowStep(id=id, workflow=target, input=inputs, **common)


def sequence(id: str, *steps: Any, **options: Any) -> spec.SequenceStep:
    """Steps in order."""
    return spec.SequenceStep(id=id, steps=list(steps), **options)


def parallel(id: str, *branches: Any, **options: Any) -> spec.ParallelStep:
    """Branches at once, then ``aggregate`` (all, first, vote, weighted or a function)."""
    return spec.ParallelStep(id=id, parallel=list(branches), **options)


def for_each(id: str, items: str, *steps: Any, **options: Any) -> spec.ForEachStep:
    """``steps`` once per item of the list ``items`` evaluates to."""
    return spec.ForEachStep(id=id, for_each=items, do=list(steps), **options)


def orchestrate(
    id: str,
    planner: Any,
    workers: Mapping[str, Any],
    synthesize: Any = None,
    **options: Any,
) -> spec.OrchestrateStep:
    """A planner picks workers at run time; ``synthesize`` combines their ``results``."""
    return spec.OrchestrateStep(
        id=id, orchestrate=planner, workers=dict(workers), synthesize=synthesize, **options
    )


def saga(
    id: str,
    *steps: Any,
    keep: Sequence[str] = (),
    then: Sequence[Any] = (),
    **options: Any,
) -> spec.SagaStep:
    """Steps with compensations; on failure compensate (except ``keep``) and run ``then``."""
    return spec.SagaStep(
        id=id,
        saga=list(steps),
        on_failure=spec.SagaFailure(keep=list(keep), then=list(then)),
        **options,
    )


def if_(
    id: str, condition: str, then: Sequence[Any], else_: Sequence[Any] = (), **options: Any
) -> spec.IfStep:
    """Branch on a condition expression."""
    return spec.IfStep(id=id, if_=condition, then=list(then), else_=list(else_), **options)


def switch(
    id: str,
    value: str,
    cases: Mapping[str, Sequence[Any]],
    default: Sequence[Any] = (),
    **options: Any,
) -> spec.SwitchStep:
    """Branch on a value expression."""
    return spec.SwitchStep(
        id=id,
        switch=value,
        cases={k: list(v) for k, v in cases.items()},
        default=list(default),
        **options,
    )


def loop(
    id: str, *steps: Any, until: str, max_iterations: int = 5, **options: Any
) -> spec.LoopStep:
    """Repeat ``steps`` until ``until`` holds (evaluator-optimizer), at most ``max_iterations``."""
    return spec.LoopStep(
        id=id, loop=list(steps), until=until, max_iterations=max_iterations, **options
    )


def workflow(
    name: str,
    *steps: Any,
    inputs: Mapping[str, Any] | None = None,
    output: Any = None,
    **options: Any,
) -> spec.Workflow:
    """A workflow definition from steps."""
    return spec.Workflow.model_validate(
        {
            "name": name,
            "steps": list(steps),
            "inputs": dict(inputs or {}),
            "output": output,
            **options,
        }
    )
