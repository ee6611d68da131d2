#!/usr/bin/env bash
# The test suite, offline. Real-data tests use ../shared/data when present and skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-minilm --with-spacy --with-attack --with-ray --with-browser
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
exec .venv/bin/python -m pytest tests "$@"
