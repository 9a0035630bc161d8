#!/usr/bin/env bash
# Install and run the test suite (tiny models, no network): bash scripts/test.sh [pytest args]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
bash scripts/install.sh
# shellcheck disable=SC1091
[[ -n ${VIRTUAL_ENV:-} || -n ${CONDA_PREFIX:-} ]] || source .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
ruff format --check .
python -m pytest "$@"
