# shellcheck shell=bash
# The environment of slurm/train.sh and slurm/label_corpus.sh, for both: edit here, or set these before sbatch
# (sbatch exports your environment to the job). slurm/launch.sh sources this file in the batch job, before it
# activates the Python environment; srun passes the variables on to every node. See docs/cluster.md, section 2.

# Python environment: VENV=/path/to/.venv or CONDA_ENV=name.  Neither set:
# $REPO_DIR/.venv when it exists, else the PATH as it is.
export VENV="${VENV:-}" CONDA_ENV="${CONDA_ENV:-}"
# Processes per node (default: one per GPU, or 2 on a CPU-only allocation).
export PROCS_PER_NODE="${PROCS_PER_NODE:-}"
# DEVICE=cpu runs on the CPU on purpose (the job gets --device cpu). Unset: the GPUs; a node whose GPUs torch
# cannot use (CPU build, driver too old) stops the job at once, saying which torch to install.
export DEVICE="${DEVICE:-}"
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE=1 are set by
# slurm/launch.sh (scripts/launch.sh's export_job_environment): the model must be a local directory.
