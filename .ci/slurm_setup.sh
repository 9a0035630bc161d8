#!/usr/bin/env bash
# Packages tests/test_slurm.py needs to run (not skip): a local single-node SLURM
# (.ci/local_cluster.sh brings it up inside a temporary directory; nothing is
# configured or started here) and shellcheck.  Debian/Ubuntu, as root.
# Idempotent and quiet: installs only what is missing, then checks that every
# command the tests call is on PATH.  Under CI=true (.ci/run) the tests fail
# when one is missing, so this says which one first.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge shellcheck)
commands=(slurmctld slurmd sbatch scontrol srun sinfo squeue scancel munged mungekey shellcheck)

check_commands() {
    local missing=() command
    for command in "${commands[@]}"; do
        command -v "$command" >/dev/null 2>&1 || missing+=("$command")
    done
    ((${#missing[@]} == 0)) && return 0
    echo "slurm_setup: still missing after the install: ${missing[*]}" >&2
    return 1
}

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm_setup: not root, installing nothing (the SLURM tests will skip, or fail under CI=true)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm_setup: no apt-get, installing nothing (the SLURM tests will skip, or fail under CI=true)" >&2
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    check_commands
    exit
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "slurm_setup: installing ${missing[*]}" >&2
# One retry: a mirror hiccup should not fail the whole CI run.
for attempt in 1 2; do
    if apt-get update -qq >"$log" 2>&1 &&
        apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1; then
        check_commands
        exit
    fi
    echo "slurm_setup: apt-get failed (attempt $attempt):" >&2
    tail -n 20 "$log" >&2
    sleep 5
done
exit 1
