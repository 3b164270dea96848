"""The public API is curated: ``podium.__all__`` is pinned, and every name in it resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import podium
from podium.workflows.spec import json_schema

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "Clock",
    "DefinitionError",
    "DefinitionIssue",
    "Engine",
    "MemoryStore",
    "ModelCall",
    "ModelError",
    "ModelGateway",
    "ModelReply",
    "NonDeterminism",
    "Plan",
    "PodiumError",
    "QuorumNotMet",
    "Registry",
    "RetryPolicy",
    "ReviewRejected",
    "RunCancelled",
    "RunNotFound",
    "RunResult",
    "SagaAborted",
    "Settings",
    "StepContext",
    "StepFailed",
    "StepTimeout",
    "Store",
    "StoreError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "dsl",
    "load_text",
    "load_workflow",
    "open_store",
    "plan",
    "run",
    "run_sync",
}


def test_all_is_pinned() -> None:
    assert set(podium.__all__) == EXPECTED
    assert sorted(podium.__all__) == podium.__all__


def test_every_exported_name_resolves() -> None:
    for name in podium.__all__:
        assert getattr(podium, name) is not None, name


def test_every_error_derives_from_the_root() -> None:
    errors = [
        getattr(podium, n) for n in podium.__all__ if n.endswith(("Error", "Failed", "Found"))
    ]
    errors += [podium.NonDeterminism, podium.QuorumNotMet, podium.StepTimeout]
    for cls in errors:
        assert issubclass(cls, podium.PodiumError), cls


def test_published_json_schema_is_current() -> None:
    published = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    assert published == json_schema(), (
        "regenerate with: podium schema > schemas/workflow.schema.json"
    )


def test_import_is_light() -> None:
    """Importing podium must not drag in the CLI stack or a database driver."""
    code = "import sys, podium; print(','.join(m for m in ('typer','rich','psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
