"""Print each fraud model's and the combined score's precision and recall on the held-out split.

    python examples/fraud_detection/evaluate.py

The models train on the transactions before ``fraud_model.SPLIT`` and are scored on the rest
(the last 17 days of the ledger), each transaction from the card history before it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> None:
    path = Path(__file__).with_name("fraud_model.py")
    spec = importlib.util.spec_from_file_location("fraud_model", path)
    assert spec is not None
    assert spec.loader is not None
    fm = importlib.util.module_from_spec(spec)
    sys.modules["fraud_model"] = fm
    spec.loader.exec_module(fm)
    metrics, by_pattern, n = fm.evaluate()
    frauds = metrics[0].frauds
    print(f"held-out split: {n} transactions from {fm.SPLIT:%Y-%m-%d} on, {frauds} fraudulent\n")
    print(f"{'model':<22} {'precision':>9} {'recall':>7} {'flagged':>8}")
    for m in metrics:
        print(f"{m.name:<22} {m.precision:>9.3f} {m.recall:>7.3f} {m.flagged:>8}")
    print(f"\ncombined recall per pattern (score >= {fm.REVIEW_AT}):")
    for pattern, row in by_pattern.items():
        print(f"  {pattern:<14} {row['recall']:.3f} of {row['frauds']:.0f}")


if __name__ == "__main__":
    main()
