#!/usr/bin/env bash
# Benchmarks: Podium side by side with its peers (`make bench`, or run it from anywhere).
#
#   bash benchmarks/run.sh [engine] [ARGS]   engine vs LangGraph (the default)
#   bash benchmarks/run.sh gateway [ARGS]    gateway vs LiteLLM's proxy
#
# engine: builds (or refreshes) a separate venv, .venv-bench, with Podium installed editable and
# the pinned peers of benchmarks/requirements.txt, so the dev venv never gets LangGraph. Writes
# benchmarks/results/engine.json. ARGS go to bench_engine.py, e.g. `bash benchmarks/run.sh --quick`.
#
# gateway: builds .venv-bench-litellm with the LiteLLM proxy pinned in
# benchmarks/gateway/requirements.txt (its own venv: LiteLLM's pins exclude Podium's), and runs
# bench_gateway.py with it; Podium runs from the dev venv (.venv/bin/podium, `make install`).
# Writes benchmarks/results/gateway.json. ARGS go to bench_gateway.py, e.g. `gateway --quick`.
#
# Both print a Markdown table on stdout (progress on stderr).
# Environment: PY (the interpreter that creates the venvs, default python3), BENCH_VENV (the
# engine venv's path, default .venv-bench), BENCH_LITELLM_VENV (the gateway venv's, default
# .venv-bench-litellm), BENCH_REINSTALL=1 (reinstall even if nothing changed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-python3}"

# ensure_venv VENV STAMP_INPUT... -- PIP_INSTALL_ARGS...: create VENV and install into it
# whenever the stamp inputs change; a venv that cannot install (a broken pip) is made anew.
ensure_venv() {
    local venv="$1"
    shift
    local inputs=()
    while [[ "$1" != "--" ]]; do
        inputs+=("$1")
        shift
    done
    shift
    local stamp
    stamp="$venv/.bench-installed-$(cat "${inputs[@]}" | cksum | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "${BENCH_REINSTALL:-0}" == "1" ]]; then
        [[ -x "$venv/bin/python" ]] || "$PY" -m venv "$venv"
        printf '*\n' >"$venv/.gitignore"  # keep the venv out of git status
        if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
            "$venv/bin/python" -m pip install -q "$@"; }; then
            echo "run.sh: installing into $venv failed; making the venv anew" >&2
            "$PY" -m venv --clear "$venv"
            printf '*\n' >"$venv/.gitignore"
            "$venv/bin/python" -m pip install -q --upgrade pip
            "$venv/bin/python" -m pip install -q "$@"
        fi
        rm -f "$venv"/.bench-installed-*
        touch "$stamp"
    fi
}

SUITE=engine
if [[ "${1:-}" == "engine" || "${1:-}" == "gateway" ]]; then
    SUITE="$1"
    shift
fi
mkdir -p benchmarks/results

if [[ "$SUITE" == "gateway" ]]; then
    VENV="${BENCH_LITELLM_VENV:-$ROOT/.venv-bench-litellm}"
    REQUIREMENTS="benchmarks/gateway/requirements.txt"
    ensure_venv "$VENV" "$REQUIREMENTS" -- -r "$REQUIREMENTS"
    exec "$VENV/bin/python" benchmarks/gateway/bench_gateway.py \
        --json benchmarks/results/gateway.json "$@"
fi

VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
REQUIREMENTS="benchmarks/requirements.txt"
# Reinstall whenever the project's or the peers' pins change (or the venv is new).
ensure_venv "$VENV" pyproject.toml "$REQUIREMENTS" -- -e . -r "$REQUIREMENTS"
exec "$VENV/bin/python" benchmarks/engine/bench_engine.py --json benchmarks/results/engine.json "$@"
