"""YAML front door: parse a workflow file, keeping every key's file:line:column for errors.

PyYAML's composer gives node positions; we build plain Python values from the nodes ourselves so
that each path (``("steps", 2, "retry", "max_attempts")``) maps to where it was written. Errors
from pydantic and from the semantic checks are then reported at the offending key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from podium.errors import DefinitionError, DefinitionIssue
from podium.workflows.spec import Workflow, step_kind

Loc = tuple[str | int, ...]
Position = tuple[int, int]


@dataclass(frozen=True)
class Source:
    """Where a definition came from, and how to find a path's position in it."""

    file: str
    text: str
    positions: dict[Loc, Position]
    data: Any

    def walk(self, loc: Sequence[str | int]) -> tuple[Any, list[str | int]]:
        """Follow a pydantic ``loc`` through the data; return the deepest node and its real path.

        Pydantic puts a union's tag right after entering a step (``steps.1.parallel.if``): the
        tag is skipped; so are union member names that match no key.
        """
        node = self.data
        found: list[str | int] = []
        entered = False
        for elem in loc:
            if entered and isinstance(node, dict) and elem == step_kind(node):
                entered = False
                continue
            entered = False
            if isinstance(node, dict) and isinstance(elem, str):
                key = elem if elem in node else elem.removesuffix("_")
                if key in node:
                    node = node[key]
                    found.append(key)
                    entered = True
            elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
                node = node[elem]
                found.append(elem)
                entered = True
        return node, found

    def locate(self, loc: Sequence[str | int]) -> tuple[Position | None, str | None]:
        """Best position for a pydantic-style ``loc``; also the dotted key found there."""
        _node, found = self.walk(loc)
        key = ".".join(str(p) for p in found) if found else None
        while found:
            pos = self.positions.get(tuple(found))
            if pos is not None:
                return pos, key
            found.pop()
        return self.positions.get(()), key


class _Builder:
    """Turns a composed YAML node tree into Python values and a position map."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Loc, Position] = {}
        self.issues: list[DefinitionIssue] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Loc) -> Any:
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self._issue(key_node, "mapping keys must be plain scalars", None)
                    continue
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    self._issue(
                        key_node,
                        f"duplicate key {key!r}",
                        ".".join(str(p) for p in (*path, key)),
                        hint="YAML keeps only the last value; remove or rename one of them",
                    )
                    continue
                # a key's position is where the key is written
                self.positions[(*path, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    def _issue(
        self, node: yaml.Node, message: str, key: str | None, hint: str | None = None
    ) -> None:
        self.issues.append(
            DefinitionIssue(
                message,
                self.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                key,
                hint,
            )
        )


def parse_yaml(text: str, file: str) -> Source:
    """Parse YAML text into a :class:`Source`. Raises ``DefinitionError`` on syntax errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        hint = "YAML forbids tabs for indentation" if "\t" in text and "tab" in problem else None
        raise DefinitionError(
            [DefinitionIssue(f"YAML syntax error: {problem}", file, line, col, None, hint)]
        ) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([DefinitionIssue(f"YAML error: {exc}", file)]) from None
    if root is None:
        raise DefinitionError([DefinitionIssue("the file is empty", file, 1, 1)])
    builder = _Builder(file)
    data = builder.build(root, ())
    if builder.issues:
        raise DefinitionError(builder.issues)
    if not isinstance(data, dict):
        line, col = builder.positions[()]
        raise DefinitionError(
            [
                DefinitionIssue(
                    "a workflow file must be a mapping with 'name' and 'steps'",
                    file,
                    line,
                    col,
                    hint="start with 'name: my-workflow' and a 'steps:' list",
                )
            ]
        )
    return Source(file, text, builder.positions, data)


def _allowed_keys(model_fields: Any) -> list[str]:
    return [f.alias or n for n, f in model_fields.items()]


def _hint_for(error: Any, key: str | None, source: Source, loc: Sequence[str | int]) -> str | None:
    kind = error["type"]
    if kind == "extra_forbidden" and key:
        bad = key.rsplit(".", 1)[-1]
        parent = _parent_keys(source, loc)
        match = difflib.get_close_matches(bad, parent, n=1, cutoff=0.6)
        if match:
            return f"did you mean '{match[0]}'?"
        if parent:
            return "allowed here: " + ", ".join(sorted(parent))
    if kind == "step_kind":
        raw = error.get("input")
        if isinstance(raw, dict):
            from podium.workflows.spec import STEP_KINDS

            for k in raw:
                match = difflib.get_close_matches(str(k), STEP_KINDS, n=1, cutoff=0.6)
                if match:
                    return f"'{k}' is not a step kind; did you mean '{match[0]}'?"
        return "e.g. '- id: greet' followed by 'call: mypackage.module:function'"
    if kind == "missing":
        return "add this key"
    if kind.startswith("string_pattern") and key and key.endswith("id"):
        return "ids start with a letter or '_' and hold letters, digits, '_' or '-'"
    return None


def _parent_keys(source: Source, loc: Sequence[str | int]) -> list[str]:
    """The keys the model holding the offending key accepts."""
    from podium.workflows import spec

    parent, path = source.walk(loc[:-1])
    model: Any = None
    if not path:
        model = spec.Workflow
    elif path[-1] == "retry":
        model = spec.RetryPolicy
    elif path[-1] == "on_failure":
        model = spec.SagaFailure
    elif len(path) >= 2 and path[-2] == "inputs":
        model = spec.InputSpec
    elif isinstance(parent, dict) and (kind := step_kind(parent)):
        model = spec.STEP_MODELS[kind]
    fields = getattr(model, "model_fields", None)
    return _allowed_keys(fields) if fields else []


def issues_from_validation(exc: ValidationError, source: Source) -> list[DefinitionIssue]:
    """Map pydantic errors onto file positions, with a hint where one helps."""
    issues = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors():
        loc = error["loc"]
        pos, key = source.locate(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = f"missing required key '{loc[-1]}'"
        else:
            message = error["msg"]
            if kind.startswith("value_error"):
                message = message.removeprefix("Value error, ")
        ident = (pos, message)
        if ident in seen:
            continue
        seen.add(ident)
        line, col = pos if pos else (None, None)
        issues.append(
            DefinitionIssue(
                message, source.file, line, col, key, _hint_for(error, key, source, loc)
            )
        )
    return issues


def validate_source(source: Source) -> Workflow:
    """Validate parsed YAML against the model. Raises ``DefinitionError`` with located issues."""
    try:
        return Workflow.model_validate(source.data)
    except ValidationError as exc:
        raise DefinitionError(issues_from_validation(exc, source)) from None


Locator = Callable[[Sequence[str | int]], tuple[Position | None, str | None]]
