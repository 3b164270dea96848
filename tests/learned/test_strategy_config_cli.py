"""The gateway's ``strategy: learned``: ranking, its speed, its configuration, and the CLI."""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podium.cli.app import app
from podium.gateway.config import GatewayConfig, GatewayConfigError
from podium.gateway.learned import artefact
from podium.gateway.learned.data import Example
from podium.gateway.learned.policy import CurvePoint, Policy, mix_for_target
from podium.gateway.learned.router import TrainedRouter, TrainOptions
from podium.gateway.learned.strategy import LearnedStrategy, UnreachableTarget
from podium.gateway.learned.training import train
from podium.gateway.routing import ModelGroup, Router, RouteRequest
from podium.models.base import ChatRequest, Message
from podium.models.catalog import Catalog
from podium.testing import FakeClock

CHEAP, MID, PREMIUM = "openai/gpt-4.1-nano", "openai/gpt-4o-mini", "openai/gpt-4o"


@pytest.fixture(scope="module")
def router(examples: list[Example]) -> TrainedRouter:
    # the classifiers alone: the threshold below reads their unshrunk probabilities
    trained, _ = train(examples, TrainOptions(hash_dims=64, c=1.0, folds=4, prior_blend=1.0))
    return trained


@pytest.fixture(scope="module")
def artefact_file(router: TrainedRouter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("art") / "router.json"
    artefact.save(router, path)
    return path


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


MAPPING = {CHEAP: "cheap", MID: "mid", PREMIUM: "premium"}


def request(examples: list[Example], i: int) -> RouteRequest:
    e = examples[i]
    return RouteRequest(
        ChatRequest(model="smart", messages=[Message("user", e.prompt)]),
        metadata={"task": e.task or ""},
    )


def group_router(
    strategy: LearnedStrategy, catalog: Catalog, models: tuple[str, ...] = (CHEAP, MID, PREMIUM)
) -> Router:
    from podium.gateway.routing import Deployment

    deployments = tuple(Deployment(id=m, info=catalog.get(m)) for m in models)
    return Router([ModelGroup("smart", deployments, strategy)], clock=FakeClock())


def test_easy_questions_go_cheap_and_hard_ones_premium(
    router: TrainedRouter, examples: list[Example], catalog: Catalog
) -> None:
    strategy = LearnedStrategy(router, Policy("threshold", threshold=0.8), models=MAPPING)
    gw = group_router(strategy, catalog)
    easy = gw.route(request(examples, 0))  # i % 3 == 0: easy
    medium = gw.route(request(examples, 1))
    hard = gw.route(request(examples, 2))
    assert [easy.chosen.model, medium.chosen.model, hard.chosen.model] == [CHEAP, MID, PREMIUM]
    assert easy.strategy == "learned"
    assert "p=" in easy.scores[CHEAP]
    assert "learned (threshold" in easy.reason
    assert len(easy.ranked) == 3
    frugal = LearnedStrategy(router, Policy("tradeoff", lam=50.0), models=MAPPING)
    assert group_router(frugal, catalog).route(request(examples, 2)).chosen.model == CHEAP


def test_unknown_deployments_go_last_and_missing_ones_are_skipped(
    router: TrainedRouter, examples: list[Example], catalog: Catalog
) -> None:
    strategy = LearnedStrategy(
        router, Policy("tradeoff", lam=0.05), models={CHEAP: "cheap", PREMIUM: "premium"}
    )
    gw = group_router(strategy, catalog, ("openai/gpt-4.1", PREMIUM, CHEAP))
    decision = gw.route(request(examples, 2))
    assert [d.model for d in decision.ranked][-1] == "openai/gpt-4.1"
    assert decision.scores["openai/gpt-4.1"] == "not in the router artefact"
    only_cheap = group_router(strategy, catalog, (CHEAP,)).route(request(examples, 2))
    assert only_cheap.chosen.model == CHEAP


def test_a_target_policy_reads_its_lambda_from_the_curve(router: TrainedRouter) -> None:
    strategy = LearnedStrategy(router, Policy("target", target=0.9), models=MAPPING)
    assert strategy.policy.lam >= 0
    flat = dataclasses.replace(router, curve=(CurvePoint(0.0, 0.9, 1.0), CurvePoint(1.0, 0.7, 0.1)))
    assert LearnedStrategy(flat, Policy("target", target=0.9)).policy.lam == 0.0
    # between two points of the curve: half the requests on each (0.8 is halfway)
    mixed = LearnedStrategy(flat, Policy("target", target=0.8)).policy
    assert (mixed.lam, mixed.lam_alt, mixed.share_alt) == (1.0, 0.0, 0.5)
    with pytest.raises(UnreachableTarget, match=r"reaches 0.95 .*\(its best is 0.900\)"):
        LearnedStrategy(flat, Policy("target", target=0.95), models=MAPPING)


def test_an_unreachable_target_is_a_config_error(
    router: TrainedRouter, catalog: Catalog, tmp_path: Path
) -> None:
    flat = tmp_path / "flat.json"
    artefact.save(dataclasses.replace(router, curve=(CurvePoint(0.0, 0.9, 1.0),)), flat)
    learned = (
        f"    learned:\n      artefact: ART\n      target: 0.95\n      models: {{{CHEAP}: cheap}}"
    )
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.parse(config_text(flat, learned), source="gw.yaml", catalog=catalog)
    (issue,) = caught.value.issues
    assert (issue.key, issue.line) == ("model_groups.0.learned.target", 6)
    assert "no cross-validated operating point reaches 0.95" in issue.message


def test_a_router_with_embeddings_needs_an_embedder(router: TrainedRouter) -> None:
    spec = dataclasses.replace(router.spec, embeddings=True)
    with pytest.raises(ValueError, match="pass an embedder"):
        LearnedStrategy(dataclasses.replace(router, spec=spec), Policy("tradeoff"))


def test_routing_takes_well_under_five_milliseconds(
    router: TrainedRouter, examples: list[Example], catalog: Catalog
) -> None:
    gw = group_router(
        LearnedStrategy(router, Policy("tradeoff", lam=0.05), models=MAPPING), catalog
    )
    times = []
    for i in range(60):
        req = request(examples, i)
        start = time.perf_counter()
        gw.route(req)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005


def config_text(artefact_path: Path, learned: str, strategy: str = "learned") -> str:
    return f"""\
model_groups:
  - name: smart
    strategy: {strategy}
{learned.replace("ART", str(artefact_path))}
    deployments:
      - {{model: {CHEAP}}}
      - {{model: {MID}}}
      - {{model: {PREMIUM}}}
"""


def test_a_learned_group_loads_from_the_config(
    artefact_file: Path, catalog: Catalog, examples: list[Example]
) -> None:
    learned = f"""    learned:
      artefact: ART
      policy: threshold
      threshold: 0.8
      models: {{{CHEAP}: cheap, {MID}: mid, {PREMIUM}: premium}}"""
    config = GatewayConfig.parse(config_text(artefact_file, learned), catalog=catalog)
    (group,) = config.model_groups(catalog, rng=random.Random(0))
    assert isinstance(group.strategy, LearnedStrategy)
    gw = Router([group], clock=FakeClock())
    assert gw.route(request(examples, 0)).chosen.model == CHEAP


def test_a_relative_artefact_path_starts_from_the_config_file(
    artefact_file: Path, catalog: Catalog
) -> None:
    config_path = artefact_file.parent / "gateway.yaml"
    learned = f"    learned:\n      artefact: router.json\n      models: {{{CHEAP}: cheap}}"
    config_path.write_text(config_text(artefact_file, learned))
    config = GatewayConfig.load(config_path, catalog=catalog)
    assert config.groups[0].learned is not None
    assert config.groups[0].learned.artefact == artefact_file


@pytest.mark.parametrize(
    ("learned", "strategy", "line", "key", "message"),
    [
        ("", "learned", 3, "model_groups.0.strategy", "strategy 'learned' needs a trained router"),
        (
            "    learned: {artefact: ART}",
            "priority",
            4,
            "model_groups.0.learned",
            "'learned' options apply only to strategy 'learned'",
        ),
        (
            "    learned: {artefact: nowhere.json}",
            "learned",
            4,
            "model_groups.0.learned.artefact",
            "no such file",
        ),
        (
            "    learned: {artefact: ART, policy: target, threshold: 0.5}",
            "learned",
            4,
            "model_groups.0.learned.threshold",
            "'threshold' applies to policy 'threshold', not 'target'",
        ),
        (
            "    learned: {artefact: ART, policy: tradeoff, lambda: -1}",
            "learned",
            4,
            "model_groups.0.learned.lambda",
            "must be ≥ 0",
        ),
        (
            "    learned: {artefact: ART, models: {x: premiun}}",
            "learned",
            4,
            "model_groups.0.learned.models.x",
            "the artefact has no model 'premiun'",
        ),
        (
            "    learned: {artefact: ART}",
            "learned",
            4,
            "model_groups.0.learned.models",
            "the router knows none of this group's deployments",
        ),
        (
            "    learned: {artefact: ART, polcy: target}",
            "learned",
            4,
            "model_groups.0.learned.polcy",
            "",
        ),
    ],
)
def test_bad_learned_configs_are_reported_at_their_line(
    artefact_file: Path,
    catalog: Catalog,
    learned: str,
    strategy: str,
    line: int,
    key: str,
    message: str,
) -> None:
    text = config_text(artefact_file, learned, strategy)
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.parse(text, source="gw.yaml", catalog=catalog, base_dir=artefact_file.parent)
    (issue,) = caught.value.issues
    assert issue.file == "gw.yaml"
    assert issue.key == key, str(caught.value)
    assert issue.line == line, str(caught.value)
    assert message in issue.message
    assert str(caught.value).startswith(f"gw.yaml:{line}:")


def test_a_tampered_artefact_is_a_config_error(
    artefact_file: Path, catalog: Catalog, tmp_path: Path
) -> None:
    copy = tmp_path / "router.json"
    copy.write_text(artefact_file.read_text().replace('"premium": "premium"', '"premium": "mid"'))
    copy.with_suffix(".npz").write_bytes(artefact_file.with_suffix(".npz").read_bytes())
    with pytest.raises(GatewayConfigError, match="changed after training"):
        GatewayConfig.parse(config_text(copy, "    learned: {artefact: ART}"), catalog=catalog)


def test_route_train_and_eval(data_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "r.json"
    trained = runner.invoke(
        app,
        ["route", "train", str(data_file), "--out", str(out), "--hash-dims", "32", "--folds", "3"],
    )
    assert trained.exit_code == 0, trained.output
    flat = " ".join(trained.output.split())
    assert out.is_file()
    assert out.with_suffix(".npz").is_file()
    assert "cross-validated" in flat
    png = tmp_path / "curve.png"
    evaluated = runner.invoke(
        app,
        ["route", "eval", str(data_file), "--plot", str(png), "--hash-dims", "32", "--folds", "3"],
    )
    assert evaluated.exit_code == 0, evaluated.output
    text = " ".join(evaluated.output.split())
    assert "operating point the policy chooses" in text
    assert "per fold" in text
    assert "oracle" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    applied = runner.invoke(
        app,
        [
            "route",
            "eval",
            str(data_file),
            "--artefact",
            str(out),
            "--policy",
            "threshold",
            "--threshold",
            "0.6",
        ],
    )
    assert applied.exit_code == 0, applied.output
    assert "applied as trained" in " ".join(applied.output.split())
    resolved = mix_for_target(artefact.load(out).curve, 0.9)
    assert resolved is not None
    targeted = runner.invoke(
        app, ["route", "eval", str(data_file), "--artefact", str(out), "--target", "0.9"]
    )
    assert targeted.exit_code == 0, targeted.output
    assert resolved.describe() in " ".join(
        targeted.output.split()
    )  # the artefact's CV curve, not this data's


def test_route_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    result = CliRunner().invoke(app, ["route", "eval", str(bad)])
    assert result.exit_code == 2
    assert "bad.jsonl:1: not JSON" in " ".join(result.output.split())
