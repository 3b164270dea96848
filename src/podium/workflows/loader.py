"""YAML front door: parse a workflow file, keeping every key's file:line:column for errors.

PyYAML's composer gives node positions; we build plain Python values from the nodes ourselves so
that each path (``("steps", 2, "retry", "max_attempts")``) maps to where it was written. Errors
from pydantic and from the semantic checks are then reported at the offending key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from podium.errors import DefinitionError, DefinitionIssue
from podium.workflows import spec
from podium.workflows.spec import STEP_KINDS, Workflow, step_kind

Loc = tuple[str | int, ...]
Position = tuple[int, int]

MAX_ALIAS_EXPANSION = 100_000
"""Values built again because an alias repeats them; beyond this the file is refused (a YAML
"billion laughs" would otherwise expand without bound)."""

_CORE = "tag:yaml.org,2002:"
_MERGE_TAG = _CORE + "merge"
_COLLECTION_TAGS = frozenset(_CORE + t for t in ("map", "seq", "omap", "pairs", "set"))
_STEP_LISTS = frozenset({"steps", "parallel", "do", "saga", "then", "else", "default", "loop"})
"""Keys whose value is a list of steps."""
_STEP_KEYS = frozenset({"fallback", "compensate", "orchestrate", "synthesize"})
"""Keys whose value is one step."""


def _at_step(path: Sequence[str | int]) -> bool:
    """Whether ``path`` is where the schema expects a step (so pydantic adds a union tag)."""
    if not path:
        return False
    last = path[-1]
    if isinstance(last, int):
        return len(path) >= 2 and (
            path[-2] in _STEP_LISTS or (len(path) >= 3 and path[-3] == "cases")
        )
    return last in _STEP_KEYS or (len(path) >= 2 and path[-2] == "workers")


@dataclass(frozen=True)
class Source:
    """Where a definition came from, and how to find a path's position in it."""

    file: str
    text: str
    positions: dict[Loc, Position]
    data: Any

    def walk(
        self, loc: Sequence[str | int], *, tagged: bool = False
    ) -> tuple[Any, list[str | int]]:
        """Follow a ``loc`` through the data; return the deepest node and its real path.

        Elements that match no key are skipped. With ``tagged`` the loc comes from pydantic,
        which puts a union's tag right after entering a step (``steps.1.parallel.if``): that tag
        is skipped too. Locs from the planner name real keys only, so a kind key such as
        ``call`` is followed, not skipped.
        """
        node = self.data
        found: list[str | int] = []
        entered = False
        for elem in loc:
            if (
                tagged
                and entered
                and isinstance(node, dict)
                and _at_step(found)
                and elem == step_kind(node)
            ):
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

    def locate(
        self, loc: Sequence[str | int], *, tagged: bool = False
    ) -> tuple[Position | None, str | None]:
        """Best position for a ``loc``; also the dotted key found there (see :meth:`walk`)."""
        _node, found = self.walk(loc, tagged=tagged)
        key = ".".join(str(p) for p in found) if found else None
        while found:
            pos = self.positions.get(tuple(found))
            if pos is not None:
                return pos, key
            found.pop()
        return self.positions.get(()), key


class _TooManyAliases(Exception):
    pass


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns a composed YAML node tree into Python values and a position map."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Loc, Position] = {}
        self.issues: list[DefinitionIssue] = []
        self._constructor = yaml.SafeLoader("")
        self._built: set[int] = set()
        self._own_keys: dict[int, set[int]] = {}
        self._repeats = 0

    def build(self, node: yaml.Node, path: Loc) -> Any:
        if id(node) in self._built:
            self._repeats += 1
            if self._repeats > MAX_ALIAS_EXPANSION:
                raise _TooManyAliases
        self._built.add(id(node))
        self.positions.setdefault(path, _position(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and (
            node.tag not in _COLLECTION_TAGS
        ):
            self._unsupported_tag(node, path)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Loc) -> dict[str, Any]:
        # ``<<: *base`` merges: keys written here override merged ones, merged ones never clash.
        own = self._own_keys.get(id(node))
        if own is None:
            own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            self._own_keys[id(node)] = own
            try:
                self._constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                self._issue(node, f"bad merge ('<<'): {exc.problem}", _dotted(path))
                node.value = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        chosen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._issue(
                    key_node,
                    "a mapping key must be plain text, not a list or mapping",
                    _dotted(path),
                    hint="write the key as a plain word, e.g. 'input:'",
                )
                continue
            key = str(key_node.value)
            earlier = chosen.get(key)
            if earlier is not None and id(key_node) in own and id(earlier[0]) in own:
                line = earlier[0].start_mark.line + 1
                self._issue(
                    key_node,
                    f"duplicate key {key!r} (first written at line {line})",
                    _dotted((*path, key)),
                    hint="YAML would silently keep only the last one; remove or rename one",
                )
                continue
            chosen[key] = (key_node, value_node)
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in chosen.items():
            # a key's position is where the key is written
            self.positions[(*path, key)] = _position(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.Node, path: Loc) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            if "could not determine a constructor" in str(exc.problem):
                self._unsupported_tag(node, path)
            else:
                tag = _short_tag(node.tag)
                self._issue(node, f"invalid {tag} value: {exc.problem}", _dotted(path))
        except (ValueError, TypeError):
            tag = _short_tag(node.tag)
            self._issue(node, f"{node.value!r} is not a valid {tag}", _dotted(path))
        return None

    def _unsupported_tag(self, node: yaml.Node, path: Loc) -> None:
        self._issue(
            node,
            f"unsupported YAML tag '{_short_tag(node.tag)}'",
            _dotted(path),
            hint="workflow files hold plain YAML values; remove the tag",
        )

    def _issue(
        self, node: yaml.Node, message: str, key: str | None, hint: str | None = None
    ) -> None:
        line, column = _position(node)
        self.issues.append(DefinitionIssue(message, self.file, line, column, key, hint))


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _dotted(path: Sequence[str | int]) -> str | None:
    return ".".join(str(p) for p in path) or None


def _syntax_issue(exc: yaml.MarkedYAMLError, text: str, file: str) -> DefinitionIssue:
    context = exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    if context == "while scanning a simple key" and exc.context_mark:
        mark = exc.context_mark  # the key missing its ':', not where the scanner gave up
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    problem = exc.problem or context or "invalid YAML"
    if context and exc.problem and not context.startswith("while"):
        # the composer says "expected a single document" (context) "but found another" (problem)
        problem = f"{context} {exc.problem}"
    return DefinitionIssue(
        f"YAML syntax error: {problem}", file, line, col, None, _syntax_hint(exc, problem, text)
    )


def _syntax_hint(exc: yaml.MarkedYAMLError, problem: str, text: str) -> str | None:
    """What most likely went wrong, from where the parser stopped and what it was reading."""
    lines = text.splitlines()
    mark = exc.problem_mark or exc.context_mark
    bad_line = lines[mark.line] if mark and mark.line < len(lines) else ""
    indent = bad_line[: len(bad_line) - len(bad_line.lstrip(" \t"))]
    if "\t" in indent or (mark and bad_line[mark.column : mark.column + 1] == "\t"):
        return "YAML forbids tabs for indentation; indent with spaces"
    if "single document" in problem:
        return "a workflow file holds one YAML document; remove the extra '---'"
    if problem.startswith("mapping values are not allowed"):
        return "quote a value that holds ': ', or check this line's indentation"
    context = exc.context or ""
    opened = exc.context_mark
    where = f"line {opened.line + 1}, column {opened.column + 1}" if opened else ""
    if context == "while scanning a simple key":
        return "is a ':' missing after this key?"
    if opened:
        opener_line = lines[opened.line] if opened.line < len(lines) else ""
        opener = opener_line[opened.column : opened.column + 1]
        if opener in ("[", "{", "'", '"') and context.startswith(
            ("while parsing a flow", "while scanning a quoted")
        ):
            return f"the {opener!r} opened at {where} is not closed"
    if "block" in problem or "block" in context:
        against = f" against the block that starts at {where}" if opened else ""
        return f"check this line's indentation{against}"
    if opened and mark and (opened.line, opened.column) != (mark.line, mark.column):
        inside = re.sub(r"^while \w+ ", "", context)
        return f"in {inside} that starts at {where}"
    return None


def parse_yaml(text: str, file: str) -> Source:
    """Parse YAML text into a :class:`Source`. Raises ``DefinitionError`` on syntax errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise DefinitionError([_syntax_issue(exc, text, file)]) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise DefinitionError(
            [
                DefinitionIssue(
                    f"character {char!r} is not allowed in YAML",
                    file,
                    line,
                    col,
                    hint="remove it, or write it as an escape inside a double-quoted string",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([DefinitionIssue(f"YAML error: {exc}", file)]) from None
    if root is None:
        message = "the file is empty" if not text.strip() else "the file holds only comments"
        raise DefinitionError(
            [DefinitionIssue(message, file, 1, 1, hint="start with 'name:' and a 'steps:' list")]
        )
    builder = _Builder(file)
    try:
        data = builder.build(root, ())
    except _TooManyAliases:
        raise DefinitionError(
            [
                DefinitionIssue(
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION} values",
                    file,
                    hint="repeat less through '*alias' references",
                )
            ]
        ) from None
    if builder.issues:
        raise DefinitionError(sorted(builder.issues, key=lambda i: (i.line or 0, i.column or 0)))
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


def show_value(value: Any) -> str:
    """A value as the YAML author wrote it, shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _is_id(key: str | None) -> bool:
    """Whether ``key`` holds a step id (an ``id`` field or a worker's name)."""
    if not key:
        return False
    parts = key.split(".")
    return parts[-1] == "id" or (len(parts) >= 2 and parts[-2] == "workers")


def _message(error: Any, loc: Sequence[str | int], key: str | None, source: Source) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    last = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    if kind == "extra_forbidden":
        bad = str(loc[-1])
        parent, path = source.walk(loc[:-1], tagged=True)
        kind_here = step_kind(parent) if _at_step(path) else None
        if bad in STEP_KINDS and kind_here and kind_here != bad:
            return f"a step has one kind, but this one has both '{kind_here}' and '{bad}'"
        return f"unknown key {bad!r}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {show_value(value)}"
    if kind == "literal_error":
        return (
            f"expected {ctx.get('expected', 'one of the allowed values')}, got {show_value(value)}"
        )
    if kind == "string_pattern_mismatch":
        what = "id" if _is_id(key) else "name" if key == "name" else last
        return f"{show_value(value)} is not a valid {what}"
    if kind == "too_short" and isinstance(value, list | dict):
        n = ctx.get("min_length", 1)
        return f"'{last}' needs at least {n} {'item' if n == 1 else 'items'}"
    message = str(error["msg"])
    if kind.startswith("value_error"):
        return message.removeprefix("Value error, ")
    if value is not None and not isinstance(value, dict | list):
        message += f" (got {show_value(value)})"
    return message


def _hint_for(error: Any, key: str | None, source: Source, loc: Sequence[str | int]) -> str | None:
    kind = error["type"]
    if kind == "extra_forbidden" and key:
        bad = str(loc[-1])
        parent, path = source.walk(loc[:-1], tagged=True)
        if bad in STEP_KINDS and _at_step(path) and step_kind(parent) not in (None, bad):
            return "split it into two steps, or nest one inside the other"
        allowed = _parent_keys(source, loc)
        match = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.6)
        if match:
            return f"did you mean '{match[0]}'?"
        if allowed:
            return "allowed here: " + ", ".join(sorted(allowed))
    if kind == "step_kind":
        raw = error.get("input")
        if isinstance(raw, dict):
            for k in raw:
                match = difflib.get_close_matches(str(k), STEP_KINDS, n=1, cutoff=0.6)
                if match:
                    return f"'{k}' is not a step kind; did you mean '{match[0]}'?"
        return "e.g. '- id: greet' followed by 'call: mypackage.module:function'"
    if kind == "missing":
        return f"add '{loc[-1]}:' to this mapping"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        match = difflib.get_close_matches(str(error.get("input")), choices, n=1, cutoff=0.6)
        if match:
            return f"did you mean '{match[0]}'?"
    if kind == "string_pattern_mismatch" and key:
        if _is_id(key):
            return "ids start with a letter or '_' and hold letters, digits, '_' or '-'"
        if key == "name":
            return "names hold letters, digits, '_', '.' or '-' (no spaces)"
    return None


def _parent_keys(source: Source, loc: Sequence[str | int]) -> list[str]:
    """The keys the model holding the offending key accepts."""
    parent, path = source.walk(loc[:-1], tagged=True)
    model: Any = None
    if not path or (path[-1] == "workflow" and not _at_step(path)):
        model = spec.Workflow  # the root, or an inline sub-workflow
    elif len(path) >= 2 and path[-2] == "inputs":
        model = spec.InputSpec
    elif _at_step(path) and (kind := step_kind(parent)):
        model = spec.STEP_MODELS[kind]
    elif path[-1] == "retry":
        model = spec.RetryPolicy
    elif path[-1] == "on_failure":
        model = spec.SagaFailure
    fields = getattr(model, "model_fields", None)
    return _allowed_keys(fields) if fields else []


def issues_from_validation(exc: ValidationError, source: Source) -> list[DefinitionIssue]:
    """Map pydantic errors onto file positions, with a hint where one helps."""
    issues = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors():
        loc = error["loc"]
        key: str | None
        if error["type"] == "missing":
            pos, parent_key = source.locate(loc[:-1], tagged=True)
            key = ".".join(p for p in (parent_key, str(loc[-1])) if p)
        else:
            pos, key = source.locate(loc, tagged=True)
        # a union reports each member's complaint at the same key: the first one says enough
        ident = (pos, key)
        if ident in seen:
            continue
        seen.add(ident)
        line, col = pos if pos else (None, None)
        issues.append(
            DefinitionIssue(
                _message(error, loc, key, source),
                source.file,
                line,
                col,
                key,
                _hint_for(error, key, source, loc),
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
