"""Listing and reading the served workflows; invalid files are skipped, with located errors."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from podium.api import create_app
from podium.config import Settings
from tests.api.support import TOKEN, serving


async def test_list_workflows(client: httpx.AsyncClient, workflows_dir: Path) -> None:
    response = await client.get("/api/workflows")
    assert response.status_code == 200
    listed = {w["name"]: w for w in response.json()}
    assert sorted(listed) == ["gated", "hello", "payout"]  # broken.yaml is skipped
    assert listed["hello"] == {
        "name": "hello",
        "description": "Greets someone, then checks the greeting two ways at once.",
        "version": 1,
        "inputs": {
            "name": {
                "type": "string",
                "description": "Who to greet.",
                "required": False,
                "default": "world",
            }
        },
        "file": str(workflows_dir / "hello.yaml"),
    }
    assert listed["payout"]["inputs"]["amount"] == {
        "type": "integer",
        "description": "",
        "required": True,
        "default": None,
    }


async def test_get_workflow_with_its_diagram(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/workflows/hello")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "hello"
    assert body["diagram"].startswith("flowchart TD")
    assert "greet" in body["diagram"]


async def test_unknown_workflow_is_a_404_naming_the_served_ones(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/workflows/helo")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "type": "WorkflowNotFound",
            "message": "no workflow named 'helo' (served: gated, hello, payout)",
        }
    }


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_invalid_and_duplicate_files_are_skipped_with_located_errors(
    settings: Settings, workflows_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (workflows_dir / "hello_again.yaml").write_text(
        (workflows_dir / "hello.yaml").read_text(encoding="utf-8")
    )
    (workflows_dir / "notes.txt").write_text("not a workflow")
    caplog.set_level(logging.INFO, logger="podium.api")
    app = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(app) as client:
        names = [w["name"] for w in (await client.get("/api/workflows")).json()]
    assert names == ["gated", "hello", "payout"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    broken = next(m for m in errors if "broken.yaml" in m)
    # located: file:line:column, and what is wrong
    assert f"{workflows_dir / 'broken.yaml'}:5:" in broken
    assert "no step has id 'nope'" in broken
    duplicate = next(m for m in errors if "hello_again.yaml" in m)
    assert "the name 'hello' is already taken" in duplicate
    assert not any("notes.txt" in m for m in errors)
    assert any("serving 3 workflow(s)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_a_missing_directory_serves_nothing(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, workflows_dir=tmp_path / "nowhere", admin_token=TOKEN)
    async with serving(app) as client:
        assert (await client.get("/api/workflows")).json() == []
    assert "workflows directory not found" in caplog.text


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_no_directory_serves_nothing(settings: Settings) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app) as client:
        assert (await client.get("/api/workflows")).json() == []
        assert (await client.get("/healthz")).json() == {"status": "ok"}


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_the_shipped_examples_directory_serves_every_seed_workflow(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, workflows_dir=EXAMPLES, admin_token=TOKEN)
    async with serving(app) as client:
        names = [w["name"] for w in (await client.get("/api/workflows")).json()]
    # top-level files and each example's workflow.yaml; the gateway config is no workflow
    assert names == [
        "content_moderation",
        "customer_service",
        "document_processing",
        "fraud_detection",
        "hello",
        "insurance_claim",
        "recommendations",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
