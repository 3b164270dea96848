"""Shared fixtures for provider tests: API simulators on loopback, started once per session.

``use_simulator(SimulatorClass, **options)`` returns a running simulator, reset (no recorded
requests, faults or scripted replies) for the calling test. A simulator is started the first time
a class/options pair is asked for and stopped when the session ends, so each test pays only for a
reset. Servers run in their own thread and event loop, so they serve async and sync clients alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from podium.testing.simulators.server import Simulator

SimT = TypeVar("SimT", bound=Simulator)


@pytest.fixture(scope="session")
def _simulator_pool() -> Iterator[dict[tuple[type[Simulator], str], Simulator]]:
    pool: dict[tuple[type[Simulator], str], Simulator] = {}
    yield pool
    for sim in pool.values():
        sim.stop()


@pytest.fixture
def use_simulator(
    _simulator_pool: dict[tuple[type[Simulator], str], Simulator],
) -> Callable[..., Simulator]:
    """A running, freshly reset simulator of a class, with constructor options."""

    def use(cls: type[SimT], **options: Any) -> SimT:
        key = (cls, repr(sorted(options.items())))
        sim = _simulator_pool.get(key)
        if sim is None:
            sim = cls(**options)
            sim.start()
            _simulator_pool[key] = sim
        sim.reset()
        return cast(SimT, sim)

    return use
