#!/usr/bin/env bash
# The main job: set up, run every built-in submission on the default suite, build the leaderboard.
# Extra arguments go to `attriboard run` (e.g. --n-eval 100, --submissions lime random).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-minilm --with-spacy
exec .venv/bin/attriboard run "$@"
