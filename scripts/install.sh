#!/usr/bin/env bash
# Install the project into ./.venv (or the active virtualenv/conda env). Offline-friendly: only PyPI is needed.
# torch comes first and pinned, and stays pinned: the later pip call gets a constraints file holding it, so nothing
# the project asks for can swap the build (CPU, or the CUDA your driver runs) for another one.
#   bash scripts/install.sh
#   TORCH_VERSION=2.4.1 bash scripts/install.sh                     (PyPI's build of that release)
#   TORCH_VERSION=2.7.1+cu118 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118 bash scripts/install.sh
# Which torch an NVIDIA driver runs: docs/cluster.md, "Which torch for your driver". PYTHON=python3.11: the
# interpreter the new ./.venv is made with.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# 2.13.0: the release the test suite runs on. PyPI's Linux wheel is its CUDA 13.0 build (runs on a CPU too); a CPU
# build that pip finds first (a local wheel directory) is taken instead, as on the development machine.
torch_version=${TORCH_VERSION:-2.13.0}

# The Python first, before anything is made: requires-python, as pyproject.toml says it.
check_python() {
    local minimum found
    minimum=$(sed -n 's/^requires-python *= *">= *\([0-9]*\.[0-9]*\)".*/\1/p' "$repo/pyproject.toml")
    found=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || found=""
    if [[ -z $found ]] || ! "$1" -c "import sys; sys.exit(sys.version_info[:2] < (${minimum/./, }))"; then
        echo "install.sh: weibolabel needs Python >= $minimum; $1 is ${found:-not a working Python}." \
            "Use another: PYTHON=python$minimum bash scripts/install.sh (a new ./.venv; delete an old one first)," \
            "or activate a conda env made with python=$minimum or newer." >&2
        exit 1
    fi
}

if [[ -z ${VIRTUAL_ENV:-} && -z ${CONDA_PREFIX:-} ]]; then
    if [[ ! -d $repo/.venv ]]; then
        check_python "${PYTHON:-python3}"
        "${PYTHON:-python3}" -m venv "$repo/.venv"
    fi
    # shellcheck disable=SC1091
    source "$repo/.venv/bin/activate"
fi
check_python python
python -m pip install --quiet --upgrade pip
torch_source=()
[[ -z ${TORCH_INDEX_URL:-} ]] || torch_source=(--index-url "$TORCH_INDEX_URL")
python -m pip install --quiet "torch==$torch_version" "${torch_source[@]}"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" >"$constraints"
python -m pip install --quiet -c "$constraints" -e "$repo[test]"
python - "$torch_version" <<'EOF'
"""Say which torch ended up installed, and stop if it is not the one asked for."""
import sys

import torch

build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
wanted = sys.argv[1]
if torch.__version__ != wanted and torch.__version__.split("+")[0] != wanted:
    sys.exit(f"install.sh: torch {torch.__version__} ({build}) is installed, not the {wanted} asked for")
print(f"install.sh: torch {torch.__version__} ({build}); Python {sys.version.split()[0]}")
EOF
