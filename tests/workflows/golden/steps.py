"""Deterministic step functions for the golden histories. ``CALLS`` counts executions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from podium import StepContext

CALLS: Counter[str] = Counter()


def score(name: str, amount: int) -> dict[str, Any]:
    CALLS[name] += 1
    return {"name": name, "score": (amount * len(name)) % 97 / 97}


async def fails_first(value: Any, ctx: StepContext) -> Any:
    CALLS["fails_first"] += 1
    if ctx.attempt == 1:
        raise ConnectionError("transient")
    return value


async def broken(**_: Any) -> None:
    CALLS["broken"] += 1
    raise RuntimeError("the primary is down")


async def echo(value: Any) -> Any:
    CALLS["echo"] += 1
    return value


def plan(kind: str) -> list[dict[str, Any]]:
    CALLS["plan"] += 1
    if kind == "personal":
        return [{"worker": "similar", "input": {"sku": s}} for s in ("a", "b", "c")]
    return [{"worker": "trending", "input": {}}]


async def similar(sku: str) -> str:
    CALLS["similar"] += 1
    return f"like-{sku}"


async def trending() -> str:
    CALLS["trending"] += 1
    return "top"


def draft(previous: str | None) -> str:
    CALLS["draft"] += 1
    return "v" if previous is None else previous + "v"


def synth(results: list[dict[str, Any]]) -> list[str]:
    CALLS["synth"] += 1
    return [r["output"] for r in results]
