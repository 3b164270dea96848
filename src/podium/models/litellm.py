"""Import LiteLLM's public price map (``model_prices_and_context_window.json``) into the catalog.

Every number is read exactly: JSON numbers become ``Decimal`` from their text, never through a
float. LiteLLM's fields map onto :class:`~podium.models.catalog.Price` as follows:

============================================  ===============================================
LiteLLM                                       Podium
============================================  ===============================================
``input_cost_per_token``                      ``Price.input``
``output_cost_per_token``                     ``Price.output``
``cache_read_input_token_cost``               ``Price.cache_read``
``cache_creation_input_token_cost``           ``Price.cache_write``
``output_cost_per_reasoning_token``           ``Price.reasoning``
``*_above_<N>k_tokens``                       a ``PriceTier`` above ``N * 1000`` input tokens
``tiered_pricing`` (ranges)                   the first range as the base price, the rest tiers
``input_cost_per_character`` / ``_image`` /   ``per_character`` / ``per_image`` /
``_second`` / ``_request``                    ``per_second`` / ``per_request``
``max_input_tokens`` / ``max_output_tokens``  ``context_window`` / ``max_output``
``supports_function_calling`` / ``_vision``   capabilities ``tools`` / ``vision`` /
/ ``_response_schema``                        ``json`` (``supports_reasoning``: extra)
============================================  ===============================================

Batch, priority and flex variants are not list prices and are left out. Entries without any
price, and entries of modes Podium does not serve (image generation, rerank, …), are skipped and
counted by reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from podium.models.base import Capability
from podium.models.catalog import (
    Catalog,
    ModelInfo,
    Price,
    PriceTier,
    dump_catalog,
    load_yaml,
    model_to_dict,
    price_to_dict,
)

PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure",
    "azure_text": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex_ai-language-models": "gemini",
    "mistral": "mistral",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "xai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "fireworks_ai-embedding-models": "fireworks",
    "openrouter": "openrouter",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "perplexity": "perplexity",
}
"""LiteLLM's ``litellm_provider`` → Podium's provider name. Others keep LiteLLM's name."""

_SECONDARY = frozenset({"vertex_ai-language-models", "text-completion-openai", "azure_text"})
"""Providers whose entries yield to a first-party entry of the same Podium name."""

MODES: Mapping[str, frozenset[Capability]] = {
    "chat": frozenset({Capability.CHAT, Capability.STREAM}),
    "responses": frozenset({Capability.CHAT, Capability.STREAM}),
    "completion": frozenset({Capability.CHAT, Capability.STREAM}),
    "embedding": frozenset({Capability.EMBED}),
    "moderation": frozenset({Capability.MODERATE_TEXT}),
    "audio_transcription": frozenset({Capability.TRANSCRIBE}),
}
"""LiteLLM modes Podium serves, with the capabilities each implies."""

_FLAGS = {
    "supports_function_calling": Capability.TOOLS,
    "supports_vision": Capability.VISION,
    "supports_response_schema": Capability.JSON,
}
_BASE = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_character": "per_character",
    "input_cost_per_image": "per_image",
    "input_cost_per_second": "per_second",
    "input_cost_per_request": "per_request",
}
_TIER_KEY = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)_above_(\d+)k_tokens$"
)
_TIER_FIELD = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}
_FIREWORKS_PATH = "accounts/fireworks/models/"


@dataclass(frozen=True, slots=True)
class LiteLLMImport:
    """What a price map yielded."""

    models: tuple[ModelInfo, ...]
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Entries left out, by reason (``no price``, ``mode image_generation``, …)."""
    filtered: int = 0
    """Entries of providers not asked for."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


class _Skip(Exception):
    pass


def import_litellm(
    path: str | Path,
    *,
    effective_from: date,
    providers: set[str] | None = None,
    source: str | None = None,
) -> list[ModelInfo]:
    """The models of a LiteLLM price map, each with one price effective from ``effective_from``.

    Args:
        path: The JSON file.
        effective_from: The date the prices take effect.
        providers: Only these providers (Podium's or LiteLLM's names); all when ``None``.
        source: Recorded on each price; defaults to ``litellm:<file name>``.
    """
    return list(
        read_litellm(path, effective_from=effective_from, providers=providers, source=source).models
    )


def read_litellm(
    path: str | Path,
    *,
    effective_from: date,
    providers: set[str] | None = None,
    source: str | None = None,
) -> LiteLLMImport:
    """Like :func:`import_litellm`, also counting what was skipped and why."""
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"), parse_float=Decimal)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a LiteLLM price map is a JSON object of models")
    return convert(
        data,
        effective_from=effective_from,
        providers=providers,
        source=source or f"litellm:{p.name}",
    )


def convert(
    data: Mapping[str, Any],
    *,
    effective_from: date,
    providers: Iterable[str] | None = None,
    source: str = "litellm",
) -> LiteLLMImport:
    """Convert a parsed price map (numbers as ``Decimal``)."""
    wanted = set(providers) if providers is not None else None
    chosen: dict[str, tuple[bool, ModelInfo]] = {}
    skipped: Counter[str] = Counter()
    filtered = 0
    for key, entry in data.items():
        if not isinstance(entry, dict) or key == "sample_spec":
            skipped["malformed"] += 1
            continue
        litellm_provider = str(entry.get("litellm_provider", ""))
        provider = PROVIDERS.get(litellm_provider, litellm_provider)
        if wanted is not None and provider not in wanted and litellm_provider not in wanted:
            filtered += 1
            continue
        try:
            info = _model(key, entry, provider, effective_from, source)
        except _Skip as why:
            skipped[str(why)] += 1
            continue
        secondary = litellm_provider in _SECONDARY
        held = chosen.get(info.name)
        if held is not None:
            skipped["duplicate name"] += 1
            if not held[0] or secondary:
                continue
        chosen[info.name] = (secondary, info)
    models = tuple(info for _, info in sorted(chosen.values(), key=lambda t: t[1].name))
    return LiteLLMImport(models, dict(sorted(skipped.items())), filtered)


def _model(key: str, entry: Mapping[str, Any], provider: str, when: date, source: str) -> ModelInfo:
    mode = str(entry.get("mode"))
    if mode not in MODES:
        raise _Skip(f"mode {mode}")
    if not provider or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", provider):
        raise _Skip("malformed")
    price = _price(entry, when, source)
    model_id = _strip_prefix(key, entry.get("litellm_provider", ""), provider)
    short = model_id.removeprefix(_FIREWORKS_PATH) if provider == "fireworks" else model_id
    if not short or any(c.isspace() for c in short):
        raise _Skip("malformed")
    capabilities = set(MODES[mode])
    capabilities.update(cap for flag, cap in _FLAGS.items() if entry.get(flag) is True)
    extra = {"litellm": key}
    if mode in ("completion", "responses"):
        extra["api"] = mode
    if entry.get("supports_reasoning") is True:
        extra["reasoning"] = "true"
    if isinstance(entry.get("output_vector_size"), int):
        extra["dimensions"] = str(entry["output_vector_size"])
    if isinstance(entry.get("deprecation_date"), str):
        extra["deprecation_date"] = entry["deprecation_date"]
    return ModelInfo(
        name=f"{provider}/{short}",
        provider=provider,
        provider_model=model_id,
        capabilities=frozenset(capabilities),
        context_window=_tokens(entry.get("max_input_tokens")),
        max_output=_tokens(entry.get("max_output_tokens")),
        prices=(price,),
        extra=extra,
    )


def _strip_prefix(key: str, litellm_provider: str, provider: str) -> str:
    head, sep, rest = key.partition("/")
    if sep and head in {litellm_provider, provider, litellm_provider.partition("-")[0]}:
        return rest
    return key


def _tokens(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, Decimal) and value == value.to_integral_value() and value > 0:
        return int(value)
    raise _Skip("malformed")


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Skip("malformed")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise _Skip("malformed")
    return amount


def _price(entry: Mapping[str, Any], when: date, source: str) -> Price:
    values = {ours: _amount(entry.get(theirs)) for theirs, ours in _BASE.items()}
    if values["per_second"] is None:
        values["per_second"] = _amount(entry.get("output_cost_per_second"))
    tiers = _tiers(entry, values)
    ranged = entry.get("tiered_pricing")
    if values["input"] is None and values["output"] is None and isinstance(ranged, list):
        values, tiers = _ranged(ranged)
    if all(v is None for v in values.values()):
        raise _Skip("no price")
    return Price(
        effective_from=when,
        input=values.pop("input") or Decimal(0),
        output=values.pop("output") or Decimal(0),
        tiers=tiers,
        source=source,
        **values,
    )


def _tiers(entry: Mapping[str, Any], base: Mapping[str, Decimal | None]) -> tuple[PriceTier, ...]:
    found: dict[int, dict[str, Decimal | None]] = {}
    for key, value in entry.items():
        match = _TIER_KEY.match(key)
        if match:
            found.setdefault(int(match[2]) * 1000, {})[_TIER_FIELD[match[1]]] = _amount(value)
    return tuple(
        PriceTier(
            above_input_tokens=threshold,
            input=_first(fields.get("input"), base["input"]),
            output=_first(fields.get("output"), base["output"]),
            cache_read=fields.get("cache_read", base["cache_read"]),
            cache_write=fields.get("cache_write", base["cache_write"]),
        )
        for threshold, fields in sorted(found.items())
    )


def _first(*values: Decimal | None) -> Decimal:
    return next((v for v in values if v is not None), Decimal(0))


def _ranged(ranges: list[Any]) -> tuple[dict[str, Decimal | None], tuple[PriceTier, ...]]:
    """LiteLLM's ``tiered_pricing``: ``[{"range": [0, 256000], "input_cost_per_token": …}, …]``.

    The first range is the base price; each later one a tier above its lower bound. Per-tier
    reasoning prices have no place in a tier, so the base reasoning price applies throughout.
    """
    rows = []
    for row in ranges:
        bounds = row.get("range") if isinstance(row, dict) else None
        if not isinstance(bounds, list) or not bounds:
            raise _Skip("malformed")
        low = _amount(bounds[0])
        if low is None:
            raise _Skip("malformed")
        rows.append((int(low), row))
    rows.sort(key=lambda r: r[0])
    first = rows[0][1]
    base = {ours: _amount(first.get(theirs)) for theirs, ours in _BASE.items()}
    tiers = tuple(
        PriceTier(
            above_input_tokens=low,
            input=_first(_amount(row.get("input_cost_per_token")), base["input"]),
            output=_first(_amount(row.get("output_cost_per_token")), base["output"]),
            cache_read=_amount(row.get("cache_read_input_token_cost")),
            cache_write=_amount(row.get("cache_creation_input_token_cost")),
        )
        for low, row in rows[1:]
    )
    return base, tiers


# -- writing an import into the user's catalog file ----------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    """What layering imported models over a catalog changed."""

    text: str
    """The user catalog file's new content."""
    new: int = 0
    changed: int = 0
    """Models given a new price."""
    unchanged: int = 0
    conflicts: tuple[str, ...] = ()
    """Models left alone, with why (a catalog price is dated on or after the imported one)."""


_HEADER = (
    "Podium user catalog, layered over the built-in one (podium models import writes it).\n"
    "Prices are per token, as quoted decimal strings; a newer price is appended, never replaced."
)


def update_catalog_file(into: Path, models: Iterable[ModelInfo]) -> CatalogUpdate:
    """Layer ``models`` (one price each) over the built-in catalog and the user file ``into``.

    A model not yet in the catalog is added whole. A known model whose price in force on the
    imported date differs gets the imported price appended to its history; a same-date price is
    replaced only when this file wrote it (a re-import on the same day). Nothing is written here:
    the caller saves :attr:`CatalogUpdate.text`.
    """
    existing = into.read_text(encoding="utf-8") if into.is_file() else ""
    raw = load_yaml(existing, str(into)) if existing else None
    builtin = Catalog.builtin()
    current = builtin.merged(existing, str(into), data=raw) if existing else builtin
    entries: dict[str, dict[str, Any]] = {
        e["name"]: e for e in (raw or {}).get("models", []) if isinstance(e, dict)
    }
    new = changed = unchanged = 0
    conflicts: list[str] = []
    for info in models:
        price = info.prices[-1]
        known = current.lookup(info.name)
        if known is None:
            entries[info.name] = model_to_dict(info)
            new += 1
            continue
        if known.name != info.name:
            conflicts.append(f"{info.name}: the name is an alias of {known.name}")
            continue
        later = [p.effective_from for p in known.prices if p.effective_from > price.effective_from]
        in_force = known.price_at(price.effective_from)
        if not later and in_force is not None and in_force.same_figures(price):
            unchanged += 1
            continue
        if later:
            conflicts.append(f"{info.name}: the catalog has a price from {later[0]}")
            continue
        entry = entries.setdefault(info.name, {"name": info.name, "prices": []})
        prices = entry.setdefault("prices", [])
        same_day = [p for p in prices if _date(p.get("effective_from")) == price.effective_from]
        if in_force is not None and in_force.effective_from == price.effective_from:
            if not same_day:
                conflicts.append(
                    f"{info.name}: a different price already takes effect on "
                    f"{price.effective_from}; import with a later --effective date"
                )
                continue
            prices.remove(same_day[0])
        prices.append(price_to_dict(price))
        changed += 1
    written: dict[str, Any] = {"version": 1, "models": list(entries.values())}
    text = dump_catalog(written["models"], header=_HEADER)
    builtin.merged(text, str(into), data=written)  # what is written must load
    return CatalogUpdate(text, new, changed, unchanged, tuple(conflicts))


def _date(value: Any) -> date | None:
    try:
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        return None
