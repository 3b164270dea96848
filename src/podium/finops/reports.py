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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from podium.finops.ledger import EXACT, Dimension, Ledger, LedgerEntry, LedgerQuery, SpendRow
from podium.finops.pricing import UnknownPrice, price
from podium.models.catalog import Catalog


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
            vs_baseline=EXACT.subtract(everything, actual) if target is not None else None,
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
