#!/bin/bash
# k-fold cross-validated fine-tuning of a Chinese BERT on labeled Weibo
# comments; folds are spread over all processes of the allocation.
#
#   sbatch slurm/train.sh --data data/comments.xlsx \
#       --model_name_or_path models/bert-base-chinese --output_dir runs/cv
#
# Everything after the script name is passed to jobs/train.py.  Submit from
# the repository root (or set REPO_DIR); relative paths in the arguments are
# relative to the directory you submit from.  The nodes have no internet: the
# model must be a local directory (see docs/cluster.md).  logs/ must exist
# there (SLURM opens the log file before this script runs; the repository
# ships logs/.gitkeep).  CPU-only partition: `sbatch --gres=none ...`.
# Pre-emption / time limit: the job is requeued and resumes after the last
# finished fold and epoch.  See docs/cluster.md.
# Bad inputs (a missing file, a bad label) end the job in seconds, before
# srun, with the job's message; a finished job submitted again exits 0
# without writing; a second job on the same output is refused.
#
# Settings for both submit scripts (Python environment, processes per node): slurm/env.sh.
#
# ---- SLURM resources: edit here, or override on the sbatch command line ----
#SBATCH --job-name=weibolabel-train
##SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
set -euo pipefail

# sbatch runs a copy of this script from its spool directory: the repository is where you submit from.
REPO_DIR="${REPO_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}"
export REPO_DIR
if [[ ! -f "$REPO_DIR/slurm/launch.sh" ]]; then
    echo "error: $REPO_DIR is not the repository root: submit from it or set REPO_DIR" >&2
    exit 2
fi
# slurm/launch.sh sets up the environment (slurm/env.sh) and starts the job on every node.
exec bash "$REPO_DIR/slurm/launch.sh" batch jobs/train.py "$@"
