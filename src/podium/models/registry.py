"""The model registry: provider adapters and local models, registered by plug-ins.

Plug-ins — the built-ins included — are callables listed under the entry-point group
``podium.models``; each receives the registry and calls :meth:`ModelRegistry.add_provider`
(a factory for every model of one hosted provider) or :meth:`ModelRegistry.add_model` (one
local model). No code dispatches on provider names: the registry does.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from podium.errors import ModelNotFound

if TYPE_CHECKING:
    from podium.config import Settings
    from podium.models.base import Model
    from podium.models.catalog import ModelInfo

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "podium.models"

ProviderFactory = Callable[["ModelInfo", "Settings"], "Model"]
"""Builds the adapter for one catalog model of a hosted provider."""

LocalFactory = Callable[["Settings"], "Model"]
"""Builds one local model (lazily: loading weights waits for ``warm`` or the first call)."""


@dataclass(frozen=True, slots=True)
class LocalEntry:
    info: ModelInfo
    factory: LocalFactory


class ModelRegistry:
    """Provider factories and local models by name; resolves catalog names to adapters."""

    def __init__(self) -> None:
        self._providers: dict[str, ProviderFactory] = {}
        self._local: dict[str, LocalEntry] = {}
        self._loaded: set[str] = set()
        self.broken: dict[str, str] = {}
        """Plug-ins that failed to load, with why: one bad plug-in never hides the others."""

    def add_provider(self, provider: str, factory: ProviderFactory) -> None:
        """Serve every catalog model whose ``provider`` is ``provider`` with ``factory``."""
        self._providers[provider] = factory

    def add_model(self, info: ModelInfo, factory: LocalFactory) -> None:
        """Register one (local) model with its catalog entry."""
        self._local[info.name] = LocalEntry(info, factory)

    @property
    def providers(self) -> list[str]:
        return sorted(self._providers)

    @property
    def local_models(self) -> list[ModelInfo]:
        return [e.info for e in self._local.values()]

    def provider_factory(self, provider: str) -> ProviderFactory:
        try:
            return self._providers[provider]
        except KeyError:
            near = difflib.get_close_matches(provider, list(self._providers), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            if self.broken:
                hint += "; plug-ins that failed to load: " + "; ".join(
                    f"{name} ({why})" for name, why in sorted(self.broken.items())
                )
            raise ModelNotFound(
                f"no adapter is registered for provider {provider!r}{hint}", provider=provider
            ) from None

    def local(self, name: str) -> LocalEntry | None:
        return self._local.get(name)

    def load_entry_points(self) -> None:
        """Run every ``podium.models`` plug-in once."""
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._loaded:
                continue
            try:
                plugin = ep.load()
                plugin(self)
            except Exception as exc:  # a third-party plug-in's bug must not take down the rest
                self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("model plug-in %s failed to load: %s", ep.name, exc)
                continue
            self._loaded.add(ep.name)

    @classmethod
    def default(cls) -> ModelRegistry:
        """A registry with every installed plug-in (the built-ins among them) registered."""
        registry = cls()
        registry.load_entry_points()
        return registry
