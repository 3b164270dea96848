"""The one entry point to every model: a name in, a live adapter out.

``ModelHub`` joins the catalog (what models exist and cost), the registry (which adapter serves
which provider, and the local models plug-ins registered) and the settings (keys, URLs). Local
models are described by the plug-in that registers them — the registry is their source of truth,
and the hub adds them to the catalog it shows. Adapters are built once per name and reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from podium.config import Settings
from podium.models.base import Model
from podium.models.catalog import Catalog, ModelInfo
from podium.models.registry import ModelRegistry


class ModelHub:
    """Catalog + registry + settings → model adapters, one per name, reused."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else ModelRegistry.default()
        base = catalog if catalog is not None else Catalog.for_home(settings.home)
        self.catalog = base.including(self.registry.local_models)
        self._models: dict[str, Model] = {}

    def info(self, name: str) -> ModelInfo:
        """The catalog entry for a name or alias (``ModelNotFound`` with did-you-mean)."""
        entry = self.registry.local(name)
        if entry is not None:
            return entry.info
        return self.catalog.get(name)

    def model(self, name: str) -> Model:
        """The adapter serving ``name`` (built on first use)."""
        info = self.info(name)
        model = self._models.get(info.name)
        if model is None:
            entry = self.registry.local(info.name)
            if entry is not None:
                model = entry.factory(self.settings)
            else:
                model = self.registry.provider_factory(info.provider)(info, self.settings)
            self._models[info.name] = model
        return model

    async def warm(self, names: Iterable[str]) -> None:
        """Load these models now (local weights, connections) rather than on first call."""
        await asyncio.gather(*(self.model(n).warm() for n in names))

    async def close(self) -> None:
        """Close every adapter built so far."""
        models, self._models = list(self._models.values()), {}
        await asyncio.gather(*(m.close() for m in models), return_exceptions=True)
