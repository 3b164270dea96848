"""Resolve what a definition names: functions (``pkg.mod:fn``, ``./file.py:fn`` or a registered
name) and sub-workflows (a file path or a registered name)."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ResolveError(Exception):
    """A name could not be resolved; the message says why, ``hint`` what was probably meant."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Registry:
    """Functions and workflows registered by name (built-ins and plug-ins register the same way)."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}
        self._workflows: dict[str, Any] = {}

    def register_function(self, name: str, fn: Callable[..., Any]) -> None:
        """Make ``fn`` callable from definitions as ``call: <name>``."""
        self._functions[name] = fn

    def register_workflow(self, name: str, workflow: Any) -> None:
        """Make ``workflow`` usable as ``workflow: <name>``."""
        self._workflows[name] = workflow

    def function(self, name: str) -> Callable[..., Any] | None:
        return self._functions.get(name)

    def workflow(self, name: str) -> Any | None:
        return self._workflows.get(name)

    @property
    def function_names(self) -> list[str]:
        return sorted(self._functions)


def _load_file_module(path: Path) -> Any:
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:12]
    name = f"podium_user_{path.stem}_{digest}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ResolveError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ResolveError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_object(ref: str, base_dir: Path | None = None) -> Any:
    """The object ``ref`` names: ``pkg.module:attr`` or ``path/to/file.py:attr`` (a relative
    path is taken from ``base_dir``)."""
    module_ref, sep, attr = ref.rpartition(":")
    if not sep or not module_ref or not attr:
        raise ResolveError(f"{ref!r} is not 'package.module:name' or 'file.py:name'")
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ResolveError(f"no such file {path}")
        module = _load_file_module(path.resolve())
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise ResolveError(f"cannot import module {module_ref!r}: {exc}") from None
        except Exception as exc:
            raise ResolveError(
                f"importing {module_ref!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            near = difflib.get_close_matches(part, names, n=1)
            raise ResolveError(
                f"module {module_ref!r} has no attribute {attr!r}",
                f"did you mean '{near[0]}'?" if near else None,
            ) from None
    return target


def resolve_function(ref: str, registry: Registry, base_dir: Path | None) -> Callable[..., Any]:
    """``pkg.module:attr``, ``./relative/file.py:attr`` (relative to the definition) or a name."""
    registered = registry.function(ref)
    if registered is not None:
        return registered
    if ":" not in ref:
        known = ", ".join(registry.function_names) or "none registered"
        raise ResolveError(
            f"unknown function {ref!r}: write 'package.module:function', "
            f"'./file.py:function', or a registered name ({known})"
        )
    target = load_object(ref, base_dir)
    if not callable(target):
        raise ResolveError(f"{ref!r} is not callable")
    return target  # type: ignore[no-any-return]
