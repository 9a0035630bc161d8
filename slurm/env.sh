# shellcheck shell=bash
# The environment of slurm/train.sh and slurm/label_corpus.sh, for both: edit here, or set these before sbatch
# (sbatch exports your environment to the job). slurm/launch.sh sources this file in the batch job, before it
# activates the Python environment; srun passes the variables on to every node. See docs/cluster.md, section 2.

# Python environment: VENV=/path/to/.venv or CONDA_ENV=name.  Neither set:
# $REPO_DIR/.venv when it exists, else the PATH as it is.
export VENV="${VENV:-}" CONDA_ENV="${CONDA_ENV:-}"
# Processes per node (default: one per GPU, or 2 on a CPU-only allocation).
export PROCS_PER_NODE="${PROCS_PER_NODE:-}"
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE=1 are set by
# slurm/launch.sh: the model must be a local directory.
