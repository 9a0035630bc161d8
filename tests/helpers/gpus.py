"""A GPU node on a machine without one: a fake `nvidia-smi` on the PATH that lists the group's server, 4x Quadro RTX
6000 (Turing, compute capability 7.5) with driver 535. With this machine's CPU build of torch that is exactly the
node where torch cannot use the GPUs it is shown."""

from __future__ import annotations

import os
from pathlib import Path

DRIVER = "535.129.03"
GPU_NAME = "Quadro RTX 6000"
NUM_GPUS = 4

# Answers the two forms the project asks: `-L` (slurm/launch.sh counts GPUs) and `--query-gpu=... --format=csv`
# (weibolabel.run.device: name, driver_version, compute_cap, memory.free, memory.total in MiB).
FAKE_NVIDIA_SMI = f"""#!/bin/sh
case "$*" in
    *--query-gpu*)
        for i in $(seq 1 {NUM_GPUS}); do echo "{GPU_NAME}, {DRIVER}, 7.5, 24020, 24576"; done ;;
    *-L*)
        for i in $(seq 0 {NUM_GPUS - 1}); do echo "GPU $i: {GPU_NAME} (UUID: GPU-0000000$i-aaaa-bbbb)"; done ;;
    *)
        echo "NVIDIA-SMI {DRIVER}   Driver Version: {DRIVER}   CUDA Version: 12.2" ;;
esac
"""


def fake_gpu_node(directory: Path, environment: dict[str, str]) -> dict[str, str]:
    """`environment` with the fake nvidia-smi first on the PATH and the GPUs no longer hidden (conftest.py hides
    them for the CPU suite)."""
    bin_dir = directory / "fake-gpu-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    env = {key: value for key, value in environment.items() if key != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env
