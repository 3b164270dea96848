"""The gateway benchmark's table: each target's result side by side, added latency, targets.

A result is what ``bench_gateway.measure`` returns for one target (``direct``, ``litellm``,
``podium``); one that was skipped or failed holds ``skipped`` or ``error`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, Any]]
"""Each target's result by name: ``direct``, ``litellm``, ``podium``."""


@dataclass(frozen=True)
class Row:
    """One line of the table: a value read from each target's result."""

    label: str
    get: Callable[[dict[str, Any]], float | None]
    unit: str
    added: bool = False
    """Show gateways as latency added over the direct value (and the raw value)."""
    target: str = ""
    check: Callable[[float], bool] | None = None
    """Whether Podium's value (added, when ``added``) meets the target."""
    ratio: bool = True


def _lat(phase: str, stat: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        value = result.get("phases", {}).get(phase, {}).get("latency_ms", {}).get(stat)
        return float(value) if value is not None else None

    return get


def _cpu(phase: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        value = result.get("phases", {}).get(phase, {}).get("gateway_cpu_ms_per_request")
        return float(value) if value is not None else None

    return get


def _err(phase: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        p = result.get("phases", {}).get(phase)
        return 100.0 * p["error_rate"] if p else None

    return get


def _mem(mark: int) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        found = [m["rss_mib"] for m in result.get("memory", []) if m["mark"] == mark]
        return float(found[0]) if found else None

    return get


def _growth(first: int, last: int) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        a, b = _mem(first)(result), _mem(last)(result)
        return None if a is None or b is None else 100.0 * (b - a) / a

    return get


def rows(
    unloaded: int, rates: Sequence[float], marks: Sequence[int], results: Results
) -> list[Row]:
    """The table's rows: unloaded, each open-loop rate, max sustained RPS, memory."""
    out = [
        Row(
            f"unloaded median ({unloaded:,} sequential)",
            _lat("unloaded", "median"),
            "ms",
            added=True,
            target="≤ 0.5",
            check=lambda v: v <= 0.5,
        ),
        Row("unloaded p99", _lat("unloaded", "p99"), "ms", added=True),
        Row("gateway CPU per request, unloaded", _cpu("unloaded"), "ms"),
        Row("unloaded median, stream", _lat("unloaded_stream", "median"), "ms", added=True),
        Row("unloaded p99, stream", _lat("unloaded_stream", "p99"), "ms", added=True),
    ]
    for rate in rates:
        key = f"open_{rate:g}"
        top = rate == max(rates) and rate >= 1_000
        out += [
            Row(f"{rate:,.0f} rps median", _lat(key, "median"), "ms", added=True),
            Row(
                f"{rate:,.0f} rps p99",
                _lat(key, "p99"),
                "ms",
                added=True,
                target="≤ 10" if top else "",
                check=(lambda v: v <= 10) if top else None,
            ),
            Row(
                f"{rate:,.0f} rps errors",
                _err(key),
                "%",
                target="< 1" if top else "",
                check=(lambda v: v < 1) if top else None,
                ratio=False,
            ),
        ]
    litellm_rps = results.get("litellm", {}).get("max_sustained_rps")
    out.append(
        Row(
            "max sustained rps (closed loop, < 1% errors)",
            lambda r: r.get("max_sustained_rps"),
            "rps",
            target="≥ 3x LiteLLM",
            check=(lambda v: v >= 3 * litellm_rps) if litellm_rps else None,
        )
    )
    for mark in marks:
        out.append(Row(f"RSS after {mark:,} requests", _mem(mark), "MiB"))
    out.append(
        Row(
            f"RSS growth {marks[-2]:,} → {marks[-1]:,} requests",
            _growth(marks[-2], marks[-1]),
            "%",
            target="≤ 5 (flat)",
            check=lambda v: v <= 5,
            ratio=False,
        )
    )
    return out


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def cell(row: Row, result: dict[str, Any], direct: dict[str, Any]) -> str:
    if "skipped" in result:
        return "skipped"
    if "error" in result:
        return "failed"
    value = row.get(result)
    if not row.added:
        return fmt(value)
    base = row.get(direct)
    if value is None or base is None:
        return "-"
    return f"{'+' if value >= base else ''}{fmt(value - base)} ({fmt(value)})"


def compare(row: Row, results: Results) -> tuple[float | None, float | None]:
    """(Podium's value, its ratio to LiteLLM's); added latency when the row says so."""
    direct = results["direct"]

    def value(name: str) -> float | None:
        result = results.get(name, {})
        if "skipped" in result or "error" in result or not result:
            return None
        v = row.get(result)
        if v is None or not row.added:
            return v
        base = row.get(direct)
        return None if base is None else v - base

    podium, litellm = value("podium"), value("litellm")
    ratio = podium / litellm if podium is not None and litellm and row.ratio else None
    return podium, ratio


def markdown(table: Sequence[Row], results: Results) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table, and the same rows as JSON-ready records."""
    lines = [
        "| Measure | Unit | Direct | LiteLLM | Podium | Podium / LiteLLM | Podium target | |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    records = []
    direct = results["direct"]
    for row in table:
        podium_value, ratio = compare(row, results)
        verdict = ""
        if row.check is not None and podium_value is not None:
            verdict = "ok" if row.check(podium_value) else "**MISSED**"
        cells = [
            row.label,
            row.unit,
            fmt(row.get(direct)) if "max sustained" in row.label or row.added else "",
            cell(row, results.get("litellm", {"skipped": "not run"}), direct),
            cell(row, results.get("podium", {"skipped": "not run"}), direct),
            fmt(ratio),
            row.target or "-",
            verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
        records.append(
            {
                "measure": row.label,
                "unit": row.unit,
                "added_over_direct": row.added,
                "direct": row.get(direct),
                "litellm": row.get(results["litellm"]) if _usable(results, "litellm") else None,
                "podium": row.get(results["podium"]) if _usable(results, "podium") else None,
                "podium_compared": podium_value,
                "podium_over_litellm": ratio,
                "target": row.target or None,
                "target_met": None if not verdict else verdict == "ok",
            }
        )
    return "\n".join(lines), records


def _usable(results: Results, name: str) -> bool:
    result = results.get(name)
    return bool(result) and "skipped" not in result and "error" not in result
