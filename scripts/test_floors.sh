#!/usr/bin/env bash
# The lowest versions pyproject.toml declares, installed and tested: every `name>=floor` dependency is pinned to
# `name==floor` in a constraints file (torch too: PyPI's CUDA wheel, which runs on a CPU), installed into a separate
# venv made with the lowest Python that requires-python allows, and the fast tests run against them. A floor that
# fails here is an untested promise: raise it, or change the code that needs more.
#   bash scripts/test_floors.sh [pytest args]     (FLOORS_VENV=DIR: where the venv goes, default under $TMPDIR;
#                                                  FLOORS_PYTHON=PATH: that Python, if it is not on PATH or pyenv's;
#                                                  FLOORS_TIMEOUT=SECONDS: for the tests, default 1500)
#   bash scripts/test_floors.sh --constraints     (only print the pins: pip install -c <(...) ...)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

floors() {
    python3 - pyproject.toml <<'EOF'
"""name==floor for each name>=floor in [project] dependencies."""
import re
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

with open(sys.argv[1], "rb") as handle:
    dependencies = tomllib.load(handle)["project"]["dependencies"]
for requirement in dependencies:
    found = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", requirement.split(";")[0])
    if not found:
        sys.exit(f"pyproject.toml: cannot read a floor from {requirement!r}; write it as name>=version")
    name, floor = found.groups()
    print(f"{name}=={floor}")
EOF
}

# The interpreter of requires-python's floor (">=3.10": python3.10), from FLOORS_PYTHON, PATH or pyenv.
floor_python() {
    local version found
    version=$(sed -n 's/^requires-python *= *">= *\([0-9]*\.[0-9]*\)".*/\1/p' pyproject.toml)
    if [[ -z $version ]]; then
        echo 'test_floors: pyproject.toml has no requires-python = ">=X.Y"' >&2
        return 1
    fi
    local candidates=("${FLOORS_PYTHON:-}")
    if [[ -z ${FLOORS_PYTHON:-} ]]; then
        # PATH's first (a pyenv shim there may refuse when that version is not selected), then pyenv's own.
        candidates=("$(command -v "python$version" || true)")
        if command -v pyenv >/dev/null; then
            mapfile -t -O 1 candidates < <(compgen -G "$(pyenv root)/versions/$version.*/bin/python$version" | sort -rV)
        fi
    fi
    for found in "${candidates[@]}"; do
        if [[ -n $found && $("$found" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$version" ]]
        then
            echo "$found"
            return 0
        fi
    done
    echo "test_floors: requires-python says >=$version, so the floors are tested on Python $version, and no" \
        "python$version runs here (looked at ${FLOORS_PYTHON:+FLOORS_PYTHON=$FLOORS_PYTHON, not }PATH and pyenv's" \
        "versions). Install it (pyenv install $version, or your system's python$version with its venv module) or" \
        "set FLOORS_PYTHON=/path/to/python$version." >&2
    return 1
}

if [[ ${1:-} == --constraints ]]; then
    floors
    exit 0
fi
python=$(floor_python)
venv=${FLOORS_VENV:-${TMPDIR:-/tmp}/weibolabel-floors-venv}
started=$SECONDS
# A fresh venv each time: packages left over from another resolution would hide a floor that no longer installs.
rm -rf "$venv"
"$python" -m venv "$venv"
constraints="$venv/floors.txt"
floors >"$constraints"
echo "floors: $(tr '\n' ' ' <"$constraints")on $("$python" --version)"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# One resolution with every floor held, torch included (a CUDA wheel from PyPI: the one a GPU server would get).
python -m pip install --quiet -c "$constraints" -e ".[test]"
python - "$constraints" <<'EOF'
"""Each floor really installed: a resolver that silently took a newer version would test nothing."""
import sys
from importlib import metadata

from packaging.requirements import Requirement

wrong = []
for line in open(sys.argv[1]).read().split():
    requirement = Requirement(line)
    installed = metadata.version(requirement.name)
    if not requirement.specifier.contains(installed.split("+")[0]):
        wrong.append(f"{requirement.name} {installed} (wanted {requirement.specifier})")
if wrong:
    sys.exit("not at the floor: " + ", ".join(wrong))
import torch

print(f"floors: torch {torch.__version__} (CUDA build {torch.version.cuda}) on Python {sys.version.split()[0]}")
EOF
install_seconds=$((SECONDS - started))
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# A hang (a forked worker deadlocking) fails the step instead of holding CI: the fast tests take about 6 minutes on
# an idle 2-core machine, several times that on a shared one.
timeout --kill-after=30 "${FLOORS_TIMEOUT:-1500}" python -m pytest -m "not slow and not slurm" -q -p no:cacheprovider "$@"
echo "floors: installed in ${install_seconds}s, installed and tested in $((SECONDS - started))s"
