#!/usr/bin/env bash
# Packages tests/test_slurm.py needs to run (not skip): a local single-node SLURM
# (slurm/local_cluster.sh brings it up inside a temporary directory; nothing is
# configured or started here) and shellcheck.  Debian/Ubuntu, as root.
# Idempotent and quiet: installs only what is missing.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge shellcheck)

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm_setup: not root, installing nothing (the SLURM tests will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm_setup: no apt-get, installing nothing (the SLURM tests will skip)" >&2
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$package")
    fi
done
((${#missing[@]} == 0)) && exit 0

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "slurm_setup: installing ${missing[*]}" >&2
# One retry: a mirror hiccup should not fail the whole CI run.
for attempt in 1 2; do
    if apt-get update -qq >"$log" 2>&1 &&
        apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1; then
        exit 0
    fi
    echo "slurm_setup: apt-get failed (attempt $attempt):" >&2
    tail -n 20 "$log" >&2
    sleep 5
done
exit 1
