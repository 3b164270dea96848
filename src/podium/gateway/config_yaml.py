"""The machinery behind the gateway's configuration file: problems located at
``file:line:col: key.path``, the validation context, and the field types that guard secrets and
money.

The YAML is read by the workflow loader's reader (:func:`podium.workflows.loader.parse_yaml`),
which keeps every key's position; this module turns pydantic's errors into located
:class:`~podium.errors.DefinitionIssue`\\ s with plain messages and hints (a did-you-mean for an
unknown key or value, taken from the schema itself). Validators that find several problems, or
a problem at a key other than the value they check, raise :class:`Invalid`: pydantic keeps the
exception in the error's context, and each :class:`Problem` is reported at its own key.
:func:`floats_as_text` gives amounts the text they were written with, so ``0.1`` stays exact.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
)

from podium.errors import ConfigError, DefinitionIssue
from podium.workflows.loader import show_value

if TYPE_CHECKING:
    from podium.models.catalog import Catalog
    from podium.workflows.loader import Source


class Section(BaseModel):
    """The base of every mapping of a configuration file (the gateway's, a policy's): unknown
    keys are errors, values are frozen, field docstrings document the keys, inputs (which may
    hold secrets) are never echoed in errors, and NaN or infinite numbers are refused."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )


Loc = tuple[str | int, ...]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_PREFIXES = ("sk-", "sk_", "pk-", "rk-", "xai-", "gsk_", "AIza", "ghp_", "github_pat_")


class GatewayConfigError(ConfigError):
    """The gateway configuration is invalid. ``issues`` lists every problem found, located;
    the message has one line per issue (:func:`format_issue`)."""

    def __init__(self, issues: Sequence[DefinitionIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(format_issue(i) for i in self.issues))


def format_issue(issue: DefinitionIssue) -> str:
    """``file:line:col: key.path: message (hint)``; the parts not known are left out."""
    where = issue.file
    if issue.line is not None:
        where += f":{issue.line}" + (f":{issue.column}" if issue.column is not None else "")
    text = f"{where}: {issue.key}: {issue.message}" if issue.key else f"{where}: {issue.message}"
    return f"{text} ({issue.hint})" if issue.hint else text


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem a validator found."""

    loc: Loc
    """Where, relative to the value the validator checked."""
    message: str
    hint: str | None = None


class Invalid(ValueError):
    """Raised by a validator: pydantic keeps it in the error's ``ctx``, so each problem is
    reported at its own key rather than at the validated value's."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems))


def fail(message: str, hint: str | None = None, at: Loc = ()) -> Invalid:
    """One problem, to raise."""
    return Invalid([Problem(at, message, hint)])


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What validation may consult beyond the data (passed as pydantic's ``context``)."""

    catalog: Catalog | None = None
    """Deployments' models are checked against it (skipped when ``None``)."""
    base_dir: Path | None = None
    """Relative paths resolve against it (the current directory when ``None``)."""
    source: Source | None = None
    """Where the data was read, so messages can say "first at line N"."""

    def where(self, loc: Loc) -> str:
        """``line N`` where ``loc`` was written (its dotted path without a source)."""
        if self.source is not None:
            position, _key = self.source.locate(loc)
            if position is not None:
                return f"line {position[0]}"
        return dotted(loc)

    def resolve(self, path: Path) -> Path:
        """``path`` made absolute against :attr:`base_dir`."""
        path = path.expanduser()
        return path if path.is_absolute() else (self.base_dir or Path.cwd()) / path


def context(info: ValidationInfo) -> ValidationContext:
    """The context :meth:`GatewayConfig.parse` passed (an empty one otherwise)."""
    ctx = info.context.get("gateway") if isinstance(info.context, dict) else None
    return ctx if isinstance(ctx, ValidationContext) else ValidationContext()


# -- field types -----------------------------------------------------------------------------------


def _env_name(value: str) -> str:
    """An environment variable's *name*; a value that looks like a secret is refused (and never
    repeated in the message)."""
    looks_secret = value.startswith(_SECRET_PREFIXES) or (
        len(value) >= 20
        and "_" not in value
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )
    if looks_secret:
        raise fail(
            "this looks like a secret itself, not the name of an environment variable",
            "put the secret in an environment variable and write its name here, "
            "e.g. OPENAI_API_KEY; never write keys into the file",
        )
    if not _ENV_NAME.fullmatch(value):
        raise fail(
            "not a valid environment variable name",
            "letters, digits and '_', not starting with a digit, e.g. OPENAI_API_KEY",
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


def _exact_decimal(value: object) -> object:
    """Money from text or an integer; a float would not be exact (YAML floats are replaced by
    their text before validation, so only Python callers can hit that branch)."""
    if isinstance(value, bool) or value is None:
        raise fail("expected an amount such as '10.00'")
    if isinstance(value, float):
        raise fail("a float cannot hold an amount exactly", "write it as text, e.g. '0.1' (quoted)")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise fail(f"{value!r} is not a decimal amount", "write e.g. '10.00'") from None
        if not amount.is_finite():
            raise fail(f"{value!r} is not a finite amount")
        return amount
    return value


Money = Annotated[Decimal, BeforeValidator(_exact_decimal)]


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc)


def near(word: str, choices: Sequence[str]) -> str | None:
    """``did you mean 'x'?`` when a choice is close to ``word``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else None


def located(source: Source | None, loc: Loc, message: str, hint: str | None) -> DefinitionIssue:
    """An issue at ``loc`` (at the deepest part of it written in the file)."""
    if source is None:
        return DefinitionIssue(message, "<config>", key=dotted(loc) or None, hint=hint)
    position, _key = source.locate(loc)
    line, column = position if position else (None, None)
    return DefinitionIssue(message, source.file, line, column, dotted(loc) or None, hint)


def reworded(issue: DefinitionIssue) -> DefinitionIssue:
    """A YAML-level issue from the workflow file reader, in the words of this file."""
    message, hint = issue.message, issue.hint
    if message.startswith(("a workflow file must be", "the file is empty", "the file holds")):
        hint = "start with 'model_groups:' (see examples/gateway/gateway.yaml)"
    if message.startswith("a workflow file must be"):
        message = "a gateway config must be a mapping of sections (server, model_groups, …)"
    if hint:
        hint = hint.replace("workflow file", "gateway config file")
    return DefinitionIssue(message, issue.file, issue.line, issue.column, issue.key, hint)


def issues_from(
    exc: ValidationError, source: Source, root: type[BaseModel]
) -> list[DefinitionIssue]:
    """Each pydantic error (each problem of an :class:`Invalid`) at its file position, in file
    order. ``root`` is the validated model (for the keys allowed where one is unknown)."""
    issues = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, Invalid):
            issues += [located(source, (*loc, *p.loc), p.message, p.hint) for p in cause.problems]
            continue
        if error["type"] == "too_short" and len(error.get("input") or ()) > 0:
            continue  # pydantic's echo of failed items: the list was not short as written
        message, hint = _describe(error, loc, root)
        issues.append(located(source, loc, message, hint))
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line or 0, i.column or 0))


_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "decimal_type": "an amount",
    "decimal_parsing": "an amount",
    "path_type": "a file path",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", "≥"),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "≤"),
}


def _describe(error: Any, loc: Loc, root: type[BaseModel]) -> tuple[str, str | None]:
    kind: str = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    last = str(loc[-1]) if loc else "value"
    if kind == "extra_forbidden":
        allowed = _keys_of(_type_at(root, loc[:-1]))
        hint = near(last, allowed) or (
            "allowed here: " + ", ".join(sorted(allowed)) if allowed else None
        )
        return f"unknown key {last!r}", hint
    if kind == "missing":
        return f"missing required key {last!r}", f"add '{last}:'"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {show_value(value)}", None
    if kind == "literal_error":
        expected = str(ctx.get("expected", "one of the allowed values"))
        return f"expected {expected}, got {show_value(value)}", near(
            str(value), re.findall(r"'([^']*)'", expected)
        )
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {ctx.get(key)}, got {show_value(value)}", None
    if kind == "string_pattern_mismatch":
        return f"{show_value(value)} is not a valid {last}", "no spaces"
    if kind == "string_too_short":
        return "must not be empty", None
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        many = "item" if n == 1 else "items"
        return f"'{last}' needs at least {n} {many}", f"list them under '{last}:' with '- '"
    return str(error["msg"]).removeprefix("Value error, "), None


def _type_at(root: type[BaseModel], loc: Loc) -> Any:
    """The schema type at ``loc`` (a model class, a list…), following field aliases."""
    tp: Any = root
    for elem in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(elem, str):
            tp = {f.alias or n: f.annotation for n, f in tp.model_fields.items()}.get(elem)
        elif get_origin(tp) in (list, tuple) and isinstance(elem, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict and isinstance(elem, str):
            tp = get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, …]`` and ``X | None`` → ``X``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _keys_of(model: Any) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def floats_as_text(text: str, data: Any, wanted: Callable[[Loc], bool]) -> None:
    """Replace, in ``data`` (as read from ``text``), each float at a path ``wanted`` accepts by
    the scalar's text: ``0.1`` becomes ``"0.1"``, which a ``Decimal`` parses exactly."""
    root: list[yaml.Node | None] = []  # composed once, when the first such float is found

    def walk(value: Any, loc: Loc) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                value[key] = walk(item, (*loc, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = walk(item, (*loc, i))
        elif isinstance(value, float) and wanted(loc):
            if not root:
                root.append(yaml.compose(text, Loader=yaml.SafeLoader))
            return _scalar_text(root[0], loc) or value
        return value

    walk(data, ())


def _scalar_text(node: yaml.Node | None, loc: Loc) -> str | None:
    """The text of the float scalar at ``loc`` (merge keys followed), or ``None``."""
    merger = yaml.SafeLoader("")
    for elem in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(elem, str):
            merger.flatten_mapping(node)
            node = next((v for k, v in reversed(node.value) if k.value == elem), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int):
            node = node.value[elem] if elem < len(node.value) else None
        else:
            return None
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":float"):
        return str(node.value)
    return None
