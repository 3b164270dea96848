"""Fixtures of the API tests: each test runs against the memory and the SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from podium.api import create_app
from podium.config import Settings
from tests.api.support import TOKEN, serving, write_workflows


@pytest.fixture
def workflows_dir(tmp_path: Path) -> Path:
    return write_workflows(tmp_path / "workflows")


@pytest.fixture(params=["memory", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'podium.db'}"
    return Settings(home=tmp_path / ".podium", database_url=url)


@pytest.fixture
async def client(settings: Settings, workflows_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a started app, sending the admin token."""
    app = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(app) as c:
        yield c
