#!/usr/bin/env bash
# Launch a job on this machine with every local GPU, or with $NUM_PROCESSES (default 2) CPU processes when there
# is none:   bash scripts/launch.sh jobs/train.py --config configs/demo.yaml
# Check the machine first: python -m weibolabel.doctor (docs/cluster.md, section 1).
# DEVICE=cpu runs on the CPU on purpose, GPUs or not (the job gets --device cpu). Without it, a machine whose GPUs
# torch cannot use (a CPU build of torch, or a driver too old for torch's CUDA) stops before any work, saying which
# torch to install: it never falls back to the CPU silently.
# MIXED_PRECISION=no|bf16|fp16 overrides the precision (GPU default: `python -m weibolabel.run.precision`, bf16 where
# the GPUs compute it natively, compute capability >= 8.0, else fp16; CPU default: no; MIXED_PRECISION=bf16 roughly
# doubles CPU speed where the CPU has AVX512-BF16 or AMX, see bench/README.md).
# The processes meet on a free port (MAIN_PROCESS_PORT to choose one), so two jobs on one machine do not collide,
# and run offline (HF_HUB_OFFLINE=1 and friends, as under SLURM: the model must be a local directory or in the
# Hugging Face cache; HF_HUB_OFFLINE=0 before the command lets a job download).
# Before any process starts, the job checks its inputs in one light process (python -m weibolabel.run.preflight): a
# problem you can fix ends the launch there with the job's one-line message and exit status 2, with no launcher
# traceback after it and nothing written.
set -euo pipefail

# The start of the `accelerate launch` command for CPU processes, into the array CMD (the caller adds the process
# count and the topology); slurm/launch.sh sources this file for it. accelerate's --cpu starts a single process;
# torchrun-style launching (--multi_gpu) with ACCELERATE_USE_CPU gives N gloo ranks (docs/cluster.md, section 8).
gloo_cpu_command() {
    CMD=(env ACCELERATE_USE_CPU=true accelerate launch
        --mixed_precision "${MIXED_PRECISION:-no}" --dynamo_backend no --multi_gpu)
}

# The job options for $DEVICE, into the array DEVICE_ARGS: `--device cpu` for DEVICE=cpu, none for DEVICE unset or
# auto (the GPUs torch can use); anything else is an error (status 2).
device_arguments() {
    case ${DEVICE:-auto} in
        auto) DEVICE_ARGS=() ;;
        cpu) DEVICE_ARGS=(--device cpu) ;;
        *)
            echo "error: DEVICE=$DEVICE: use DEVICE=cpu to run on the CPU on purpose, or leave DEVICE unset." >&2
            return 2
            ;;
    esac
}

# The environment of every launch, with or without SLURM (the one place it is set): compute nodes have no internet,
# so models are local directories; a value set before the launch is kept (HF_HUB_OFFLINE=0 lets a job download).
export_job_environment() {
    export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
    export HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
}

# A TCP port free on this machine now, for the processes' rendezvous (29500, accelerate's default, is taken by
# the first job of two on one server).
free_port() {
    python -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# Sourced (by slurm/launch.sh), nothing runs.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
[[ $# -ge 1 ]] || { echo "usage: bash scripts/launch.sh JOB_SCRIPT [ARGS...]" >&2; exit 2; }
device_arguments || exit
set -- "$@" "${DEVICE_ARGS[@]}"
export_job_environment
python -m weibolabel.run.preflight "$@" || exit # the device check too: a GPU node torch cannot use stops here
gpus=0
if [[ ${DEVICE:-auto} != cpu ]]; then
    gpus=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
fi
port=${MAIN_PROCESS_PORT:-$(free_port)}
if [[ $gpus -gt 0 ]]; then
    exec accelerate launch --config_file "$repo/accelerate_config.yaml" --num_processes "$gpus" \
        --main_process_port "$port" --mixed_precision "${MIXED_PRECISION:-$(python -m weibolabel.run.precision)}" "$@"
fi
procs=${NUM_PROCESSES:-2}
if ! [[ $procs =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NUM_PROCESSES=$procs: give the number of CPU processes, a whole number of 1 or more." >&2
    exit 2
fi
if ((procs == 1)); then  # torchrun-style launching (--multi_gpu) refuses a single process: accelerate's own --cpu
    exec accelerate launch --mixed_precision "${MIXED_PRECISION:-no}" --dynamo_backend no --cpu \
        --num_processes 1 --num_machines 1 "$@"
fi
gloo_cpu_command
exec "${CMD[@]}" --num_processes "$procs" --num_machines 1 --main_process_port "$port" "$@"
