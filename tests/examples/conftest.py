"""Shared fixtures of the example tests: run an example workflow offline, as a user would.

Each run goes through :func:`podium.run` on a fresh SQLite store, with settings built from an
environment that holds no provider key, so a hosted model step always falls back to the local
model (whatever keys the machine running the tests has).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import podium
from podium.config import Settings
from podium.workflows.engine import RunResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The repository's ``examples/`` directory."""

RunExample = Callable[[str, dict[str, Any]], Awaitable[RunResult]]
"""``await run_example("customer_service", {"email": "…"})`` → the finished run."""


@pytest.fixture
def run_example(tmp_path: Path) -> RunExample:
    """Run ``examples/<slug>/workflow.yaml`` with inputs and return the result (check ``ok``)."""
    settings = Settings.from_env({"PODIUM_HOME": str(tmp_path / "home")})

    async def run(slug: str, inputs: dict[str, Any]) -> RunResult:
        return await podium.run(
            EXAMPLES / slug / "workflow.yaml",
            inputs,
            store=f"sqlite:///{tmp_path / 'runs.db'}",
            settings=settings,
        )

    return run


def load_module(slug: str, name: str) -> ModuleType:
    """Import ``examples/<slug>/<name>.py`` (example directories are not packages)."""
    path = EXAMPLES / slug / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{slug}_{name}", path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
