"""Provider tests use ``use_simulator`` from ``tests/conftest.py``."""
