"""Cost reports from the ledger: spend by any dimension and period, and savings.

Spend is the ledger's own GROUP BY (:meth:`~podium.finops.ledger.Ledger.rollup`) with exact
``Decimal`` sums. Savings re-price ledger rows with the catalog (prices in force on each row's
day), three ways:

- **vs a baseline** — "everything on model X": every row's usage priced at X, against what was
  actually paid. Cache hits count too: without Podium they would have been calls to X.
- **routing** — for rows served by another model than the one asked for (``routed_from``): what
  the requested model would have cost (the row's ``baseline_cost`` when the pipeline recorded it,
  else its usage re-priced at ``routed_from``) minus what was paid. Negative when routing
  escalated to a dearer model.
- **cache** — for cache hits (priced at zero): what the call would have cost (``baseline_cost``,
  else the usage re-priced at the row's model).

Rows that cannot be re-priced (``routed_from`` names an alias or group rather than a catalog
model, or a model without a price that day) are counted in ``unpriced``, never guessed.

The last section reads a report's query (dimensions, filters, period) from text and writes a
report as JSON data, for ``podium costs`` and ``GET /api/costs`` alike; each words its own
errors (:class:`QueryWording`) and turns a :class:`ReportQueryError` into its own refusal.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from podium.errors import PodiumError
from podium.finops.ledger import (
    DIMENSIONS,
    EXACT,
    Dimension,
    Ledger,
    LedgerEntry,
    LedgerQuery,
    SpendRow,
)
from podium.finops.pricing import UnknownPrice, price
from podium.models.catalog import Catalog

PeriodUnit = Literal["day", "week", "month", "year", "all"]
"""A report's calendar period (UTC): the one containing a given day; ``all`` is every day."""


def calendar_period(unit: Literal["day", "week", "month", "year"], day: date) -> LedgerQuery:
    """The UTC calendar day, ISO week (from Monday), month or year containing ``day``."""
    if unit == "day":
        start, end = day, day + timedelta(days=1)
    elif unit == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif unit == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        start, end = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return LedgerQuery(start=start, end=end)


@dataclass(frozen=True, slots=True)
class Savings:
    """What Podium saved over a period (USD).

    Attributes:
        actual: What was paid.
        baseline_model: The model of the "everything on X" comparison, if asked for.
        baseline: What everything would have cost on ``baseline_model``.
        vs_baseline: ``baseline - actual``.
        routing: Net saving of routed calls (requested model's cost minus the served one's).
        routed_calls: Routed rows counted in ``routing``.
        cache: What the cache hits would have cost.
        cache_hits: Cache-hit rows counted in ``cache``.
        unpriced: Rows left out of ``routing``/``cache`` because they could not be re-priced.
    """

    actual: Decimal
    baseline_model: str | None
    baseline: Decimal | None
    vs_baseline: Decimal | None
    routing: Decimal
    routed_calls: int
    cache: Decimal
    cache_hits: int
    unpriced: int


@dataclass(frozen=True, slots=True)
class BaselineComparison:
    """What was paid against what "everything on the baseline model" would have cost — the
    arithmetic of :meth:`Reports.savings` and of the learned router's evaluation alike.

    Attributes:
        actual: What was (or would be) paid.
        baseline: What everything on the baseline model costs.
    """

    actual: Decimal
    baseline: Decimal

    @property
    def saved(self) -> Decimal:
        """``baseline - actual`` (negative when the baseline is cheaper)."""
        return EXACT.subtract(self.baseline, self.actual)

    @property
    def fraction(self) -> Decimal | None:
        """``actual / baseline``: the share of the baseline's cost paid (``None`` when the
        baseline cost nothing)."""
        return EXACT.divide(self.actual, self.baseline) if self.baseline else None


class Reports:
    """Spend and savings reports over a ledger, priced with a catalog.

    Args:
        ledger: Where the cost rows are.
        catalog: Prices for re-pricing (savings).
    """

    def __init__(self, ledger: Ledger, catalog: Catalog) -> None:
        self._ledger = ledger
        self._catalog = catalog

    async def spend(
        self, by: Sequence[Dimension] = (), query: LedgerQuery | None = None
    ) -> list[SpendRow]:
        """Spend grouped by ``by`` (e.g. ``("team", "day")``) over ``query``'s rows.

        With no dimensions, one row with the total (none if nothing matched).
        """
        return await self._ledger.rollup(by, query)

    async def total(self, query: LedgerQuery | None = None) -> Decimal:
        """Exact total spend over ``query``'s rows."""
        rows = await self._ledger.rollup((), query)
        return rows[0].cost if rows else Decimal(0)

    async def savings(
        self, query: LedgerQuery | None = None, *, baseline: str | None = None
    ) -> Savings:
        """Savings over ``query``'s rows, and against "everything on ``baseline``" if given.

        Raises:
            ModelNotFound: ``baseline`` is not in the catalog.
            UnknownPrice: ``baseline`` has no price on one of the rows' days.
        """
        target = self._catalog.get(baseline) if baseline is not None else None
        actual = everything = routing = cache = Decimal(0)
        routed = hits = unpriced = 0
        for entry in await self._ledger.entries(query):
            actual = EXACT.add(actual, entry.cost)
            if target is not None:
                everything = EXACT.add(everything, price(target, entry.usage, entry.day).total)
            if entry.cache_hit:
                would = self._would_cost(entry, entry.model)
                if would is None:
                    unpriced += 1
                else:
                    cache = EXACT.add(cache, EXACT.subtract(would, entry.cost))
                    hits += 1
            elif entry.routed_from is not None and entry.routed_from != entry.model:
                would = self._would_cost(entry, entry.routed_from)
                if would is None:
                    unpriced += 1
                else:
                    routing = EXACT.add(routing, EXACT.subtract(would, entry.cost))
                    routed += 1
        return Savings(
            actual=actual,
            baseline_model=target.name if target is not None else None,
            baseline=everything if target is not None else None,
            vs_baseline=(
                BaselineComparison(actual, everything).saved if target is not None else None
            ),
            routing=routing,
            routed_calls=routed,
            cache=cache,
            cache_hits=hits,
            unpriced=unpriced,
        )

    def _would_cost(self, entry: LedgerEntry, model: str) -> Decimal | None:
        """The row's recorded baseline, else its usage priced at ``model``; ``None`` if unknown."""
        if entry.baseline_cost is not None:
            return entry.baseline_cost
        info = self._catalog.lookup(model)
        if info is None:
            return None
        try:
            return price(info, entry.usage, entry.day).total
        except UnknownPrice:
            return None


# -- report queries and JSON ----------------------------------------------------------------------


class ReportQueryError(PodiumError):
    """A report's query is invalid: an unknown or repeated dimension, a malformed filter, or
    conflicting period parameters.

    Attributes:
        param: The parameter at fault (``by``, ``where``, ``period`` or ``since``).
        message: What is wrong, worded for the surface that parsed it.
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class QueryWording:
    """How one surface (the CLI, the HTTP API) spells a report query and words its errors.

    The messages are ``str.format`` templates; the fields they may use are named below.

    Attributes:
        separator: Between a filter's dimension and value (``=`` for ``team=ml``).
        by_twice: A dimension is grouped by twice (``{name}``).
        where_syntax: A filter is not ``dimension<separator>value`` (``{pair}``).
        where_twice: A dimension is filtered twice (``{dimension}``).
        period_and_range: Both a calendar period and a ``since``/``until`` range are given.
        since_after_until: The range ends before it starts (``{since}``, ``{until}``).
    """

    separator: str
    by_twice: str
    where_syntax: str
    where_twice: str
    period_and_range: str
    since_after_until: str


_DIMENSION: dict[str, Dimension] = {d: d for d in DIMENSIONS}


def _dimension(name: str, param: str) -> Dimension:
    """The dimension called ``name``; for another name, an error suggesting the nearest one."""
    dimension = _DIMENSION.get(name)
    if dimension is None:
        near = difflib.get_close_matches(name, DIMENSIONS, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ReportQueryError(
            param, f"unknown dimension {name!r}; {hint}dimensions: {', '.join(DIMENSIONS)}"
        )
    return dimension


def parse_dimensions(values: Sequence[str], wording: QueryWording) -> list[Dimension]:
    """The ``by`` values (each may hold several, comma-separated), checked and in order.

    Raises:
        ReportQueryError: An unknown dimension, or one given twice (``param`` ``by``).
    """
    found: list[Dimension] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if not name:
                continue
            dimension = _dimension(name, "by")
            if dimension in found:
                raise ReportQueryError("by", wording.by_twice.format(name=name))
            found.append(dimension)
    return found


def parse_where(pairs: Sequence[str], wording: QueryWording) -> dict[Dimension, str]:
    """The ``where`` filters, each ``dimension`` + ``wording.separator`` + ``value``.

    Raises:
        ReportQueryError: A malformed pair, an unknown dimension, or one filtered twice
            (``param`` ``where``).
    """
    where: dict[Dimension, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(wording.separator)
        if not sep or not name.strip() or not value.strip():
            raise ReportQueryError("where", wording.where_syntax.format(pair=pair))
        dimension = _dimension(name.strip(), "where")
        if dimension in where:
            raise ReportQueryError("where", wording.where_twice.format(dimension=dimension))
        where[dimension] = value.strip()
    return where


def report_period(
    unit: PeriodUnit | None,
    on: date | None,
    since: date | None,
    until: date | None,
    *,
    today: date,
    wording: QueryWording,
) -> LedgerQuery:
    """The days a report covers: the calendar ``unit`` containing ``on`` (default ``today``),
    or ``since`` to ``until`` (both included; either may be open). Without any, the month
    containing ``today``.

    Raises:
        ReportQueryError: A period and a range both (``param`` ``period``), or ``since`` after
            ``until`` (``param`` ``since``).
    """
    if since is not None or until is not None:
        if unit is not None or on is not None:
            raise ReportQueryError("period", wording.period_and_range)
        if since is not None and until is not None and since > until:
            raise ReportQueryError(
                "since", wording.since_after_until.format(since=since, until=until)
            )
        return LedgerQuery(start=since, end=until + timedelta(days=1) if until else None)
    unit = unit or "month"
    return LedgerQuery() if unit == "all" else calendar_period(unit, on or today)


def exact(amount: Decimal) -> str:
    """A Decimal as exact fixed-point text, without trailing zeros (``'0.00045'``, ``'12'``)."""
    return format(EXACT.normalize(amount), "f")


def report_json(
    query: LedgerQuery, by: Sequence[Dimension], rows: Sequence[SpendRow], savings: Savings | None
) -> dict[str, Any]:
    """A report as JSON data (``GET /api/costs``, ``podium costs --json``): amounts as exact
    decimal strings, never JSON numbers, which most clients read as floats."""
    total = Decimal(0)
    for row in rows:
        total = EXACT.add(total, row.cost)
    return {
        "period": {
            "start": query.start.isoformat() if query.start else None,
            "end": query.end.isoformat() if query.end else None,
        },
        "by": list(by),
        "where": dict(query.where),
        "rows": [
            {
                "group": dict(zip(by, row.group, strict=True)),
                "cost": exact(row.cost),
                "calls": row.calls,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cache_read_tokens": row.cache_read_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "cache_hits": row.cache_hits,
            }
            for row in rows
        ],
        "total": exact(total),
        "savings": _savings_json(savings) if savings is not None else None,
    }


def _savings_json(s: Savings) -> dict[str, Any]:
    return {
        "actual": exact(s.actual),
        "baseline_model": s.baseline_model,
        "baseline": exact(s.baseline) if s.baseline is not None else None,
        "vs_baseline": exact(s.vs_baseline) if s.vs_baseline is not None else None,
        "routing": exact(s.routing),
        "routed_calls": s.routed_calls,
        "cache": exact(s.cache),
        "cache_hits": s.cache_hits,
        "unpriced": s.unpriced,
    }
