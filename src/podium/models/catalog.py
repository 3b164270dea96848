"""The model catalog: what each model is, can do, and costs — prices as ``Decimal`` per unit,
each with the date it took effect, so a price change never rewrites history.

The built-in catalog is ``models/data/catalog.yaml`` (every hosted figure taken from LiteLLM's
public price map, plus the local models). Users layer their own files over it with
:meth:`Catalog.load`: a user entry adds a model, or adds a newer :class:`Price` to an existing one
(and may override its other fields); prices are appended by date, never replaced. Prices in YAML
are quoted strings (``input: '0.0000025'``), so they stay exact; an unquoted YAML decimal is a
float and is refused with a message saying so. Every problem in a file is reported at its
``file:line:column``, naming the model and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from podium.errors import ConfigError, DefinitionError, DefinitionIssue, ModelNotFound
from podium.models.base import Capability

if TYPE_CHECKING:
    from podium.workflows.loader import Source

USER_CATALOG = "catalog.yaml"
"""The user's catalog file inside ``Settings.home``; ``podium models import`` writes it."""


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices that apply when a request's input exceeds ``above_input_tokens`` (long context)."""

    above_input_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """Per-unit prices in USD, effective from a date. ``None`` means the model has no such
    charge; ``reasoning=None`` means reasoning tokens are billed as output."""

    effective_from: date
    input: Decimal = Decimal(0)
    """Per input token."""
    output: Decimal = Decimal(0)
    """Per output token."""
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()
    per_character: Decimal | None = None
    per_image: Decimal | None = None
    per_second: Decimal | None = None
    per_request: Decimal | None = None
    source: str = ""
    """Where the figure comes from (a price page, LiteLLM's map, an operator's file)."""

    def same_figures(self, other: Price) -> bool:
        """Whether ``other`` charges exactly the same (dates and sources aside)."""
        return dataclasses.replace(self, effective_from=other.effective_from, source="") == (
            dataclasses.replace(other, source="")
        )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A catalog entry."""

    name: str
    """Podium's name, ``provider/model`` (e.g. ``openai/gpt-4o``, ``local/vader-sentiment``)."""
    provider: str
    provider_model: str
    """The model id the provider's API expects."""
    capabilities: frozenset[Capability]
    context_window: int | None = None
    max_output: int | None = None
    prices: tuple[Price, ...] = ()
    """Oldest first."""
    local: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def price_at(self, when: date) -> Price | None:
        """The price in force on ``when`` (``None`` when no price is known for that date)."""
        current = None
        for price in self.prices:
            if price.effective_from <= when:
                current = price
        return current

    @property
    def latest_price(self) -> Price | None:
        """The most recent price (``None`` for a model without prices)."""
        return self.prices[-1] if self.prices else None


class CatalogError(ConfigError):
    """A catalog file is invalid. ``issues`` lists every problem found, each located."""

    def __init__(self, issues: Sequence[DefinitionIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# -- the file format ------------------------------------------------------------------------------


def _money(value: object) -> object:
    """Prices are exact: quoted decimal strings or integers; floats are refused."""
    if isinstance(value, bool) or value is None:
        raise ValueError("a price must be a quoted decimal string, e.g. '0.0000025'")
    if isinstance(value, float):
        written = format(Decimal(repr(value)), "f")
        raise ValueError(
            f"quote the price ('{written}'): an unquoted decimal is a YAML float, which cannot "
            "hold most prices exactly"
        )
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not amount.is_finite():
            raise ValueError(f"{value!r} is not a finite price")
        return amount
    raise ValueError("a price must be a quoted decimal string, e.g. '0.0000025'")


Money = Annotated[Decimal, BeforeValidator(_money), Field(ge=0)]
"""A non-negative exact price per unit (USD)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierSpec(_Spec):
    """A long-context tier as written in a catalog file."""

    above_input_tokens: int = Field(gt=0)
    input: Money
    output: Money
    cache_read: Money | None = None
    cache_write: Money | None = None


class PriceSpec(_Spec):
    """One dated price as written in a catalog file (per token unless named otherwise)."""

    effective_from: date
    input: Money = Decimal(0)
    output: Money = Decimal(0)
    cache_read: Money | None = None
    cache_write: Money | None = None
    reasoning: Money | None = None
    tiers: list[TierSpec] = []
    per_character: Money | None = None
    per_image: Money | None = None
    per_second: Money | None = None
    per_request: Money | None = None
    source: str = ""

    def to_price(self) -> Price:
        values = self.model_dump(exclude={"tiers"})
        tiers = tuple(PriceTier(**t.model_dump()) for t in self.tiers)
        return Price(**values, tiers=tuple(sorted(tiers, key=lambda t: t.above_input_tokens)))


class ModelSpec(_Spec):
    """One model as written in a catalog file. Only ``name`` is required when the entry adds a
    price to (or overrides fields of) a model defined by an earlier file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*/\S+$")
    """``provider/model``."""
    provider: str | None = None
    """Defaults to the part of ``name`` before the first ``/``."""
    provider_model: str | None = None
    """Defaults to the part of ``name`` after the first ``/``."""
    capabilities: list[Capability] | None = None
    context_window: int | None = Field(default=None, gt=0)
    max_output: int | None = Field(default=None, gt=0)
    prices: list[PriceSpec] = []
    local: bool | None = None
    aliases: list[str] | None = None
    description: str | None = None
    extra: dict[str, str] | None = None


class CatalogSpec(_Spec):
    """A whole catalog file."""

    version: Literal[1] = 1
    models: list[ModelSpec] = []


_OVERRIDABLE = (
    "provider_model",
    "context_window",
    "max_output",
    "local",
    "description",
    "extra",
)


# -- the catalog ----------------------------------------------------------------------------------


class Catalog:
    """Models by name and alias. Immutable: loading returns a new catalog."""

    def __init__(self, models: Iterable[ModelInfo] = ()) -> None:
        self._models: dict[str, ModelInfo] = {}
        self._aliases: dict[str, str] = {}
        for info in models:
            if info.name in self._models:
                raise _Clash(info.name, f"model {info.name!r} is listed twice")
            self._models[info.name] = info
        for info in self._models.values():
            for alias in info.aliases:
                taken = self._aliases.get(alias) or (alias if alias in self._models else None)
                if taken is not None and taken != info.name:
                    raise _Clash(info.name, f"alias {alias!r} already names {taken!r}")
                self._aliases[alias] = info.name

    @classmethod
    def builtin(cls) -> Catalog:
        """The catalog shipped with Podium (parsed once per process)."""
        return _builtin()

    @classmethod
    def load(cls, *paths: str | Path, builtin: bool = True) -> Catalog:
        """The built-in catalog (unless ``builtin=False``) with each file layered over it."""
        catalog = cls.builtin() if builtin else cls()
        for path in paths:
            p = Path(path)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as exc:
                issue = DefinitionIssue(f"cannot read the catalog file: {exc}", str(p))
                raise CatalogError([issue]) from None
            catalog = catalog.merged(text, str(p))
        return catalog

    @classmethod
    def for_home(cls, home: Path) -> Catalog:
        """The built-in catalog plus ``<home>/catalog.yaml`` when it exists."""
        user = home / USER_CATALOG
        return cls.load(user) if user.is_file() else cls.builtin()

    def merged(self, text: str, file: str, *, data: Any = None) -> Catalog:
        """This catalog with the YAML catalog ``text`` (read from ``file``) layered over it.

        ``data`` is ``text`` already loaded (by a safe YAML loader), to spare parsing it again;
        ``text`` is still needed to locate any problem.
        """
        data, spec = _parse(text, file, data)
        models = dict(self._models)
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for i, entry in enumerate(spec.models):
            where: tuple[str | int, ...] = ("models", i)
            if entry.name in seen:
                problems.append(((*where, "name"), f"model {entry.name!r} is listed twice"))
                continue
            seen.add(entry.name)
            try:
                models[entry.name] = _apply(models.get(entry.name), entry)
            except _EntryProblem as exc:
                problems.append(((*where, *exc.loc), exc.message))
        if not problems:
            try:
                return Catalog(models.values())
            except _Clash as exc:
                index = next((i for i, e in enumerate(spec.models) if e.name == exc.model), None)
                where = ("models",) if index is None else ("models", index, "aliases")
                problems.append((where, str(exc)))
        raise CatalogError(_locate(problems, data, text, file))

    def including(self, models: Iterable[ModelInfo]) -> Catalog:
        """This catalog plus ``models`` it does not already hold (e.g. the local models the
        installed plug-ins register)."""
        extra = [m for m in models if m.name not in self]
        return Catalog([*self, *extra]) if extra else self

    def lookup(self, name: str) -> ModelInfo | None:
        """The model called ``name`` (or aliased so), or ``None``."""
        info = self._models.get(name)
        if info is None and name in self._aliases:
            info = self._models[self._aliases[name]]
        return info

    def get(self, name: str) -> ModelInfo:
        """The model called ``name`` (or aliased so). Raises ``ModelNotFound``."""
        info = self.lookup(name)
        if info is None:
            known = [*self._models, *self._aliases]
            near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise ModelNotFound(f"no model {name!r} in the catalog{hint}", model=name)
        return info

    def find(
        self,
        *,
        provider: str | None = None,
        capability: Capability | str | None = None,
        local: bool | None = None,
    ) -> list[ModelInfo]:
        """Models matching every filter given, by name."""
        wanted = Capability(capability) if capability is not None else None
        return [
            m
            for m in self
            if (provider is None or m.provider == provider)
            and (wanted is None or wanted in m.capabilities)
            and (local is None or m.local == local)
        ]

    @property
    def providers(self) -> list[str]:
        return sorted({m.provider for m in self._models.values()})

    def __contains__(self, name: object) -> bool:
        return name in self._models or name in self._aliases

    def __iter__(self) -> Iterator[ModelInfo]:
        return (self._models[n] for n in sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)


@functools.cache
def _builtin() -> Catalog:
    source = resources.files("podium.models").joinpath("data", "catalog.yaml")
    return Catalog().merged(source.read_text(encoding="utf-8"), str(source))


class _Clash(ValueError):
    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(message)


class _EntryProblem(Exception):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        self.message = message


def _apply(existing: ModelInfo | None, entry: ModelSpec) -> ModelInfo:
    """``entry`` as a new model, or layered over ``existing``."""
    prefix, _, rest = entry.name.partition("/")
    if entry.provider is not None and entry.provider != prefix:
        raise _EntryProblem(
            ("provider",), f"provider {entry.provider!r} differs from the name's {prefix!r}"
        )
    written = sorted(
        ((p.to_price(), j) for j, p in enumerate(entry.prices)), key=lambda t: t[0].effective_from
    )
    for (a, _), (b, j) in itertools.pairwise(written):
        if a.effective_from == b.effective_from:
            raise _EntryProblem(
                ("prices", j, "effective_from"), f"two prices take effect on {a.effective_from}"
            )
    new = [p for p, _ in written]
    if existing is None:
        if not entry.capabilities:
            raise _EntryProblem(
                ("capabilities",), "a new model needs its capabilities (e.g. [chat, stream])"
            )
        return ModelInfo(
            name=entry.name,
            provider=prefix,
            provider_model=entry.provider_model or rest,
            capabilities=frozenset(entry.capabilities),
            context_window=entry.context_window,
            max_output=entry.max_output,
            prices=tuple(new),
            local=bool(entry.local),
            aliases=tuple(entry.aliases or ()),
            description=entry.description or "",
            extra=dict(entry.extra or {}),
        )
    changes: dict[str, Any] = {
        k: getattr(entry, k) for k in _OVERRIDABLE if k in entry.model_fields_set
    }
    for key, empty in (("local", False), ("description", ""), ("extra", {})):
        if key in changes and changes[key] is None:
            changes[key] = empty
    if entry.capabilities:
        changes["capabilities"] = frozenset(entry.capabilities)
    if entry.aliases is not None:
        changes["aliases"] = tuple(entry.aliases)
    changes["prices"] = _append_prices(existing.prices, written)
    return dataclasses.replace(existing, **changes)


def _append_prices(history: tuple[Price, ...], new: list[tuple[Price, int]]) -> tuple[Price, ...]:
    """``history`` with the ``(price, index in the file)`` pairs of ``new`` added by date."""
    dated = {p.effective_from: p for p in history}
    for price, j in new:
        old = dated.get(price.effective_from)
        if old is not None and not old.same_figures(price):
            raise _EntryProblem(
                ("prices", j, "effective_from"),
                f"a different price already takes effect on {price.effective_from}; history is "
                "never rewritten: give the new price a later effective_from",
            )
        dated.setdefault(price.effective_from, price)
    return tuple(dated[d] for d in sorted(dated))


# -- reading and locating -------------------------------------------------------------------------

_FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, file: str) -> Any:
    """Load YAML with libyaml when available; on a syntax error, raise it located."""
    try:
        return yaml.load(text, Loader=_FastLoader)
    except yaml.YAMLError:
        return _located_source(text, file).data  # raises the located syntax error


def _parse(text: str, file: str, data: Any = None) -> tuple[Any, CatalogSpec]:
    """Validate a catalog file. Positions for messages are computed only when something is
    wrong, so a large file loads at libyaml's speed."""
    if data is None:
        data = load_yaml(text, file)
    if not isinstance(data, dict):
        raise CatalogError(
            [
                DefinitionIssue(
                    "a catalog file must be a mapping with a 'models' list",
                    file,
                    1,
                    1,
                    hint="start with 'models:' and list entries with 'name:'",
                )
            ]
        )
    try:
        return data, CatalogSpec.model_validate(data)
    except ValidationError as exc:
        problems = [(tuple(e["loc"]), _pydantic_message(e)) for e in exc.errors()]
        raise CatalogError(_locate(problems, data, text, file)) from None


def _pydantic_message(error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        fields = _spec_at(loc).model_fields
        near = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"known fields: {', '.join(fields)}"
        return f"unknown field; {hint}"
    if error["type"] == "string_pattern_mismatch" and loc[-1:] == ("name",):
        return "a model name is 'provider/model' with a lower-case provider, e.g. 'openai/gpt-4o'"
    return str(error["msg"]).removeprefix("Value error, ")


def _spec_at(loc: tuple[str | int, ...]) -> type[BaseModel]:
    """The schema that holds the last key of ``loc``."""
    depth = sum(isinstance(k, str) for k in loc[:-1])  # models → prices → tiers
    levels: list[type[BaseModel]] = [CatalogSpec, ModelSpec, PriceSpec, TierSpec]
    return levels[min(depth, len(levels) - 1)]


def _located_source(text: str, file: str) -> Source:
    # imported here: the workflow loader is needed only to locate errors, and a lazy import
    # keeps podium.models from depending on the workflow package at import time
    from podium.workflows.loader import parse_yaml

    try:
        return parse_yaml(text, file)
    except DefinitionError as exc:
        raise CatalogError(exc.issues) from None


def _locate(
    problems: list[tuple[tuple[str | int, ...], str]], data: Any, text: str, file: str
) -> list[DefinitionIssue]:
    source = _located_source(text, file)
    issues = []
    for loc, message in problems:
        (line, column), key = _position(source, loc)
        name = _model_name(data, loc)
        prefix = f"model {name!r}: " if name else ""
        field_path = ".".join(str(p) for p in loc[2:]) if name else key
        text_ = f"{prefix}{field_path}: {message}" if field_path else f"{prefix}{message}"
        issues.append(DefinitionIssue(text_, file, line, column, key))
    return sorted(issues, key=lambda i: (i.line or 0, i.column or 0))


def _position(source: Source, loc: tuple[str | int, ...]) -> tuple[tuple[int, int], str | None]:
    position, key = source.locate(loc)
    return (position or (1, 1)), key


def _model_name(data: Any, loc: tuple[str | int, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        models = data.get("models") if isinstance(data, dict) else None
        if isinstance(models, list) and 0 <= loc[1] < len(models):
            entry = models[loc[1]]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                return str(entry["name"])
    return None


# -- writing --------------------------------------------------------------------------------------


def money(amount: Decimal) -> str:
    """A price as exact fixed-point text (``Decimal('2.5E-6')`` → ``'0.0000025'``)."""
    return format(amount.normalize(), "f")


def price_to_dict(price: Price) -> dict[str, Any]:
    """A price as catalog-file data: decimals as strings, absent charges omitted."""
    out: dict[str, Any] = {"effective_from": price.effective_from}
    for f in dataclasses.fields(Price):
        value = getattr(price, f.name)
        if isinstance(value, Decimal):
            out[f.name] = money(value)
    if price.tiers:
        out["tiers"] = [
            {
                k: (money(v) if isinstance(v, Decimal) else v)
                for k, v in dataclasses.asdict(t).items()
                if v is not None
            }
            for t in price.tiers
        ]
    if price.source:
        out["source"] = price.source
    return out


def model_to_dict(info: ModelInfo) -> dict[str, Any]:
    """A model as catalog-file data (what :meth:`Catalog.load` reads back unchanged)."""
    out: dict[str, Any] = {"name": info.name}
    if info.provider_model != info.name.partition("/")[2]:
        out["provider_model"] = info.provider_model
    if info.aliases:
        out["aliases"] = list(info.aliases)
    out["capabilities"] = sorted(c.value for c in info.capabilities)
    for key in ("context_window", "max_output"):
        if getattr(info, key) is not None:
            out[key] = getattr(info, key)
    if info.local:
        out["local"] = True
    if info.description:
        out["description"] = info.description
    if info.extra:
        out["extra"] = dict(info.extra)
    out["prices"] = [price_to_dict(p) for p in info.prices]
    return out


def dump_catalog(entries: Sequence[dict[str, Any]], header: str = "") -> str:
    """Catalog-file YAML for ``entries`` (as made by :func:`model_to_dict`)."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump(
        {"version": 1, "models": list(entries)},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return comment + body


# mypy cannot follow a base class picked at run time (libyaml's dumper when it is installed)
class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Writes no anchors, and short lists of words on one line (``[chat, stream]``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = bool(data) and all(isinstance(x, str | int) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
