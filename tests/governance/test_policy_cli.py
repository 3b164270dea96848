"""``podium policy check`` and ``podium policy explain``, run through the Typer sub-app."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podium.cli.policy import DENIED_EXIT, INVALID_EXIT, policy_app
from podium.governance.policy import Policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "governance" / "policy.yaml"

runner = CliRunner()


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    file = tmp_path / "bad.yaml"
    file.write_text(
        textwrap.dedent(
            """\
            policy: acme
            rules:
              - id: eng
                when: {teams: []}
                allow: {modles: ["openai/*"]}
              - id: eng
            pii:
              entities: [EMAIL, PASSPORT]
            """
        )
    )
    return file


def test_check_prints_the_id_version_and_rules() -> None:
    result = runner.invoke(policy_app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    policy = Policy.load(EXAMPLE)
    first = result.output.splitlines()[0]
    assert first == f"✔ {EXAMPLE}: policy acme version {policy.version}, revision 7"
    assert f"sha256 {policy.sha256}" in result.output
    for rule in policy.spec.rules:
        assert rule.id in result.output
    for ceiling in policy.spec.ceilings:
        assert ceiling.id in result.output
    for retention in policy.retention:
        assert retention.id in result.output
    assert "internal (default)" in result.output


def test_check_lists_every_located_problem_and_exits_1(bad_file: Path) -> None:
    result = runner.invoke(policy_app, ["check", str(bad_file)])
    assert result.exit_code == INVALID_EXIT == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "invalid policy: 4 problems"
    assert lines[1:] == [
        f"{bad_file}:4:12: rules.0.when.teams: 'teams' needs at least 1 item "
        "(list them under 'teams:' with '- ')",
        f"{bad_file}:5:13: rules.0.allow.modles: unknown key 'modles' (did you mean 'models'?)",
        f"{bad_file}:6:5: rules.1: rule 'eng' neither allows nor denies anything "
        "(add 'allow: {models: [...]}' or 'deny: {models: [...]}')",
        f"{bad_file}:8:21: pii.entities.1: unknown PII entity 'PASSPORT' "
        "(known: EMAIL, PHONE, CREDIT_CARD, IBAN, NATIONAL_ID, IP_ADDRESS, PERSON, LOCATION)",
    ]
    assert result.stdout == ""


def test_check_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(policy_app, ["check", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1
    assert "cannot read the policy" in result.stderr


def test_explain_an_allowed_call() -> None:
    result = runner.invoke(
        policy_app,
        [
            "explain",
            str(EXAMPLE),
            "--team",
            "support",
            "--project",
            "returns-eu",
            "--model",
            "anthropic/claude-sonnet-4-6",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ALLOWED by rule support-assistant"
    version = Policy.load(EXAMPLE).version
    assert lines[1] == (
        f"policy acme ({version}) rule support-assistant allows team support in project "
        "returns-eu the model anthropic/claude-sonnet-4-6"
    )
    assert "ceiling: support-small-calls (max output tokens: 1024, max cost per call: $0.05)" in (
        result.output
    )
    assert "data class: internal → hosted, local" in result.output


def test_explain_a_denied_call_exits_3() -> None:
    result = runner.invoke(
        policy_app, ["explain", str(EXAMPLE), "--team", "interns", "--model", "openai/o3"]
    )
    assert result.exit_code == DENIED_EXIT == 3
    assert result.output.splitlines()[0] == "DENIED by rule interns-no-premium"
    decided = [line for line in result.output.splitlines() if "◀" in line]
    assert len(decided) == 1
    assert "interns-no-premium" in decided[0]


def test_explain_judges_a_deployment_with_the_data_class() -> None:
    base = ["explain", str(EXAMPLE), "--team", "eng", "--model", "openai/gpt-4o"]
    hosted = runner.invoke(policy_app, [*base, "--provider", "openai"])
    assert hosted.exit_code == 0, hosted.output
    assert hosted.output.splitlines()[0] == "ALLOWED by rule eng-hosted"
    confidential = runner.invoke(
        policy_app, [*base, "--provider", "openai", "--classification", "confidential"]
    )
    assert confidential.exit_code == DENIED_EXIT
    lines = confidential.output.splitlines()
    assert lines[0] == "DENIED by rule classification"
    assert lines[1].endswith(": confidential data may not go to hosted models")
    other = runner.invoke(policy_app, [*base, "--provider", "gemini"])
    assert other.exit_code == DENIED_EXIT
    assert other.output.splitlines()[0] == "DENIED by rule default-deny"
    assert "through gemini" in other.output


def test_explain_an_unknown_class_and_a_bad_file(bad_file: Path) -> None:
    unknown = runner.invoke(
        policy_app,
        ["explain", str(EXAMPLE), "--model", "local/x", "--classification", "secret"],
    )
    assert unknown.exit_code == DENIED_EXIT
    assert unknown.output.splitlines()[0] == "DENIED by rule unknown-classification"
    bad = runner.invoke(policy_app, ["explain", str(bad_file), "--model", "x"])
    assert bad.exit_code == INVALID_EXIT
    assert f"{bad_file}:4:12: rules.0.when.teams" in bad.stderr
