"""The cost ledger on every backend (memory, SQLite, PostgreSQL) and the reports over it, on a
small synthetic ledger whose sums and savings are computed by hand below."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from podium.errors import ModelNotFound, PodiumError
from podium.finops import (
    Attribution,
    Ledger,
    LedgerEntry,
    LedgerQuery,
    MemoryLedger,
    Reports,
    SQLLedger,
    UnknownPrice,
)
from podium.finops.ledger import utc_day
from podium.finops.reports import (
    PeriodUnit,
    QueryWording,
    ReportQueryError,
    calendar_period,
    parse_dimensions,
    parse_where,
    report_json,
    report_period,
)
from podium.models.base import Usage
from podium.models.catalog import Catalog

D = Decimal
CATALOG = Catalog.builtin()
ML = Attribution(org="acme", team="ml", project="x", key_id="k1", use_case="chat")
RESEARCH = Attribution(org="acme", team="research", project="y", key_id="k2", use_case="search")


def ts(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC).timestamp()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        led: Ledger = MemoryLedger()
    elif request.param == "sqlite":
        led = await SQLLedger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        url = request.getfixturevalue("pg_url")
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("TRUNCATE cost_ledger")
        led = await SQLLedger.open(url)
    yield led
    await led.close()


# -- the ledger -----------------------------------------------------------------------------------


async def test_rows_round_trip_exactly(ledger: Ledger) -> None:
    entries = [
        LedgerEntry(
            ts=ts("2025-06-01") + 0.123456,
            request_id="req-1",
            model="bedrock/amazon.nova-micro-v1:0",
            provider="bedrock",
            usage=Usage(1, 2, 3, 4, 5, 6, 7, 12.5, 1),
            cost=D("0.00000000875"),
            attribution=Attribution("acme", "ml", "x", "k1", "chat", "run-9", "claims/verify"),
            cache_hit=False,
            routed_from="smart",
            baseline_cost=D("0.0000000100"),
            attempt=1,
        ),
        LedgerEntry(
            ts=ts("2025-06-01", 13),
            request_id="req-2",
            model="openai/gpt-4o",
            provider="openai",
            usage=Usage(input_tokens=10),
            cost=D("123456789.123456789012345678901234"),  # more digits than a float holds
        ),
        LedgerEntry(ts("2025-06-01", 14), "req-3", "m/m", "m", Usage(), D("0E-12"), cache_hit=True),
    ]
    for entry in entries:
        assert await ledger.record(entry)
    got = await ledger.entries()
    assert got == entries
    assert [str(e.cost) for e in got] == [str(e.cost) for e in entries]


async def test_recording_twice_keeps_the_first_row(ledger: Ledger) -> None:
    first = LedgerEntry(ts("2025-06-01"), "req-1", "openai/gpt-4o", "openai", Usage(1), D("1"))
    assert await ledger.record(first)
    assert not await ledger.record(dataclasses.replace(first, cost=D("2")))
    retry = LedgerEntry(
        ts("2025-06-01"), "req-1", "openai/gpt-4o", "openai", Usage(1), D("3"), attempt=1
    )
    assert await ledger.record(retry)  # another billed attempt of the same request
    assert [e.cost for e in await ledger.entries()] == [D("1"), D("3")]


async def test_a_batch_goes_in_at_once_and_skips_rows_already_there(ledger: Ledger) -> None:
    rows = [
        LedgerEntry(ts("2025-06-01"), f"req-{i}", "openai/gpt-4o", "openai", Usage(i), D(i))
        for i in range(5)
    ]
    assert await ledger.record(rows[0])
    assert await ledger.record_many([*rows, dataclasses.replace(rows[3], cost=D("9"))]) == 4
    assert [e.cost for e in await ledger.entries()] == [D(i) for i in range(5)]


async def test_sums_are_exact_where_floats_are_not(ledger: Ledger) -> None:
    for i in range(10):
        await ledger.record(LedgerEntry(ts("2025-06-01"), f"a{i}", "m/a", "m", Usage(), D("0.1")))
    await ledger.record(
        LedgerEntry(ts("2025-06-02"), "big", "m/b", "m", Usage(), D("12345678.000000000001"))
    )
    await ledger.record(
        LedgerEntry(ts("2025-06-02"), "tiny", "m/b", "m", Usage(), D("0.000000000001"))
    )
    rows = await ledger.rollup(["model"])
    assert [(r.group, r.cost, r.calls) for r in rows] == [
        (("m/a",), D("1.0"), 10),  # 0.1 added ten times as floats is 0.9999999999999999
        (("m/b",), D("12345678.000000000002"), 2),
    ]
    (total,) = await ledger.rollup([])
    assert total.cost == D("12345679.000000000002")
    assert total.calls == 12


async def test_bad_rows_and_dimensions_are_refused(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match="finite Decimal"):
        await ledger.record(LedgerEntry(0.0, "r", "m/m", "m", Usage(), 0.5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dimension 'colour'"):
        await ledger.rollup(["colour"])  # type: ignore[list-item]
    assert await ledger.rollup([]) == []  # nothing recorded: no total row


# -- a small ledger, by hand ----------------------------------------------------------------------
#
# prices: gpt-4o in 0.0000025 / out 0.00001 / cache read 0.00000125;
#         gpt-4o-mini in 0.00000015 / out 0.0000006; claude-haiku-4-5 in 0.000001 / out 0.000005
#
# r1 06-01 ml   mini, asked for gpt-4o   1000 in, 500 out       0.00015 + 0.0003           = 0.00045
#    (on gpt-4o it would cost           0.0025 + 0.005                                    = 0.0075)
# r2 06-01 ml   gpt-4o                    2000 in, 1000 cached, 100 out
#                                         0.005 + 0.00125 + 0.001                          = 0.00725
# r3 06-01 ml   gpt-4o cache hit          2000 in, 100 out: paid 0, would cost 0.005 + 0.001 = 0.006
# r4 06-02 res  mini, asked for the alias "smart" (baseline 0.004 recorded)
#                                         4000 in, 1000 out      0.0006 + 0.0006           = 0.0012
# r5 06-02 res  mini, asked for "smart", no baseline: cannot be re-priced
#                                         100 in, 100 out        0.000015 + 0.00006        = 0.000075
# r6 07-01 ml   claude-haiku-4-5          1000 in, 1000 out      0.001 + 0.005             = 0.006

MINI, FOUR_O, HAIKU = "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-haiku-4-5-20251001"
SYNTHETIC = [
    LedgerEntry(
        ts("2025-06-01"),
        "r1",
        MINI,
        "openai",
        Usage(1000, 500),
        D("0.00045"),
        ML,
        routed_from=FOUR_O,
    ),
    LedgerEntry(ts("2025-06-01"), "r2", FOUR_O, "openai", Usage(2000, 100, 1000), D("0.00725"), ML),
    LedgerEntry(
        ts("2025-06-01"), "r3", FOUR_O, "openai", Usage(2000, 100), D("0"), ML, cache_hit=True
    ),
    LedgerEntry(
        ts("2025-06-02"),
        "r4",
        MINI,
        "openai",
        Usage(4000, 1000),
        D("0.0012"),
        RESEARCH,
        routed_from="smart",
        baseline_cost=D("0.004"),
    ),
    LedgerEntry(
        ts("2025-06-02"),
        "r5",
        MINI,
        "openai",
        Usage(100, 100),
        D("0.000075"),
        RESEARCH,
        routed_from="smart",
    ),
    LedgerEntry(ts("2025-07-01"), "r6", HAIKU, "anthropic", Usage(1000, 1000), D("0.006"), ML),
]
JUNE = calendar_period("month", date(2025, 6, 15))


@pytest.fixture
async def reports(ledger: Ledger) -> Reports:
    for entry in SYNTHETIC:
        await ledger.record(entry)
    return Reports(ledger, CATALOG)


def test_the_synthetic_costs_are_the_catalog_prices() -> None:
    from podium.finops import price

    for entry in SYNTHETIC:
        if not entry.cache_hit:
            assert price(CATALOG.get(entry.model), entry.usage, entry.day).total == entry.cost


async def test_spend_by_one_dimension(reports: Reports) -> None:
    async def by(dimension: str) -> list[tuple[str | None, Decimal, int]]:
        return [(r.group[0], r.cost, r.calls) for r in await reports.spend([dimension])]  # type: ignore[list-item]

    assert await by("team") == [("ml", D("0.0137"), 4), ("research", D("0.001275"), 2)]
    assert await by("day") == [
        ("2025-06-01", D("0.0077"), 3),
        ("2025-06-02", D("0.001275"), 2),
        ("2025-07-01", D("0.006"), 1),
    ]
    assert await by("month") == [("2025-06", D("0.008975"), 5), ("2025-07", D("0.006"), 1)]
    assert await by("model") == [
        (HAIKU, D("0.006"), 1),
        (FOUR_O, D("0.00725"), 2),
        (MINI, D("0.001725"), 3),
    ]
    assert await by("provider") == [("anthropic", D("0.006"), 1), ("openai", D("0.008975"), 5)]
    assert await by("routed_from") == [
        (None, D("0.01325"), 3),
        (FOUR_O, D("0.00045"), 1),
        ("smart", D("0.001275"), 2),
    ]
    assert [(r.group, r.cost) for r in await reports.spend(["use_case"])] == [
        (("chat",), D("0.0137")),
        (("search",), D("0.001275")),
    ]
    assert await reports.total() == D("0.014975")


async def test_spend_by_several_dimensions_over_a_period_with_filters(reports: Reports) -> None:
    rows = await reports.spend(["team", "model"], JUNE)
    assert [(r.group, r.cost, r.calls, r.cache_hits) for r in rows] == [
        (("ml", FOUR_O), D("0.00725"), 2, 1),
        (("ml", MINI), D("0.00045"), 1, 0),
        (("research", MINI), D("0.001275"), 2, 0),
    ]
    assert (rows[0].input_tokens, rows[0].output_tokens, rows[0].cache_read_tokens) == (
        4000,
        200,
        1000,
    )
    ml_june = LedgerQuery(
        start=date(2025, 6, 1), end=date(2025, 7, 1), where={"team": "ml", "key": "k1"}
    )
    assert [(r.group, r.cost) for r in await reports.spend(["project", "day"], ml_june)] == [
        (("x", "2025-06-01"), D("0.0077")),
    ]
    assert await reports.total(calendar_period("day", date(2025, 6, 2))) == D("0.001275")
    assert await reports.total(calendar_period("week", date(2025, 6, 1))) == D(
        "0.0077"
    )  # Mon 26 May to Sun 1 June
    assert await reports.total(calendar_period("year", date(2025, 1, 1))) == D("0.014975")
    assert await reports.spend(["team"], LedgerQuery(where={"team": "nobody"})) == []


async def test_savings_against_everything_on_one_model(reports: Reports) -> None:
    s = await reports.savings(JUNE, baseline=FOUR_O)
    # everything on gpt-4o: r1 0.0075 + r2 0.00725 + r3 0.006 + r4 (0.01 + 0.01) + r5 (0.00025 + 0.001)
    assert s.baseline == D("0.042")
    assert s.baseline_model == FOUR_O
    assert s.actual == D("0.008975")
    assert s.vs_baseline == D("0.033025")
    # routing: r1 0.0075 - 0.00045 and r4 0.004 (recorded) - 0.0012; r5 names no model
    assert (s.routing, s.routed_calls, s.unpriced) == (D("0.00985"), 2, 1)
    assert (s.cache, s.cache_hits) == (D("0.006"), 1)


async def test_savings_without_a_baseline(reports: Reports) -> None:
    s = await reports.savings()
    assert (s.actual, s.baseline, s.vs_baseline) == (D("0.014975"), None, None)
    assert (s.routing, s.cache, s.unpriced) == (D("0.00985"), D("0.006"), 1)


async def test_a_baseline_must_be_a_priced_model(reports: Reports) -> None:
    with pytest.raises(ModelNotFound):
        await reports.savings(baseline="openai/gpt-17")
    late = CATALOG.merged(
        "models:\n- name: acme/late\n  capabilities: [chat]\n  prices:\n"
        "  - effective_from: 2025-06-02\n    input: '0.000001'\n",
        "late.yaml",
    )
    with pytest.raises(UnknownPrice, match="acme/late"):
        await Reports(reports._ledger, late).savings(JUNE, baseline="acme/late")


# -- report queries and JSON ----------------------------------------------------------------------

WORDING = QueryWording(
    separator="~",
    by_twice="twice in by: {name!r}",
    where_syntax="not a filter: {pair!r}",
    where_twice="filtered twice: {dimension!r}",
    period_and_range="period and range",
    since_after_until="{since} > {until}",
)
"""A wording unlike either surface's, so the tests show whose words an error carries."""
TODAY = date(2025, 6, 15)


def test_dimensions_are_comma_separated_or_repeated_and_keep_their_order() -> None:
    assert parse_dimensions(["team, model", "", "day,"], WORDING) == ["team", "model", "day"]
    assert parse_dimensions([], WORDING) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["tem"], "unknown dimension 'tem'; did you mean 'team'? dimensions: org, team, "),
        (["team,colour"], "unknown dimension 'colour'; dimensions: org,"),
        (["team", "model,team"], "twice in by: 'team'"),
    ],
)
def test_bad_dimensions_are_refused_in_the_surfaces_words(values: list[str], message: str) -> None:
    with pytest.raises(ReportQueryError) as caught:
        parse_dimensions(values, WORDING)
    assert caught.value.param == "by"
    assert caught.value.message.startswith(message)
    assert str(caught.value) == caught.value.message
    assert isinstance(caught.value, PodiumError)


def test_filters_split_at_the_surfaces_separator() -> None:
    where = parse_where([" team ~ ml ", "model~openai/gpt-4o~free"], WORDING)
    assert where == {"team": "ml", "model": "openai/gpt-4o~free"}  # the first separator splits
    assert parse_where([], WORDING) == {}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["team=ml"], "not a filter: 'team=ml'"),  # another surface's separator
        (["team~"], "not a filter: 'team~'"),
        ([" ~ml"], "not a filter: ' ~ml'"),
        (["teem~ml"], "unknown dimension 'teem'; did you mean 'team'?"),
        (["team~ml", "team~ml"], "filtered twice: 'team'"),
    ],
)
def test_bad_filters_are_refused(pairs: list[str], message: str) -> None:
    with pytest.raises(ReportQueryError) as caught:
        parse_where(pairs, WORDING)
    assert caught.value.param == "where"
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(
    ("unit", "on", "since", "until", "start", "end"),
    [
        (None, None, None, None, date(2025, 6, 1), date(2025, 7, 1)),  # this month by default
        ("day", date(2025, 2, 28), None, None, date(2025, 2, 28), date(2025, 3, 1)),
        ("week", None, None, None, date(2025, 6, 9), date(2025, 6, 16)),  # Monday to Monday
        (None, date(2024, 12, 31), None, None, date(2024, 12, 1), date(2025, 1, 1)),
        ("year", date(2024, 3, 1), None, None, date(2024, 1, 1), date(2025, 1, 1)),
        ("all", date(2024, 3, 1), None, None, None, None),
        (None, None, date(2025, 6, 1), date(2025, 6, 1), date(2025, 6, 1), date(2025, 6, 2)),
        (None, None, date(2025, 5, 30), None, date(2025, 5, 30), None),
        (None, None, None, date(2025, 5, 31), None, date(2025, 6, 1)),  # until is included
    ],
)
def test_a_period_is_a_calendar_unit_or_an_inclusive_range(
    unit: PeriodUnit | None,
    on: date | None,
    since: date | None,
    until: date | None,
    start: date | None,
    end: date | None,
) -> None:
    query = report_period(unit, on, since, until, today=TODAY, wording=WORDING)
    assert query == LedgerQuery(start=start, end=end)


@pytest.mark.parametrize(
    ("unit", "on", "since", "until", "param", "message"),
    [
        ("day", None, date(2025, 6, 1), None, "period", "period and range"),
        (None, TODAY, None, date(2025, 6, 1), "period", "period and range"),
        (None, None, date(2025, 6, 2), date(2025, 6, 1), "since", "2025-06-02 > 2025-06-01"),
    ],
)
def test_conflicting_periods_are_refused(
    unit: PeriodUnit | None,
    on: date | None,
    since: date | None,
    until: date | None,
    param: str,
    message: str,
) -> None:
    with pytest.raises(ReportQueryError) as caught:
        report_period(unit, on, since, until, today=TODAY, wording=WORDING)
    assert (caught.value.param, caught.value.message) == (param, message)


async def test_a_report_as_json_keeps_every_amount_exact(reports: Reports) -> None:
    query = dataclasses.replace(JUNE, where={"org": "acme"})
    rows = await reports.spend(["team"], query)
    savings = await reports.savings(query, baseline=FOUR_O)
    report = report_json(query, ["team"], rows, savings)
    assert report == {
        "period": {"start": "2025-06-01", "end": "2025-07-01"},
        "by": ["team"],
        "where": {"org": "acme"},
        "rows": [
            {
                "group": {"team": "ml"},
                "cost": "0.0077",  # r1 0.00045 + r2 0.00725 + r3 0
                "calls": 3,
                "input_tokens": 5000,
                "output_tokens": 700,
                "cache_read_tokens": 1000,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "cache_hits": 1,
            },
            {
                "group": {"team": "research"},
                "cost": "0.001275",  # r4 0.0012 + r5 0.000075
                "calls": 2,
                "input_tokens": 4100,
                "output_tokens": 1100,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "cache_hits": 0,
            },
        ],
        "total": "0.008975",
        "savings": {
            "actual": "0.008975",
            "baseline_model": FOUR_O,
            "baseline": "0.042",
            "vs_baseline": "0.033025",
            "routing": "0.00985",
            "routed_calls": 2,
            "cache": "0.006",
            "cache_hits": 1,
            "unpriced": 1,  # r5
        },
    }
    empty = report_json(LedgerQuery(), [], [], None)
    assert (empty["period"], empty["rows"], empty["total"], empty["savings"]) == (
        {"start": None, "end": None},
        [],
        "0",
        None,
    )


def test_utc_day_is_right_on_both_sides_of_every_midnight_whatever_came_before() -> None:
    rng = random.Random(3)
    midnights = [
        datetime(y, m, d, tzinfo=UTC).timestamp()
        for y, m, d in [(1999, 12, 31), (2024, 2, 29), (2025, 6, 1), (2026, 11, 25)]
    ]
    asks = [t + delta for t in midnights for delta in (-1e-6, 0.0, 1e-6, -86400.0, 86399.999)]
    rng.shuffle(asks)
    for ts in [*asks, *sorted(asks), *sorted(asks, reverse=True)]:  # any order: any remembered day
        want = datetime.fromtimestamp(ts, UTC).date()
        assert utc_day(ts) == want, ts
