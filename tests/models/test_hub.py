"""The hub turns a model name into a live adapter: local models from their plug-in, hosted ones
through their provider's adapter, with clear errors for unknown names and broken plug-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.config import Settings
from podium.errors import AuthenticationFailed, ModelNotFound
from podium.models.base import ChatRequest, ClassifyRequest, Message
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.models.local import register as register_local
from podium.models.providers.openai_compat import register as register_openai
from podium.models.registry import ModelRegistry


@pytest.fixture
def hub(tmp_path: Path) -> ModelHub:
    registry = ModelRegistry()
    register_local(registry)
    register_openai(registry)
    return ModelHub(Settings(home=tmp_path), registry=registry, catalog=Catalog.builtin())


async def test_local_model_by_name(hub: ModelHub) -> None:
    model = hub.model("local/vader-sentiment")
    assert hub.model("local/vader-sentiment") is model  # built once, reused
    reply = await model.classify(
        ClassifyRequest("local/vader-sentiment", ["This is awful, I want a refund now!"])
    )
    assert reply.results[0][0].label == "negative"
    await hub.close()


async def test_hosted_model_by_alias_needs_its_key(hub: ModelHub) -> None:
    info = hub.info("gpt-4o")
    assert info.name == "openai/gpt-4o"
    model = hub.model("gpt-4o")
    with pytest.raises(AuthenticationFailed, match="set OPENAI_API_KEY"):
        await model.chat(ChatRequest("openai/gpt-4o", [Message("user", "hi")]))
    await hub.close()


def test_unknown_model_suggests_a_name(hub: ModelHub) -> None:
    with pytest.raises(ModelNotFound, match="gpt-4o"):
        hub.model("openai/gpt-4oo")


def test_local_models_join_the_catalog(hub: ModelHub) -> None:
    names = {m.name for m in hub.catalog}
    assert {"local/vader-sentiment", "local/tesseract-ocr", "openai/gpt-4o"} <= names


def test_a_broken_plugin_is_named_when_its_provider_is_used() -> None:
    registry = ModelRegistry()
    registry.broken["acme"] = "ImportError: no module named acme_sdk"
    with pytest.raises(ModelNotFound, match=r"acme \(ImportError: no module named acme_sdk\)"):
        registry.provider_factory("acme")


def test_installed_entry_points_register_the_built_ins() -> None:
    registry = ModelRegistry.default()
    assert not registry.broken, registry.broken
    assert {"openai", "anthropic", "gemini", "cohere", "bedrock", "azure"} <= set(
        registry.providers
    )
    assert len(registry.local_models) >= 7
