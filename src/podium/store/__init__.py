"""Stores keep runs and their journals. ``open_store`` picks the backend from a URL."""

from __future__ import annotations

from podium.store.memory import MemoryStore
from podium.store.open import open_store

__all__ = ["MemoryStore", "open_store"]
