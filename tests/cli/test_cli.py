"""The ``podium`` command line, as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podium.cli import app

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "examples" / "hello.yaml")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path / ".podium"))
    monkeypatch.setenv("COLUMNS", "160")
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_run_prints_the_result_and_records_the_run(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", HELLO, "--input", "name=Ada", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["output"] == {"greeting": "Hello, Ada!", "length": 11, "shouted": "HELLO, ADA!"}

    listed = cli("runs")
    assert data["run_id"] in listed.stdout
    assert "completed" in listed.stdout

    shown = cli("show", data["run_id"])
    assert shown.exit_code == 0
    for step in ("greet", "checks/length", "checks/shout"):
        assert step in shown.stdout
    detail = json.loads(cli("show", data["run_id"], "--json").stdout)
    assert [s["step"] for s in detail["steps"]][:1] == ["greet"]
    assert detail["inputs"] == {"name": "Ada"}


def test_run_human_output(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", HELLO)
    assert result.exit_code == 0
    assert "completed" in result.stdout
    assert "Hello, world!" in result.stdout  # the declared default input


def test_bad_inputs_are_refused_precisely(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", HELLO, "--input", "nmae=Ada")
    assert result.exit_code == 2
    assert "unknown input 'nmae' (declared: name)" in result.stderr
    result = cli("run", HELLO, "--input", "oops")
    assert result.exit_code == 2
    assert "--input takes key=value" in result.output


def test_validate_reports_file_line_and_hint(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - id: a\n    cal: x.y:z\n")
    result = cli("validate", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3:5" in result.stderr
    assert "did you mean 'call'" in result.stderr
    ok = cli("validate", HELLO)
    assert ok.exit_code == 0
    assert "is valid" in ok.stdout


def test_diagram_and_schema(cli) -> None:  # type: ignore[no-untyped-def]
    diagram = cli("diagram", HELLO)
    assert diagram.stdout.startswith("flowchart TD")
    assert "checks: parallel" in diagram.stdout
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "Podium workflow"
    assert "steps" in schema["required"]


def test_review_approve_and_cancel_flow(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wf = tmp_path / "review.yaml"
    (tmp_path / "s.py").write_text("def one():\n    return 1\n")
    wf.write_text(
        "name: rv\nsteps:\n  - {id: a, call: ./s.py:one}\n  - {id: ok, review: 'Go on?'}\n"
        "output: '{{ steps.ok.output.comment }}'\n"
    )
    started = json.loads(cli("run", str(wf), "--json").stdout)
    assert started["status"] == "waiting"
    wrong = cli("approve", started["run_id"], "nope")
    assert wrong.exit_code == 2
    assert "not waiting for a review at 'nope'" in wrong.stderr
    done = cli("approve", started["run_id"], "ok", "--comment", "fine", "--json")
    assert json.loads(done.stdout)["output"] == "fine"

    second = json.loads(cli("run", str(wf), "--json").stdout)
    cancelled = cli("cancel", second["run_id"])
    assert "cancelled" in cancelled.stdout
    assert "nothing to resume" in cli("resume", "--all").stdout


def test_unknown_run_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("show", "does-not-exist")
    assert result.exit_code == 2
    assert "no run with id 'does-not-exist'" in result.stderr


def test_bad_store_url_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("runs", "--db", "mysql://root:secret@localhost/x")
    assert result.exit_code == 2
    assert "unsupported store URL scheme 'mysql'" in result.stderr
    assert "secret" not in result.stderr


def test_run_a_python_defined_workflow_and_resume_it(cli) -> None:  # type: ignore[no-untyped-def]
    target = f"{ROOT / 'examples' / 'python_api.py'}:workflow"
    result = cli("run", target, "--input", "text=a bb ccc", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == {"longest": "ccc", "count": 3}
    again = cli("resume", data["run_id"], "--json")  # a finished run reports, runs nothing
    assert json.loads(again.stdout)["output"] == data["output"]
    missing = cli("run", f"{ROOT / 'examples' / 'python_api.py'}:nope")
    assert missing.exit_code == 2
    assert "has no attribute 'nope'" in missing.output
