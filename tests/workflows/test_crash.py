"""Crash test: a saga of side-effecting steps is SIGKILLed at 50 random moments and resumed.

Invariants, per run: every step's effect is in the external ledger exactly once, the set of
effects and the final result equal those of an uninterrupted run, and the journal completes each
step once. Re-executions happen only for steps a kill interrupted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("crash") / "worker.py"
KILLS = int(os.environ.get("PODIUM_CRASH_KILLS", "50"))


def _spawn(url: str, ledger: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(ledger), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    # read through the text wrappers: READY may have been read already, with more buffered
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no result printed; stderr: {err}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def _effects(ledger: Path, run_id: str) -> dict[str, str]:
    con = sqlite3.connect(ledger)
    rows = con.execute("SELECT key, value FROM effects WHERE key LIKE ?", (run_id + "/%",))
    found = {key.removeprefix(run_id + "/"): value for key, value in rows}
    con.close()
    return found


def _executions(ledger: Path, run_id: str) -> Counter[str]:
    con = sqlite3.connect(ledger)
    rows = con.execute(
        "SELECT key FROM executions WHERE key LIKE ? AND key NOT LIKE '%#try'", (run_id + "/%",)
    )
    counts = Counter(key.removeprefix(run_id + "/") for (key,) in rows)
    con.close()
    return counts


def _completions(db: Path, run_id: str) -> Counter[str]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT step FROM events WHERE run_id = ? AND kind = 'step_completed'", (run_id,)
    )
    counts = Counter(step for (step,) in rows)
    con.close()
    return counts


@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("PODIUM_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash test seed: {seed} (PODIUM_CRASH_SEED to repeat)")

    # the uninterrupted reference run
    ref_ledger = tmp_path / "ref-ledger.db"
    reference = _finish(_spawn(f"sqlite:///{tmp_path / 'ref.db'}", ref_ledger, "ref"))
    assert reference["status"] == "completed", reference
    ref_effects = _effects(ref_ledger, "ref")
    assert "claim/payout" not in ref_effects
    assert ref_effects["claim/reserve#compensate"] == "released"
    assert "claim/verify#compensate" not in ref_effects  # kept: verified documents stay
    assert reference["output"] == "manual-review after payout; compensated reserve"

    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    ledger = tmp_path / "ledger.db"
    kills = 0
    runs: list[tuple[str, int]] = []
    while kills < KILLS:
        run_id = f"run{len(runs)}"
        run_kills = 0
        while True:
            proc = _spawn(url, ledger, run_id)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY", (
                proc.stderr.read() if proc.stderr else ""
            )
            if kills < KILLS:
                time.sleep(rng.uniform(0.0, 0.25))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    run_kills += 1
                    continue
            result = _finish(proc)
            break
        runs.append((run_id, run_kills))

        assert result == reference, f"run {run_id} (seed {seed}) differs from the reference"
        assert _effects(ledger, run_id) == ref_effects, (
            f"run {run_id}: effects differ (seed {seed})"
        )
        completions = _completions(db, run_id)
        assert max(completions.values()) == 1, f"a step completed twice in {run_id}: {completions}"
        executions = _executions(ledger, run_id)
        repeats = sum(executions.values()) - len(executions)
        # each kill interrupts at most the steps in flight: 3 parallel checks, or 2 batch items
        assert repeats <= 3 * run_kills, f"{run_id}: {repeats} re-executions for {run_kills} kills"
    assert kills == KILLS
    print(f"{kills} kills over {len(runs)} runs: {runs}")
