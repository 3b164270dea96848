"""Hosted model providers, each an adapter over httpx that registers through ``podium.models``."""
