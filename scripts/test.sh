#!/usr/bin/env bash
# The test suite, offline. Real-data tests use ../shared/data when present and skip otherwise.
# It runs on ATTRIBOARD_TEST_WORKERS worker processes (default: 2, one per core of the reference
# 2-core machine; 0 runs it in this process), each test file on one worker (pytest-xdist
# --dist loadfile) so a module's fixtures are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-minilm --with-spacy --with-attack --with-ray --with-browser
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
WORKERS=${ATTRIBOARD_TEST_WORKERS:-2}
if [ "$WORKERS" = 0 ]; then
  exec .venv/bin/python -m pytest tests "$@"
fi
exec .venv/bin/python -m pytest -n "$WORKERS" --dist loadfile tests "$@"
