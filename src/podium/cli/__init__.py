"""The ``podium`` command line."""

from podium.cli.app import app, main

__all__ = ["app", "main"]
