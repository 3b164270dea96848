"""What a running step can see: ``StepContext`` (handed to user functions) and ``RunState``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podium.types import Clock, ModelGateway, StepExecutor
from podium.workflows.journal import Journal, Replay

if TYPE_CHECKING:
    from podium.types import Store


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step function that declares a ``ctx`` parameter.

    ``idempotency_key`` is stable for the step across retries and across crash/resume: pass it
    to external systems so they can drop duplicates (``INSERT … ON CONFLICT DO NOTHING``, an
    ``Idempotency-Key`` header, …). That is how an interrupted step's effect still lands once.
    """

    run_id: str
    step: str
    """The step's path in the run, e.g. ``claim/verify`` or ``docs[2]/ocr``."""
    attempt: int
    """1 for the first attempt."""
    idempotency_key: str
    clock: Clock


@dataclass(slots=True)
class RunState:
    """Everything the nodes of one run share."""

    run_id: str
    journal: Journal
    replay: Replay
    clock: Clock
    executor: StepExecutor
    store: Store
    gateway: ModelGateway | None
    max_concurrency: int
    rng: random.Random = field(default_factory=random.Random)
    signals: dict[str, str] | None = None
    """Signals loaded lazily the first time a review step needs them."""
    waiting: list[str] = field(default_factory=list)

    def step_context(self, path: str, attempt: int) -> StepContext:
        return StepContext(self.run_id, path, attempt, f"{self.run_id}/{path}", self.clock)


Namespace = dict[str, Any]
"""An expression namespace: ``inputs``, ``steps`` and frame variables (``item``, ``task``…)."""
