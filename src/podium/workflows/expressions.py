"""Expressions that move data between steps, evaluated in Jinja2's immutable sandbox.

A string that is exactly one ``{{ … }}`` evaluates to the native value (a dict stays a dict);
a string mixing text and ``{{ … }}`` renders to text; anything else is a constant. Expressions
are compiled once, when a workflow is planned, never per step execution.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT_NAMES = frozenset(
    {
        "inputs",
        "steps",
        "item",
        "index",
        "task",
        "results",
        "loop",
        "run",
        "saga",
        "output",
        "branch",
    }
)
"""Names an expression may start from."""

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class ExpressionError(Exception):
    """An expression failed to compile or evaluate. The caller adds file:line or step context."""

    def __init__(self, message: str, source: str) -> None:
        self.source = source
        super().__init__(message)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with ``a.b`` on a mapping meaning the key ``b`` first: step outputs are
    dicts, and ``steps.items.output`` must not find ``dict.items``."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def _make_env() -> ImmutableSandboxedEnvironment:
    return _Environment(undefined=StrictUndefined, autoescape=False)


_ENV = _make_env()


@dataclass(frozen=True, slots=True)
class References:
    """What an expression reads: root names and the step ids behind ``steps.<id>``."""

    roots: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    inputs: frozenset[str] = frozenset()


Evaluator = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled value: call ``evaluate(namespace)``; ``constant`` when it reads nothing."""

    evaluate: Evaluator
    constant: bool
    refs: References = field(default_factory=References)


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
"""A plain dotted name (``item``, ``steps.sentiment.output.label``): the commonest expression."""


def _path_lookup(parts: list[str], general: Evaluator) -> Evaluator:
    """A fast evaluator for a dotted name through mappings, with Jinja's exact result.

    It walks mappings key by key, as the sandbox does first; anything else (an attribute, a
    missing key, a global) goes to the general evaluator, which gives the same value or the
    same error. Most step inputs are such names, and this skips building a Jinja context.
    """
    root, rest = parts[0], parts[1:]

    def evaluate(ns: Mapping[str, Any]) -> Any:
        value = ns.get(root, _MISSING)
        for part in rest:
            if value is _MISSING or not isinstance(value, Mapping) or part not in value:
                return general(ns)
            value = value[part]
        if value is _MISSING:
            return general(ns)
        return value

    return evaluate


_MISSING = object()


def _undefined_message(value: Undefined) -> str:
    try:
        str(value)
    except UndefinedError as exc:
        return str(exc)
    return "undefined value"


def _const(value: Any) -> Evaluator:
    return lambda _ns: value


def _walk_refs(tree: nodes.Node) -> References:
    roots: set[str] = set()
    found: dict[str, set[str]] = {"steps": set(), "inputs": set()}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load":
            roots.add(name.name)
    for found_node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        getattr_node: Any = found_node
        target = getattr_node.node
        if isinstance(target, nodes.Name) and target.name in found:
            bucket = found[target.name]
            if isinstance(getattr_node, nodes.Getattr):
                bucket.add(getattr_node.attr)
            elif isinstance(getattr_node.arg, nodes.Const) and isinstance(
                getattr_node.arg.value, str
            ):
                bucket.add(getattr_node.arg.value)
    return References(frozenset(roots), frozenset(found["steps"]), frozenset(found["inputs"]))


def _local_names(tree: nodes.Node) -> set[str]:
    """Names bound inside the template itself ({% set %}, {% for %} targets)."""
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}


def compile_string(source: str) -> Compiled:
    """Compile one string. Raises ``ExpressionError`` on a syntax error."""
    if "{{" not in source and "{%" not in source:
        return Compiled(_const(source), True)
    match = _SINGLE.match(source)
    try:
        if match and "}}" not in match.group("expr") and "{{" not in match.group("expr"):
            body = match.group("expr").strip()
            tree = _ENV.parse("{{ " + body + " }}")
            expr = _ENV.compile_expression(body, undefined_to_none=False)
            refs = _walk_refs(tree)

            def evaluate(ns: Mapping[str, Any]) -> Any:
                try:
                    value = expr(**ns)
                except (UndefinedError, SecurityError, TypeError, ValueError) as exc:
                    raise ExpressionError(str(exc), source) from exc
                except ZeroDivisionError as exc:
                    raise ExpressionError("division by zero", source) from exc
                if isinstance(value, Undefined):
                    raise ExpressionError(_undefined_message(value), source)
                return value

            if _PATH.match(body):
                return Compiled(_path_lookup(body.split("."), evaluate), False, refs)
            return Compiled(evaluate, False, refs)
        tree = _ENV.parse(source)
        template = _ENV.from_string(source)
        local = _local_names(tree)
        raw = _walk_refs(tree)
        refs = References(raw.roots - local, raw.steps, raw.inputs)

        def render(ns: Mapping[str, Any]) -> Any:
            try:
                return template.render(ns)
            except (UndefinedError, SecurityError, TypeError, ValueError) as exc:
                raise ExpressionError(str(exc), source) from exc

        return Compiled(render, False, refs)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"bad expression syntax: {exc.message}", source) from None


def compile_value(value: Any) -> Compiled:
    """Compile a value that may hold expressions anywhere inside dicts and lists."""
    if isinstance(value, str):
        return compile_string(value)
    if isinstance(value, Mapping):
        parts = {k: compile_value(v) for k, v in value.items()}
        if all(p.constant for p in parts.values()):
            return Compiled(_const(dict(value)), True)
        items = [(k, p.evaluate) for k, p in parts.items()]

        def eval_dict(ns: Mapping[str, Any]) -> Any:
            return {k: ev(ns) for k, ev in items}

        return Compiled(eval_dict, False, _merge(p.refs for p in parts.values()))
    if isinstance(value, list | tuple):
        parts_l = [compile_value(v) for v in value]
        if all(p.constant for p in parts_l):
            return Compiled(_const(list(value)), True)
        evs = [p.evaluate for p in parts_l]

        def eval_list(ns: Mapping[str, Any]) -> Any:
            return [ev(ns) for ev in evs]

        return Compiled(eval_list, False, _merge(p.refs for p in parts_l))
    return Compiled(_const(value), True)


def _merge(refs: Iterator[References] | Any) -> References:
    roots: set[str] = set()
    steps: set[str] = set()
    inputs: set[str] = set()
    for r in refs:
        roots |= r.roots
        steps |= r.steps
        inputs |= r.inputs
    return References(frozenset(roots), frozenset(steps), frozenset(inputs))


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a value (for validation)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_strings(v)
