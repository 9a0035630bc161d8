#!/bin/bash
# What a job would use on a GPU node of this cluster, and why: GPUs (SLURM, nvidia-smi, torch), driver and CUDA,
# precision, transport, free GPU memory against the model, the model directory offline, the output's filesystem.
# The first thing to run on a new cluster (docs/cluster.md, section 1); a minute on one GPU:
#
#   sbatch slurm/doctor.sh                                   # the node only
#   sbatch slurm/doctor.sh jobs/train.py --config configs/bert-base-chinese.yaml --output_dir runs/cv
#
# With a job and its options, the doctor checks that job's model, batch and output too. The report is in
# logs/weibolabel-doctor-<job id>.out; each line is ok, warning or problem, and each problem names its fix.
# Settings (Python environment, DEVICE): slurm/env.sh.
#
#SBATCH --job-name=weibolabel-doctor
##SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=00:05:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

REPO_DIR="${REPO_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$REPO_DIR/slurm/launch.sh" ]]; then
    echo "error: $REPO_DIR is not the repository root: submit from it or set REPO_DIR" >&2
    exit 2
fi
# slurm/launch.sh's environment: the same Python, offline variables and DEVICE as a job.
exec bash "$REPO_DIR/slurm/launch.sh" doctor "$@"
