"""``podium costs`` on a real ledger (a SQLite file; PostgreSQL too), as a FinOps user types it.

The ledger below is small enough to sum by hand; ``tests/api/test_costs.py`` serves the same rows
and checks that ``GET /api/costs`` answers exactly what ``podium costs --json`` prints.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from podium.cli import app
from podium.cli.costs import dollars, exact
from podium.finops import Attribution, Ledger, LedgerEntry, SQLLedger, price
from podium.models.base import Usage
from podium.models.catalog import Catalog

D = Decimal
MINI, FOUR_O, HAIKU = "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-haiku-4-5-20251001"
ML = Attribution(org="acme", team="ml", project="search", key_id="k-ml")
RESEARCH = Attribution(org="acme", team="research", project="eval", key_id="k-res")


def ts(when: str) -> float:
    return datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


# Catalog prices (USD per token): gpt-4o in 0.0000025 / out 0.00001 / cache read 0.00000125;
# gpt-4o-mini in 0.00000015 / out 0.0000006 / cache read 0.000000075;
# claude-haiku-4-5 in 0.000001 / out 0.000005.
#
# e1 10-31 23:59:59 ml        gpt-4o  1000 in, 100 out     0.0025 + 0.001             = 0.0035
# e2 11-01 00:00:00 ml        mini, asked for gpt-4o, 1000 in, 500 out
#                                                          0.00015 + 0.0003           = 0.00045
# e3 11-15          ml        gpt-4o  2000 in, 1000 cache read, 100 out
#                                                          0.005 + 0.00125 + 0.001    = 0.00725
# e4 11-24          research  gpt-4o cache hit, 2000 in, 100 out: paid 0
# e5 11-30 23:59:59 research  haiku   1000 in, 1000 out    0.001 + 0.005              = 0.006
# e6 12-01 00:00:00 research  haiku   2000 in              0.002                      = 0.002
# e7 11-24          (no team) mini    100 in, 100 out      0.000015 + 0.00006         = 0.000075
#
# November: 0.00045 + 0.00725 + 0 + 0.006 + 0.000075 = 0.013775 (5 calls, 1 cache hit)
SPEND = [
    LedgerEntry(ts("2026-10-31T23:59:59"), "e1", FOUR_O, "openai", Usage(1000, 100), D("0.0035"), ML),
    LedgerEntry(ts("2026-11-01T00:00:00"), "e2", MINI, "openai", Usage(1000, 500), D("0.00045"), ML, routed_from=FOUR_O),
    LedgerEntry(ts("2026-11-15T09:30:00"), "e3", FOUR_O, "openai", Usage(2000, 100, 1000), D("0.00725"), ML),
    LedgerEntry(ts("2026-11-24T10:00:00"), "e4", FOUR_O, "openai", Usage(2000, 100), D("0"), RESEARCH, cache_hit=True),
    LedgerEntry(ts("2026-11-30T23:59:59"), "e5", HAIKU, "anthropic", Usage(1000, 1000), D("0.006"), RESEARCH),
    LedgerEntry(ts("2026-12-01T00:00:00"), "e6", HAIKU, "anthropic", Usage(2000), D("0.002"), RESEARCH),
    LedgerEntry(ts("2026-11-24T11:00:00"), "e7", MINI, "openai", Usage(100, 100), D("0.000075")),
]  # fmt: skip


def spend_row(group: dict[str, str | None], cost: str, calls: int, **counts: int) -> dict[str, Any]:
    """A row as ``--json`` and the API write it."""
    row: dict[str, Any] = {"group": group, "cost": cost, "calls": calls}
    for name in ("input", "output", "cache_read", "cache_write", "reasoning"):
        row[f"{name}_tokens"] = counts.get(name, 0)
    row["cache_hits"] = counts.get("hits", 0)
    return row


NOVEMBER_BY_TEAM_MODEL: dict[str, Any] = {
    "period": {"start": "2026-11-01", "end": "2026-12-01"},
    "by": ["team", "model"],
    "where": {},
    "rows": [
        spend_row({"team": None, "model": MINI}, "0.000075", 1, input=100, output=100),
        spend_row(
            {"team": "ml", "model": FOUR_O}, "0.00725", 1, input=2000, output=100, cache_read=1000
        ),
        spend_row({"team": "ml", "model": MINI}, "0.00045", 1, input=1000, output=500),
        spend_row({"team": "research", "model": HAIKU}, "0.006", 1, input=1000, output=1000),
        spend_row({"team": "research", "model": FOUR_O}, "0", 1, input=2000, output=100, hits=1),
    ],
    "total": "0.013775",
    "savings": None,
}
"""``--by team,model --period month --on 2026-11-24``, summed by hand (groups sorted, ``None``
first)."""

# Everything in November on gpt-4o:
#   e2 0.0025 + 0.005 = 0.0075          e3 0.005 + 0.00125 + 0.001 = 0.00725
#   e4 0.005 + 0.001 = 0.006            e5 0.0025 + 0.01 = 0.0125      e7 0.00025 + 0.001 = 0.00125
#   = 0.0345; saved 0.0345 - 0.013775 = 0.020725
# Routing: e2 would have cost 0.0075 on gpt-4o, paid 0.00045: 0.00705. Cache: e4 0.006.
NOVEMBER_SAVINGS_VS_4O = {
    "actual": "0.013775",
    "baseline_model": FOUR_O,
    "baseline": "0.0345",
    "vs_baseline": "0.020725",
    "routing": "0.00705",
    "routed_calls": 1,
    "cache": "0.006",
    "cache_hits": 1,
    "unpriced": 0,
}
# Everything in November on gpt-4o-mini (cheaper than what was used):
#   e2 0.00045   e3 0.0003 + 0.000075 + 0.00006 = 0.000435   e4 0.0003 + 0.00006 = 0.00036
#   e5 0.00015 + 0.0006 = 0.00075   e7 0.000075   = 0.00207; "saved" 0.00207 - 0.013775 = -0.011705

PERIOD_TOTALS = [
    # (CLI options, API query, total, first day, first day after)
    (["--period", "month", "--on", "2026-10-31"], "period=month&on=2026-10-31", "0.0035", "2026-10-01", "2026-11-01"),
    (["--period", "month", "--on", "2026-12-01"], "period=month&on=2026-12-01", "0.002", "2026-12-01", "2027-01-01"),
    (["--period", "day", "--on", "2026-11-30"], "period=day&on=2026-11-30", "0.006", "2026-11-30", "2026-12-01"),
    (["--period", "day", "--on", "2026-11-01"], "period=day&on=2026-11-01", "0.00045", "2026-11-01", "2026-11-02"),
    (["--period", "week", "--on", "2026-11-24"], "period=week&on=2026-11-24", "0.000075", "2026-11-23", "2026-11-30"),
    (["--period", "year", "--on", "2026-06-01"], "period=year&on=2026-06-01", "0.019275", "2026-01-01", "2027-01-01"),
    (["--since", "2026-11-30", "--until", "2026-12-01"], "since=2026-11-30&until=2026-12-01", "0.008", "2026-11-30", "2026-12-02"),
    (["--since", "2026-10-31", "--until", "2026-10-31"], "since=2026-10-31&until=2026-10-31", "0.0035", "2026-10-31", "2026-11-01"),
    (["--since", "2026-12-01"], "since=2026-12-01", "0.002", "2026-12-01", None),
    (["--until", "2026-10-31"], "until=2026-10-31", "0.0035", None, "2026-11-01"),
    (["--period", "all"], "period=all", "0.019275", None, None),
]  # fmt: skip
"""One row either side of each month boundary: the last second of October and of November, the
first second of November and of December."""


async def seed(ledger: Ledger, entries: list[LedgerEntry] = SPEND) -> None:
    for entry in entries:
        assert await ledger.record(entry)


def write_ledger(url: str, entries: list[LedgerEntry]) -> None:
    """Record ``entries`` in the (migrated) database at ``url``, from a synchronous test."""

    async def write() -> None:
        ledger = await SQLLedger.open(url)
        try:
            await seed(ledger, entries)
        finally:
            await ledger.close()

    asyncio.run(write())


# -- fixtures -------------------------------------------------------------------------------------

Invoke = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path / ".podium"))
    monkeypatch.delenv("PODIUM_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, columns: int = 160) -> Result:
        return runner.invoke(app, ["costs", *args], env={"COLUMNS": str(columns)})

    return invoke


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database holding :data:`SPEND`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("TRUNCATE cost_ledger")
    ledger = await SQLLedger.open(url)
    try:
        await seed(ledger)
    finally:
        await ledger.close()
    return url


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(result: Result, *fragments: str) -> str:
    """The error output of a command that must fail with exit code 2 and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    text = " ".join(result.stderr.replace("│", " ").split())  # rich wraps messages in a box
    for fragment in fragments:
        assert fragment in text, result.stderr
    return text


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("│┃").split("│" if "│" in line else "┃")]


def header(result: Result) -> list[str]:
    """The column names of the printed table."""
    return cells(next(line for line in result.stdout.splitlines() if line.startswith("┃")))


def body(result: Result) -> dict[str, list[str]]:
    """The printed table's rows (those a long value wraps onto several lines excepted), by
    their first cell."""
    rows = [cells(line) for line in result.stdout.splitlines() if line.startswith("│")]
    return {row[0]: row[1:] for row in rows if row[0]}


# -- the report -----------------------------------------------------------------------------------


def test_json_groups_by_several_dimensions_with_exact_sums(cli: Invoke, db: str) -> None:
    report = as_json(cli("--db", db, "--by", "team,model", "--on", "2026-11-24", "--json"))
    assert report == NOVEMBER_BY_TEAM_MODEL
    # --by may be repeated instead of comma-separated; --period month is the default
    again = cli(
        "--db",
        db,
        "--by",
        "team",
        "--by",
        "model",
        "--period",
        "month",
        "--on",
        "2026-11-24",
        "--json",
    )
    assert as_json(again) == NOVEMBER_BY_TEAM_MODEL


def test_the_table_shows_each_group_exact_costs_and_a_total(cli: Invoke, db: str) -> None:
    result = cli("--db", db, "--by", "team", "--on", "2026-11-24")
    assert result.exit_code == 0, result.output
    assert "Spend by team in November 2026" in result.stdout
    assert header(result) == [
        "team",
        "cost (USD)",
        "share",
        "calls",
        "in tok",
        "out tok",
        "cache rd",
        "hits",
    ]
    assert body(result) == {
        "(none)": ["$0.000075", "0.5%", "1", "100", "100", "0", "0"],
        "ml": ["$0.0077", "55.9%", "2", "3,000", "600", "1,000", "0"],
        "research": ["$0.006", "43.6%", "2", "3,000", "1,100", "0", "1"],
        "total": ["$0.013775", "", "5", "6,100", "1,800", "1,000", "1"],
    }


def test_a_narrow_terminal_keeps_the_costs_and_sums_the_tokens(cli: Invoke, db: str) -> None:
    result = cli("--db", db, "--by", "team,model,provider,day", "--on", "2026-11-24", columns=100)
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 100 for line in result.stdout.splitlines())
    assert header(result)[4:] == ["cost (USD)", "share", "calls", "tokens", "hits"]
    assert body(result)["total"] == ["", "", "", "$0.013775", "", "5", "8,900", "1"]


@pytest.mark.parametrize(("options", "query", "total", "start", "end"), PERIOD_TOTALS)
def test_periods_end_exactly_at_their_boundaries(
    cli: Invoke,
    db: str,
    options: list[str],
    query: str,
    total: str,
    start: str | None,
    end: str | None,
) -> None:
    report = as_json(cli("--db", db, *options, "--json"))
    assert report["total"] == total
    assert report["period"] == {"start": start, "end": end}


def test_where_filters(cli: Invoke, db: str) -> None:
    ml = as_json(
        cli("--db", db, "--by", "model", "--on", "2026-11-24", "--where", "team=ml", "--json")
    )
    assert ml["where"] == {"team": "ml"}
    assert [(r["group"]["model"], r["cost"]) for r in ml["rows"]] == [
        (FOUR_O, "0.00725"),
        (MINI, "0.00045"),
    ]
    assert ml["total"] == "0.0077"
    both = cli("--db", db, "--on", "2026-11-24", "-w", "team=ml", "-w", f"model={FOUR_O}", "--json")
    assert as_json(both)["total"] == "0.00725"
    shown = cli("--db", db, "--by", "day", "--on", "2026-11-24", "--where", "key=k-res")
    assert "where key=k-res" in shown.stdout
    assert "2026-11-24" in shown.stdout
    assert "2026-11-30" in shown.stdout
    assert "2026-11-01" not in shown.stdout


def test_sort_by_cost(cli: Invoke, db: str) -> None:
    report = as_json(
        cli("--db", db, "--by", "team", "--on", "2026-11-24", "--sort", "cost", "--json")
    )
    assert [(r["group"]["team"], r["cost"]) for r in report["rows"]] == [
        ("ml", "0.0077"),
        ("research", "0.006"),
        (None, "0.000075"),
    ]


def test_savings_against_a_baseline(cli: Invoke, db: str) -> None:
    report = as_json(
        cli("--db", db, "--on", "2026-11-24", "--savings", "--baseline", FOUR_O, "--json")
    )
    assert report["savings"] == NOVEMBER_SAVINGS_VS_4O
    shown = cli("--db", db, "--on", "2026-11-24", "--savings", "--baseline", "gpt-4o")  # an alias
    assert shown.exit_code == 0, shown.output
    assert body(shown)["actual spend"] == ["$0.013775", ""]
    assert body(shown)["everything on openai/gpt-4o"] == ["$0.0345", ""]
    assert body(shown)["saved vs baseline"] == ["$0.020725", "60.1% of the baseline"]
    assert body(shown)["saved by routing"] == ["$0.00705", "1 routed call"]
    assert body(shown)["saved by the cache"] == ["$0.006", "1 cache hit"]


def test_a_dearer_actual_than_the_baseline_is_a_negative_saving(cli: Invoke, db: str) -> None:
    report = as_json(cli("--db", db, "--on", "2026-11-24", "--baseline", MINI, "--json"))
    assert (report["savings"]["baseline"], report["savings"]["vs_baseline"]) == (
        "0.00207",
        "-0.011705",
    )
    assert "-$0.011705" in cli("--db", db, "--on", "2026-11-24", "--baseline", MINI).stdout


# -- where the ledger is --------------------------------------------------------------------------


def test_the_default_ledger_is_the_settings_store(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ledger(f"sqlite:///{tmp_path / '.podium' / 'podium.db'}", SPEND)
    assert as_json(cli("--on", "2026-11-24", "--json"))["total"] == "0.013775"
    monkeypatch.setenv("PODIUM_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    refused(cli("--on", "2026-11-24"), f"no database at {tmp_path / 'elsewhere.db'}")


def test_the_default_period_is_this_month(cli: Invoke, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write_ledger(
        f"sqlite:///{tmp_path / 'now.db'}",
        [LedgerEntry(now.timestamp(), "now", MINI, "openai", Usage(1), D("0.00000015"))],
    )
    report = as_json(cli("--db", f"sqlite:///{tmp_path / 'now.db'}", "--json"))
    assert report["period"]["start"] == now.date().replace(day=1).isoformat()
    assert report["total"] == "0.00000015"


def test_an_empty_ledger_says_so(cli: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    write_ledger(url, [])
    result = cli("--db", url, "--by", "team", "--on", "2025-10-09")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no spend recorded in October 2025"
    assert as_json(cli("--db", url, "--on", "2025-10-09", "--json"))["rows"] == []
    day = cli("--db", url, "--period", "day", "--on", "2025-10-09", "--where", "team=ml")
    assert day.stdout.strip() == "no spend recorded on 2025-10-09 where team=ml"


def test_a_missing_or_memory_store_is_refused(cli: Invoke, tmp_path: Path) -> None:
    refused(cli("--db", f"sqlite:///{tmp_path / 'typo.db'}"), "no database at")
    assert not (tmp_path / "typo.db").exists()  # a report never creates a database
    refused(cli("--db", "memory://"), "the store is in memory")
    bad = refused(
        cli("--db", "mysql://root:secret@localhost/x"), "unsupported SQL store scheme 'mysql'"
    )
    assert "secret" not in bad


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--by", "tem"],
            "unknown dimension 'tem'; did you mean 'team'? dimensions: org, team, project, key, use_case, model, provider, routed_from, day, month",
        ),
        (["--by", "team,colour"], "unknown dimension 'colour'"),
        (["--by", "team,team"], "--by names 'team' twice"),
        (["--where", "team"], "--where takes dimension=value (e.g. team=ml), got 'team'"),
        (["--where", "teem=ml"], "unknown dimension 'teem'; did you mean 'team'?"),
        (["--where", "team=ml", "--where", "team=research"], "--where filters 'team' twice"),
        (["--on", "2026-13-01"], "--on takes a YYYY-MM-DD date, got '2026-13-01'"),
        (["--since", "yesterday"], "--since takes a YYYY-MM-DD date, got 'yesterday'"),
        (
            ["--since", "2026-12-01", "--until", "2026-11-01"],
            "--since 2026-12-01 is after --until 2026-11-01",
        ),
        (
            ["--period", "day", "--since", "2026-11-01"],
            "give --period/--on or --since/--until, not both",
        ),
        (
            ["--period", "fortnight"],
            "'fortnight' is not one of 'day', 'week', 'month', 'year', 'all'",
        ),
        (["--savings"], "--savings compares against a model: add --baseline MODEL"),
        (
            ["--baseline", "openai/gpt-4o-mimi"],
            "no model 'openai/gpt-4o-mimi' in the catalog; did you mean 'openai/gpt-4o-mini'",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    cli: Invoke, db: str, args: list[str], message: str
) -> None:
    refused(cli("--db", db, *args), message)


# -- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "shown", "text"),
    [
        ("0.000123", "$0.000123", "0.000123"),
        ("0.00000000875", "$0.00000000875", "0.00000000875"),
        ("0E-12", "$0.00", "0"),
        ("12", "$12.00", "12"),
        ("1234.5000", "$1,234.50", "1234.5"),
        ("-0.0012", "-$0.0012", "-0.0012"),
        ("1E+3", "$1,000.00", "1000"),
        (
            "123456789012345678901234567890.123456789012345678901",
            "$123,456,789,012,345,678,901,234,567,890.123456789012345678901",
            "123456789012345678901234567890.123456789012345678901",
        ),
    ],
)
def test_amounts_are_shown_exactly(amount: str, shown: str, text: str) -> None:
    assert dollars(D(amount)) == shown
    assert exact(D(amount)) == text


def test_the_ledger_costs_are_the_catalog_prices() -> None:
    catalog = Catalog.builtin()
    for entry in SPEND:
        if not entry.cache_hit:
            assert price(catalog.get(entry.model), entry.usage, entry.day).total == entry.cost
