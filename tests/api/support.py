"""Helpers shared by the API tests: served workflow files, an in-process client, polling."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-a9f3c1d2e8b7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FINAL = ("completed", "failed", "cancelled")
POLL_SECONDS = 15.0

STEPS = """\
import asyncio
import pathlib


def assess(amount):
    return {"amount": amount, "large": amount > 1000}


def pay(amount):
    return f"paid {amount}"


async def gate(flag):
    pathlib.Path(flag + ".started").touch()
    while not pathlib.Path(flag).exists():
        await asyncio.sleep(0.01)
    return "opened"
"""

REVIEW = """\
name: payout
description: Pays out a claim once a human signs it off.
inputs:
  amount: integer
steps:
  - id: assess
    call: ./steps.py:assess
    input: {amount: "{{ inputs.amount }}"}
  - id: sign_off
    review: "Pay {{ inputs.amount }}?"
    data: "{{ steps.assess.output }}"
  - id: pay
    call: ./steps.py:pay
    input: {amount: "{{ inputs.amount }}"}
output:
  paid: "{{ steps.pay.output }}"
  reviewer: "{{ steps.sign_off.output.by }}"
"""

GATED = """\
name: gated
description: Waits until a flag file exists.
inputs:
  flag: string
steps:
  - id: wait
    call: ./steps.py:gate
    input: {flag: "{{ inputs.flag }}"}
output: "{{ steps.wait.output }}"
"""

BROKEN = """\
name: broken
steps:
  - id: first
    call: ./steps.py:assess
    input: {amount: "{{ steps.nope.output }}"}
"""


def write_workflows(directory: Path) -> Path:
    """hello (the shipped example), payout (a human review), gated, and one invalid file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("hello.yaml", "hello_steps.py"):
        shutil.copy(ROOT / "examples" / name, directory / name)
    (directory / "steps.py").write_text(STEPS)
    (directory / "payout.yaml").write_text(REVIEW)
    (directory / "gated.yaml").write_text(GATED)
    (directory / "broken.yaml").write_text(BROKEN)
    return directory


@asynccontextmanager
async def serving(
    app: FastAPI, *, headers: dict[str, str] | None = None, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://podium.test",
            headers=AUTH if headers is None else headers,
        ) as client:
            yield client


async def wait_for(client: httpx.AsyncClient, run_id: str, *statuses: str) -> dict[str, Any]:
    """Poll ``GET /api/runs/{run_id}`` until its status is one of ``statuses``."""
    body: dict[str, Any] = {}
    try:
        async with asyncio.timeout(POLL_SECONDS):
            while body.get("status") not in statuses:
                await asyncio.sleep(0.01)
                response = await client.get(f"/api/runs/{run_id}")
                assert response.status_code == 200, response.text
                body = response.json()
    except TimeoutError:
        raise AssertionError(
            f"run {run_id} stayed {body.get('status')}, wanted {statuses}"
        ) from None
    return body


async def wait_for_gate(flag: Path) -> None:
    """Until the ``gated`` workflow's step runs (it touches ``<flag>.started``)."""
    started = flag.with_name(flag.name + ".started")
    try:
        async with asyncio.timeout(POLL_SECONDS):
            while not started.exists():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"the gate step waiting on {flag} never ran") from None
