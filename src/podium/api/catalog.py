"""The workflows a server offers: every valid YAML definition in one directory (and each
subdirectory's ``workflow.yaml``), by name."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from podium.errors import DefinitionError
from podium.workflows.plan import Plan, load_workflow
from podium.workflows.resolve import Registry

log = logging.getLogger("podium.api")

_SUFFIXES = (".yaml", ".yml")


class WorkflowCatalog:
    """Planned workflows by name. Invalid files are skipped, and each problem is logged."""

    def __init__(self, plans: dict[str, Plan] | None = None) -> None:
        self._plans: dict[str, Plan] = dict(plans or {})
        self.problems: list[str] = []
        """One located message per skipped file."""

    @classmethod
    def load(cls, directory: Path | None, *, registry: Registry | None = None) -> WorkflowCatalog:
        """Plan every ``*.yaml`` (and ``*.yml``) file in ``directory``, then every
        ``<subdirectory>/workflow.yaml`` (an example with its steps and data beside it), in name
        order."""
        catalog = cls()
        if directory is None:
            return catalog
        if not directory.is_dir():
            catalog._skip(f"{directory}: workflows directory not found; serving no workflows")
            return catalog
        files = sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        files += sorted(
            p
            for sub in directory.iterdir()
            if sub.is_dir()
            for p in (sub / "workflow.yaml", sub / "workflow.yml")
            if p.is_file()
        )
        for path in files:
            catalog._add(path, registry)
        log.info("serving %d workflow(s) from %s", len(catalog._plans), directory)
        return catalog

    def _skip(self, message: str) -> None:
        self.problems.append(message)
        log.error("%s", message)

    def _add(self, path: Path, registry: Registry | None) -> None:
        try:
            plan = load_workflow(path, registry=registry)
        except DefinitionError as exc:
            self._skip(f"skipping invalid workflow {path}:\n{exc}")
            return
        except Exception as exc:  # a step module that fails on import must not stop the server
            self._skip(f"skipping workflow {path}: {type(exc).__name__}: {exc}")
            return
        first = self._plans.get(plan.name)
        if first is not None:
            self._skip(
                f"skipping workflow {path}: the name {plan.name!r} is already taken by {first.file}"
            )
            return
        self._plans[plan.name] = plan

    def get(self, name: str) -> Plan | None:
        return self._plans.get(name)

    def names(self) -> list[str]:
        return sorted(self._plans)

    def __iter__(self) -> Iterator[Plan]:
        return (self._plans[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._plans)
