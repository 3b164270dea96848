"""Costs: spend from the cost ledger over a period, grouped and filtered, and savings.

``GET /api/costs`` answers what ``podium costs --json`` prints. Amounts are exact decimal
strings (``"0.00000875"``), never JSON numbers, which most clients read as floats.

Tenant isolation (:mod:`podium.api.scope`): a team-scoped caller's report covers its own team
only — its org and team are added to the filters, and the response's ``where`` shows them. Asking
for another team or organisation explicitly (``where=team:other``) is refused with a 403 that
says so, rather than answered with an empty report that would read as "they spent nothing".
Grouping by ``team`` is allowed and shows the caller's team alone. Org-wide callers see their
organisation (``org`` is added), the admin token everything.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field

from podium.api.auth import require
from podium.api.errors import ERROR_RESPONSES, ApiError
from podium.api.scope import ScopeDep, cost_filters
from podium.api.state import LedgerDep, StateDep
from podium.errors import ModelNotFound
from podium.finops.ledger import DIMENSIONS, Dimension, utc_day
from podium.finops.pricing import UnknownPrice
from podium.finops.reports import (
    PeriodUnit,
    QueryWording,
    ReportQueryError,
    Reports,
    parse_dimensions,
    parse_where,
    report_json,
    report_period,
)
from podium.models.catalog import Catalog
from podium.types import SystemClock

router = APIRouter(prefix="/api", tags=["costs"], responses=ERROR_RESPONSES)

Amount = Annotated[
    str, Field(pattern=r"^-?\d+(\.\d+)?$", examples=["0.00045"], description="Exact USD.")
]
"""An exact amount in USD, as a decimal string."""


class PeriodInfo(BaseModel):
    """The days a report covers (UTC), as a half-open range."""

    start: date | None
    """First day included (``null``: from the first recorded day)."""
    end: date | None
    """First day *not* included (``null``: to the last recorded day)."""


class SpendGroup(BaseModel):
    """Spend of one group."""

    group: dict[str, str | None]
    """The group's value of each ``by`` dimension (``null``: the rows do not say)."""
    cost: Amount
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cache_hits: int
    """Calls answered from Podium's cache (priced at zero)."""


class SavingsReport(BaseModel):
    """What routing, the cache and the model choice saved (see ``podium.finops.reports``)."""

    actual: Amount
    """What was paid."""
    baseline_model: str | None
    baseline: Amount | None
    """What every call would have cost on ``baseline_model``."""
    vs_baseline: Amount | None
    """``baseline - actual``."""
    routing: Amount
    """Net saving of calls served by another model than the one asked for."""
    routed_calls: int
    cache: Amount
    """What the cache hits would have cost."""
    cache_hits: int
    unpriced: int
    """Calls left out of ``routing`` and ``cache``: they could not be re-priced."""


class CostReport(BaseModel):
    """Spend over a period, grouped; savings when a baseline model was given."""

    period: PeriodInfo
    by: list[Dimension]
    where: dict[str, str]
    """The filters applied (dimension → value)."""
    rows: list[SpendGroup]
    """One per group, ordered by group (or by cost, descending, with ``sort=cost``)."""
    total: Amount
    """Exact sum of the rows' costs."""
    savings: SavingsReport | None


# -- query parameters -----------------------------------------------------------------------------


def _blank_is_none(value: Any) -> Any:
    """``?since=`` (as a form with an empty field sends it) means no value."""
    return None if value == "" else value


OptionalDay = Annotated[date | None, BeforeValidator(_blank_is_none)]

_WORDING = QueryWording(
    separator=":",
    by_twice="dimension {name!r} is given twice",
    where_syntax="where takes dimension:value (e.g. team:ml), got {pair!r}",
    where_twice="dimension {dimension!r} is filtered twice; give one value",
    period_and_range="give period/on or since/until, not both",
    since_after_until="since ({since}) is after until ({until})",
)
"""How ``GET /api/costs`` words a bad report query (the parameter is the error's ``key``)."""


def _invalid(param: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", param), "msg": message}]
    )


# -- the route ------------------------------------------------------------------------------------


@router.get(
    "/costs",
    dependencies=[require("costs:read")],
    responses={
        403: {"description": "The filters name another team or organisation than the caller's"},
        503: {"description": "The server has no cost ledger (or no model catalog)"},
    },
)
async def get_costs(
    state: StateDep,
    ledger: LedgerDep,
    scope: ScopeDep,
    by: Annotated[
        list[str],
        Query(
            description="Group by these dimensions (comma-separated, or repeated): "
            + ", ".join(DIMENSIONS)
            + ". None: one total row."
        ),
    ] = [],  # noqa: B006
    period: Annotated[
        PeriodUnit | None,
        Query(description="The calendar period (UTC) containing `on`; `month` by default."),
    ] = None,
    on: Annotated[
        OptionalDay, Query(description="A day in the period (default: today, UTC).")
    ] = None,
    since: Annotated[
        OptionalDay, Query(description="First day included (instead of `period`).")
    ] = None,
    until: Annotated[
        OptionalDay, Query(description="Last day included (instead of `period`).")
    ] = None,
    where: Annotated[
        list[str],
        Query(description="Only rows where `dimension:value`, e.g. `team:ml` (repeatable)."),
    ] = [],  # noqa: B006
    baseline: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Compute savings against running every call on this model.",
        ),
    ] = None,
    sort: Annotated[
        Literal["group", "cost"], Query(description="Order rows by group, or by cost (desc).")
    ] = "group",
) -> CostReport:
    """Spend over a period grouped by any dimensions, with exact totals, and savings against
    a baseline model when one is given. Only the caller's team (or organisation) is counted;
    a filter naming another one is refused with a 403."""
    clock = state.engine.clock if state.engine is not None else SystemClock()
    try:
        dimensions = parse_dimensions(by, _WORDING)
        filters = parse_where(where, _WORDING)
        query = report_period(
            period, on, since, until, today=utc_day(clock.now()), wording=_WORDING
        )
    except ReportQueryError as exc:
        raise _invalid(exc.param, exc.message) from None
    query = dataclasses.replace(query, where=cost_filters(scope, filters))
    catalog = Catalog()  # spend needs no prices
    if baseline:
        if state.model_catalog is None:
            raise ApiError(503, "savings are unavailable: this server has no model catalog")
        catalog = state.model_catalog
        try:
            catalog.get(baseline)
        except ModelNotFound as exc:
            raise _invalid("baseline", str(exc)) from None
    reports = Reports(ledger, catalog)
    rows = await reports.spend(dimensions, query)
    if sort == "cost":
        rows.sort(key=lambda r: r.cost, reverse=True)  # stable: ties keep the group order
    savings = None
    if baseline:
        try:
            savings = await reports.savings(query, baseline=baseline)
        except UnknownPrice as exc:
            raise _invalid("baseline", str(exc)) from None
    return CostReport.model_validate(report_json(query, dimensions, rows, savings))
