#!/usr/bin/env bash
# A separate virtualenv for Hugging Face optimum (ONNX export and ORTQuantizer): optimum[onnxruntime] pins
# transformers 4.x, which cannot share the project's virtualenv (transformers v5). bench/label_throughput.py uses
# it to export the benchmark checkpoint to ONNX and to quantize it (dynamic int8), and runs the ORT contenders in
# it through bench/peers/ort_worker.py; without it those contenders are skipped with a line saying so.
#
#   bash bench/peers/setup_optimum.sh            # creates bench/.venv-optimum (git-ignored), about 1.5 GB
#
# torch is installed first and pinned: any other version makes pip pull several GB of CUDA wheels.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
venv=${OPTIMUM_VENV:-$repo/bench/.venv-optimum}
python=${PYTHON:-python3}
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
"$venv/bin/python" -m pip install --quiet "optimum[onnxruntime]" psutil
"$venv/bin/python" - <<'PY'
from importlib import metadata

import optimum.onnxruntime  # noqa: F401  (fails here, not in the benchmark, if the install is incomplete)

names = ("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch")
found = []
for name in names:
    try:
        found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
print("optimum venv ready:", ", ".join(found))
PY
echo "$venv"
