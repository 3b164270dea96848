#!/usr/bin/env bash
# Engine benchmarks: Podium side by side with LangGraph (`make bench`, or run it from anywhere).
#
# Builds (or refreshes) a separate venv, .venv-bench, with Podium installed editable and the
# pinned peers of benchmarks/requirements.txt, so the dev venv never gets LangGraph. Writes
# benchmarks/results/engine.json and prints a Markdown table on stdout (progress on stderr).
# Extra arguments go to bench_engine.py, e.g. `bash benchmarks/run.sh --quick`.
#
# Environment: PY (the interpreter that creates the venv, default python3), BENCH_VENV (the
# venv's path, default .venv-bench), BENCH_REINSTALL=1 (reinstall even if nothing changed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-python3}"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
REQUIREMENTS="benchmarks/requirements.txt"

# Reinstall whenever the project's or the peers' pins change (or the venv is new).
STAMP="$VENV/.bench-installed-$(cat pyproject.toml "$REQUIREMENTS" | cksum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "${BENCH_REINSTALL:-0}" == "1" ]]; then
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    printf '*\n' >"$VENV/.gitignore"  # keep the venv out of git status
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e . -r "$REQUIREMENTS"
    rm -f "$VENV"/.bench-installed-*
    touch "$STAMP"
fi

mkdir -p benchmarks/results
exec "$VENV/bin/python" benchmarks/engine/bench_engine.py --json benchmarks/results/engine.json "$@"
