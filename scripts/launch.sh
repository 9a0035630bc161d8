#!/usr/bin/env bash
# Launch a job on this machine with every local GPU, or with $NUM_PROCESSES (default 2) CPU processes when there
# is none:   bash scripts/launch.sh jobs/train.py --config configs/demo.yaml
# MIXED_PRECISION=no|bf16|fp16 overrides the precision (GPU default: `python -m weibolabel.run.precision`, bf16 where
# the GPUs compute it natively, compute capability >= 8.0, else fp16; CPU default: no; MIXED_PRECISION=bf16 roughly
# doubles CPU speed where the CPU has AVX512-BF16 or AMX, see bench/README.md).
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

# Sourced (by slurm/launch.sh), nothing runs.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
[[ $# -ge 1 ]] || { echo "usage: bash scripts/launch.sh JOB_SCRIPT [ARGS...]" >&2; exit 2; }
python -m weibolabel.run.preflight "$@" || exit
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [[ $gpus -gt 0 ]]; then
    exec accelerate launch --config_file "$repo/accelerate_config.yaml" --num_processes "$gpus" \
        --mixed_precision "${MIXED_PRECISION:-$(python -m weibolabel.run.precision)}" "$@"
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
exec "${CMD[@]}" --num_processes "$procs" --num_machines 1 "$@"
