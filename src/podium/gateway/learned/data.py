"""Routing data: per prompt, which models answered it well and what each call cost.

One JSON object per line (the RouterBench-style file the benchmarks read)::

    {"id": "arc-challenge.test.0", "task": "arc-challenge", "prompt": "...",
     "models": {"gpt-4-1106-preview": {"correct": 1, "cost_usd": 0.00504}, ...}}

``task`` is optional (the router then learns without a task tag). ``correct`` is a quality in
[0, 1] (0/1 for exact-match benchmarks). ``cost_usd`` is read from the JSON *text* as a
``Decimal``; a file without costs (e.g. RouteLLM's correctness-only data) needs a ``price``
function that prices each call (:func:`load_examples`). Every row must score the same models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from podium.errors import ConfigError

__all__ = ["Example", "Outcome", "PriceFn", "RouterDataError", "load_examples", "parse_examples"]


class RouterDataError(ConfigError):
    """A routing data file is unreadable or malformed; the message names ``file:line``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one model did on one prompt."""

    quality: float
    """1.0 answered correctly … 0.0 wrong."""
    cost: Decimal
    """What the call cost (USD)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One prompt and every model's outcome on it."""

    id: str
    prompt: str
    outcomes: Mapping[str, Outcome]
    task: str | None = None


PriceFn = Callable[[str, str], Decimal]
"""Prices a call that the data has no cost for: ``(model, prompt) -> USD``."""


def load_examples(path: Path, *, price: PriceFn | None = None) -> list[Example]:
    """Read a routing data file (see the module docstring).

    Raises:
        RouterDataError: The file cannot be read, a line is not a valid row, a cost is missing
            and no ``price`` was given, or rows score different models.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RouterDataError(f"{path}: cannot read the routing data: {exc}") from None
    return parse_examples(text.splitlines(), source=str(path), price=price)


def parse_examples(
    lines: Iterable[str], *, source: str = "<data>", price: PriceFn | None = None
) -> list[Example]:
    """Parse JSONL ``lines`` (blank lines skipped); ``source`` names them in errors."""
    examples: list[Example] = []
    models: tuple[str, ...] | None = None
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            row = json.loads(line, parse_float=Decimal, parse_int=Decimal)
        except ValueError as exc:
            raise RouterDataError(f"{where}: not JSON ({exc})") from None
        example = _example(row, where, price)
        if example.id in seen:
            raise RouterDataError(
                f"{where}: id {example.id!r} repeats line {seen[example.id]}",
            )
        seen[example.id] = n
        names = tuple(sorted(example.outcomes))
        if models is None:
            models = names
        elif names != models:
            missing = sorted(set(models) - set(names))
            extra = sorted(set(names) - set(models))
            raise RouterDataError(
                f"{where}: row scores other models than line 1 "
                f"(missing {missing or 'none'}, extra {extra or 'none'}); every row must score "
                "the same models"
            )
        examples.append(example)
    if not examples:
        raise RouterDataError(f"{source}: no rows")
    if len(models or ()) < 2:
        raise RouterDataError(f"{source}: routing needs outcomes of two models or more")
    return examples


def _example(row: Any, where: str, price: PriceFn | None) -> Example:
    if not isinstance(row, dict):
        raise RouterDataError(f"{where}: a row must be a JSON object")
    rid, prompt, task, scored = row.get("id"), row.get("prompt"), row.get("task"), row.get("models")
    if not isinstance(rid, str | Decimal) or str(rid) == "":
        raise RouterDataError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(prompt, str) or not prompt:
        raise RouterDataError(f"{where}: 'prompt' must be a non-empty string")
    if task is not None and not isinstance(task, str):
        raise RouterDataError(f"{where}: 'task' must be a string when given")
    if not isinstance(scored, dict) or not scored:
        raise RouterDataError(f"{where}: 'models' must map model names to outcomes")
    outcomes = {
        str(name): _outcome(name, value, prompt, f"{where}: models.{name}", price)
        for name, value in scored.items()
    }
    return Example(str(rid), prompt, outcomes, task)


def _outcome(model: str, value: Any, prompt: str, where: str, price: PriceFn | None) -> Outcome:
    if not isinstance(value, dict):
        raise RouterDataError(f"{where}: must be an object with 'correct' and 'cost_usd'")
    quality = value.get("correct", value.get("quality"))
    if not isinstance(quality, Decimal) or not 0 <= quality <= 1:
        raise RouterDataError(f"{where}.correct: must be a number in [0, 1], not {quality!r}")
    cost = value.get("cost_usd")
    if cost is None:
        if price is None:
            raise RouterDataError(
                f"{where}: no 'cost_usd'; price such data from token counts (a price function)"
            )
        cost = price(model, prompt)
    if not isinstance(cost, Decimal) or not cost.is_finite() or cost < 0:
        raise RouterDataError(f"{where}.cost_usd: must be a number ≥ 0, not {cost!r}")
    return Outcome(float(quality), cost)


def model_names(examples: Sequence[Example]) -> tuple[str, ...]:
    """The models every example scores, sorted."""
    return tuple(sorted(examples[0].outcomes))
