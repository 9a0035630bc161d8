#!/usr/bin/env bash
# The lowest versions pyproject.toml declares, installed and tested: every `name>=floor` dependency is pinned to
# `name==floor` in a constraints file, installed into a separate venv with torch==2.13.0 (the CPU build on a CPU
# machine), and the fast tests run against them. A floor that fails here is an untested promise: raise it.
#   bash scripts/test_floors.sh [pytest args]     (FLOORS_VENV=DIR: where the venv goes; default under $TMPDIR)
#   bash scripts/test_floors.sh --constraints     (only print the pins: pip install -c <(...) ...)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

floors() {
    python3 - pyproject.toml <<'EOF'
"""name==floor for each name>=floor in [project] dependencies (torch: exactly the pinned 2.13.0)."""
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
    print(f"{name}=={'2.13.0' if name == 'torch' else floor}")
EOF
}

if [[ ${1:-} == --constraints ]]; then
    floors
    exit 0
fi
venv=${FLOORS_VENV:-${TMPDIR:-/tmp}/weibolabel-floors-venv}
started=$SECONDS
# A fresh venv each time: packages left over from another resolution would hide a floor that no longer installs.
rm -rf "$venv"
python3 -m venv "$venv"
constraints="$venv/floors.txt"
floors >"$constraints"
echo "floors: $(tr '\n' ' ' <"$constraints")"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# torch first and exactly pinned, so pip takes the CPU wheel this machine has (as scripts/install.sh does).
python -m pip install --quiet "torch==2.13.0"
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
EOF
install_seconds=$((SECONDS - started))
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# A hang (a forked worker deadlocking) fails the step instead of holding CI: the fast tests take about 6 minutes.
timeout --kill-after=30 1500 python -m pytest -m "not slow and not slurm" -q -p no:cacheprovider "$@"
echo "floors: installed in ${install_seconds}s, installed and tested in $((SECONDS - started))s"
