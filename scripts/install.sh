#!/usr/bin/env bash
# Install the project into ./.venv (or the active virtualenv/conda env). Offline-friendly: only PyPI is needed.
# torch comes first and pinned, so pip takes the CPU build this machine has instead of several GB of CUDA wheels
# (on a GPU server the same pin gives the CUDA build).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
if [[ -z ${VIRTUAL_ENV:-} && -z ${CONDA_PREFIX:-} ]]; then
    [[ -d $repo/.venv ]] || python3 -m venv "$repo/.venv"
    # shellcheck disable=SC1091
    source "$repo/.venv/bin/activate"
fi
python -m pip install --quiet --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
python -m pip install --quiet -e "$repo[test]"
