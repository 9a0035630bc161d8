#!/usr/bin/env bash
# Launch a job on this machine with every local GPU, or with $NUM_PROCESSES (default 2) CPU processes when there
# is none:   bash scripts/launch.sh jobs/train.py --config configs/demo.yaml
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [[ $gpus -gt 0 ]]; then
    exec accelerate launch --config_file "$repo/accelerate_config.yaml" --num_processes "$gpus" "$@"
fi
# accelerate's --cpu starts a single process; torchrun-style launching with ACCELERATE_USE_CPU gives N gloo ranks.
export ACCELERATE_USE_CPU=true
exec accelerate launch --multi_gpu --num_processes "${NUM_PROCESSES:-2}" --num_machines 1 \
    --mixed_precision no --dynamo_backend no "$@"
