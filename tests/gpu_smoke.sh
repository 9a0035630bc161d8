#!/usr/bin/env bash
# shellcheck disable=SC2329  # the checks are functions that check() calls
# GPU smoke checks: what the CPU test suite cannot see (it hides every GPU), and the same steps on the CPU so that CI
# runs them too (a renamed function or a broken import fails there, not first on the cluster). From the repository,
# after scripts/install.sh:
#
#   bash tests/gpu_smoke.sh [WORK_DIR]          # on a CUDA GPU: a few minutes; WORK_DIR (default: a new temporary
#   bash tests/gpu_smoke.sh --cpu [WORK_DIR]    #   directory) keeps every log. --cpu: a tiny model, 2 CPU ranks
#
#  1. demo-<precision>: the demo pipeline (train, label with scripts/launch.sh, on every GPU or 2 CPU ranks; predict)
#     in fp16 and, where the GPU computes it natively (compute capability >= 8.0), bf16; fp32 with --cpu; each output
#     must record the precision it ran in and the number of processes.
#  2. resume: training stopped with SIGTERM after its first saved epoch exits 143 and the same command finishes it.
#  3. gpu-vs-cpu-<precision> (GPU only): the same fold checkpoints label the sample on the GPU and on the CPU (fp32):
#     labels agree on >= 99% of the rows; the largest probability difference is printed.
#  4. forward: weibolabel.model.forward.classify's custom BERT path against the model's own forward on every SDPA backend
#     and dtype, with the time of each (the GPU measurement issue 13 asks for before the custom path may serve on
#     GPUs; on the CPU, the path the labeling job uses there).
#  5. out-of-memory (GPU only): a real CUDA out-of-memory error, its type, and that
#     weibolabel.run.precision.is_out_of_memory recognises it (and what a matmul on a full GPU raises).
#
# Prints PASS / FAIL / SKIP per check and a summary; exits 1 if any check failed, 2 if there is no GPU (without --cpu).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo" || exit 2
if [[ -z ${VIRTUAL_ENV:-} && -z ${CONDA_PREFIX:-} && -f .venv/bin/activate ]]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
device=cuda
if [[ ${1:-} == --cpu ]]; then
    device=cpu
    shift
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
work=${1:-$(mktemp -d -t weibolabel-gpu-smoke.XXXXXX)}
mkdir -p "$work/logs" || exit 2

if [[ $device == cpu ]]; then
    export DEVICE=cpu NUM_PROCESSES=2 # scripts/launch.sh: 2 gloo ranks on the CPU, GPUs or not
    precisions=(no)
    ranks=2
    echo "CPU run: torch $(python -c 'import torch; print(torch.__version__)'); work directory: $work"
else
    if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA GPU visible to torch here (torch.cuda.is_available() is False): nothing to check." >&2
        echo "python -m weibolabel.doctor says why; bash tests/gpu_smoke.sh --cpu runs the same steps on the CPU." >&2
        exit 2
    fi
    python -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{torch.cuda.device_count()} GPU(s): ' \
f'{p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, ' \
f'CUDA {torch.version.cuda}')"
    auto=$(python -m weibolabel.run.precision) # bf16 where native, else fp16
    ranks=$(python -c "import torch; print(torch.cuda.device_count())") # scripts/launch.sh starts one per GPU
    precisions=(fp16)
    [[ $auto == bf16 ]] && precisions+=(bf16)
    echo "weibolabel.run.precision chooses: $auto; work directory: $work"
fi

declare -a RESULTS=()
failed=0

# check NAME COMMAND...: run COMMAND with its output in $work/logs/NAME.log; PASS on status 0.
check() {
    local name=$1
    shift
    local log=$work/logs/$name.log
    local started=$SECONDS
    if "$@" >"$log" 2>&1; then
        RESULTS+=("PASS  $name ($((SECONDS - started)) s)")
        echo "PASS  $name ($((SECONDS - started)) s)"
    else
        RESULTS+=("FAIL  $name (see $log)")
        echo "FAIL  $name ($((SECONDS - started)) s); last lines of $log:"
        tail -n 25 "$log" | sed 's/^/      /'
        failed=1
    fi
}

skip() {
    RESULTS+=("SKIP  $1: $2")
    echo "SKIP  $1: $2"
}

model=$work/demo-bert
if [[ $device == cpu ]]; then # tiny: the same steps in about two minutes on 2 cores
    python -m weibolabel.model.demo "$model" --hidden_size 32 --num_layers 2 --num_heads 2 --intermediate_size 64
    train_args=(--config configs/demo.yaml --model_name_or_path "$model" --num_folds 2 --num_epochs 2 --max_length 64)
    resume_epochs=3
else
    python -m weibolabel.model.demo "$model"
    # The demo recipe (configs/demo.yaml) with 3 folds and 6 epochs: enough to learn the sample, quick on a GPU.
    train_args=(--config configs/demo.yaml --model_name_or_path "$model" --num_folds 3 --num_epochs 6)
    resume_epochs=40
fi >"$work/logs/demo-model.log" 2>&1 || {
    echo "could not build the demo model: see $work/logs/demo-model.log" >&2
    exit 1
}
device_args=()
[[ $device == cpu ]] && device_args=(--device cpu) # the plain `python jobs/...` runs; scripts/launch.sh reads DEVICE
torch_dtype() { case $1 in bf16) echo bfloat16 ;; fp16) echo float16 ;; *) echo float32 ;; esac }

# ------------------------------------------------------------------------------------------------- 1. the demo
demo() {
    local precision=$1 run=$work/demo-$1
    MIXED_PRECISION=$precision bash scripts/launch.sh jobs/train.py "${train_args[@]}" --output_dir "$run" &&
        MIXED_PRECISION=$precision bash scripts/launch.sh jobs/label_corpus.py --input data/unlabeled_sample.xlsx \
            --model "$run" --output "$run/labels.parquet" --overwrite &&
        python jobs/predict.py --model "$run" --precision "$precision" "${device_args[@]}" "张国立老师主持得太好了" \
            "越王勾践剑太震撼了" 2>"$run/predict.err" &&
        cat "$run/predict.err" &&
        python - "$run" "$precision" "$(torch_dtype "$precision")" "$ranks" <<'EOF'
import json, sys
from pathlib import Path
from weibolabel.labeling.parts import read_metadata
run, precision, dtype, ranks = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
recorded = {
    "env.json": json.loads((run / "env.json").read_text())["hardware"]["mixed_precision"],
    "metrics.json": json.loads((run / "metrics.json").read_text())["env"]["hardware"]["mixed_precision"],
    "labels.parquet": read_metadata(run / "labels.parquet")["precision"],
    "predict": "precision " + dtype in (run / "predict.err").read_text(),
}
print(recorded)
assert recorded == {"env.json": precision, "metrics.json": precision, "labels.parquet": dtype, "predict": True}
processes = (
    json.loads((run / "env.json").read_text())["hardware"]["num_processes"],
    json.loads((run / "labels.summary.json").read_text())["processes"],
)
print("processes (training, labeling):", processes)
assert processes == (ranks, ranks)  # one per GPU (two ranks where two GPUs exist), or the 2 CPU ranks asked for
print("macro-F1", json.loads((run / "metrics.json").read_text())["summary"]["macro_f1"])
EOF
}

for precision in "${precisions[@]}"; do
    check "demo-$precision" demo "$precision"
done
if [[ $device == cuda && $auto != bf16 ]]; then
    skip demo-bf16 "this GPU has no native bf16 (compute capability < 8.0)"
fi

# ------------------------------------------------------------------------------------------------- 2. resume
resume() {
    local run=$work/resume args
    args=("${train_args[@]}" --num_folds 2 --num_epochs "$resume_epochs" --output_dir "$run" "${device_args[@]}")
    python jobs/train.py "${args[@]}" &
    local pid=$! waited=0
    # Stop it once the first epoch of fold 0 is saved (a plain `python`, so the signal reaches the job itself).
    until [[ -f $run/fold_0/resume/state.pt ]] || ((waited > 3000)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -TERM "$pid"
    local code=0
    wait "$pid" || code=$?
    echo "stopped run exited $code"
    [[ $code -eq 143 ]] || return 1
    [[ ! -f $run/metrics.json ]] || return 1
    python jobs/train.py "${args[@]}" 2>&1 | tee "$run/resumed.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] && grep -q "fold 0: resuming after epoch" "$run/resumed.log"
}
check resume resume

# ------------------------------------------------------------------------------------------------- 3. GPU vs CPU
gpu_vs_cpu() {
    local precision=$1 run=$work/demo-fp16
    [[ -f $run/fold_0/fold_result.json ]] || return 1
    python jobs/label_corpus.py --device cpu --input data/unlabeled_sample.xlsx --model "$run" \
        --output "$work/cpu-labels.parquet" --overwrite &&
        MIXED_PRECISION=$precision bash scripts/launch.sh jobs/label_corpus.py --input data/unlabeled_sample.xlsx \
            --model "$run" --output "$work/gpu-labels-$precision.parquet" --overwrite &&
        python - "$work/cpu-labels.parquet" "$work/gpu-labels-$precision.parquet" <<'EOF'
import sys
import numpy as np
import pandas as pd
from weibolabel.labeling.parts import read_metadata
cpu, gpu = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
print("precision: cpu", read_metadata(sys.argv[1])["precision"], "gpu", read_metadata(sys.argv[2])["precision"])
assert (cpu["status"] == gpu["status"]).all()
ok = cpu["status"] == "ok"
agreement = float((cpu["label"][ok] == gpu["label"][ok]).mean())
difference = float(np.abs(np.stack(cpu["probs"][ok]) - np.stack(gpu["probs"][ok])).max())
print(f"{int(ok.sum())} rows: labels agree on {agreement:.2%}; largest probability difference {difference:.2e}")
assert agreement >= 0.99
EOF
}
if [[ $device == cuda ]]; then
    check gpu-vs-cpu-no gpu_vs_cpu no
    check "gpu-vs-cpu-$auto" gpu_vs_cpu "$auto"
else
    skip gpu-vs-cpu "no GPU in a --cpu run"
fi

# ------------------------------------------------------------------------------------------------- 4. forward
forward() {
    python - "$work/demo-${precisions[0]}/fold_0" "$device" <<'EOF'
import sys
import time
from pathlib import Path
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from weibolabel.model.forward import classify
from weibolabel.model.inference import encode, pad_batch
from weibolabel.model.loading import load_checkpoint, load_tokenizer
from weibolabel.run.precision import has_native_bf16

checkpoint, device = Path(sys.argv[1]), torch.device(sys.argv[2])
tokenizer = load_tokenizer(str(checkpoint))
texts = [("故宫的文物真好看" * (1 + i % 9))[: 5 + 7 * i] for i in range(64)]  # 5 to 72 characters: padding
ids, mask = pad_batch(encode(tokenizer, texts, 128).input_ids, tokenizer.pad_token_id, multiple_of=8)
ids, mask = ids.to(device), mask.to(device)
if device.type == "cuda":
    native_bf16 = has_native_bf16(torch.cuda.get_device_capability())
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if native_bf16 else [])
else:
    dtypes = [torch.float32]
synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
backends = [SDPBackend.MATH, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]
tolerance = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}
failures = 0


def timed(function, repeats=20 if device.type == "cuda" else 3):
    function()
    synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize()
    return (time.perf_counter() - started) / repeats * 1e3


with torch.inference_mode():
    for dtype in dtypes:
        model, _ = load_checkpoint(checkpoint, dtype=dtype)
        model = model.to(device).eval()
        print(f"{dtype}: attention implementation {model.config._attn_implementation}")
        for backend in backends:
            try:
                with sdpa_kernel(backend):
                    reference = model(input_ids=ids, attention_mask=mask).logits.float()
                    outputs = {
                        pack: classify(model, ids, mask, pack=pack, path="custom").float() for pack in (False, True)
                    }
                    own = timed(lambda: model(input_ids=ids, attention_mask=mask).logits)
                    custom = timed(lambda: classify(model, ids, mask, path="custom"))
            except RuntimeError as error:
                print(f"  {backend.name}: not available here ({str(error).splitlines()[0][:100]})")
                continue
            for pack, logits in outputs.items():
                difference = float((logits - reference).abs().max())
                same_labels = bool((logits.argmax(-1) == reference.argmax(-1)).all())
                good = difference <= tolerance[dtype] and same_labels
                failures += not good
                print(
                    f"  {backend.name:20s} pack={pack!s:5s} largest logit difference {difference:.2e} "
                    f"(tolerance {tolerance[dtype]:.0e}), same labels {same_labels}: {'ok' if good else 'DIFFERENT'}"
                )
            print(f"  {backend.name:20s} model's own forward {own:.2f} ms, custom path {custom:.2f} ms per batch of 64")
sys.exit(1 if failures else 0)
EOF
}
check forward forward

# ------------------------------------------------------------------------------------------------- 5. out of memory
out_of_memory() {
    python - <<'EOF'
import torch
from weibolabel.run.precision import is_out_of_memory

try:
    torch.empty(2**50, dtype=torch.uint8, device="cuda")  # 1 PiB
    raise SystemExit("a 1 PiB allocation succeeded?")
except Exception as error:  # noqa: BLE001 - the point is to see what it is
    print(f"1 PiB allocation: {type(error).__module__}.{type(error).__name__}: {str(error).splitlines()[0][:120]}")
    print(f"  is_out_of_memory: {is_out_of_memory(error)}")
    assert is_out_of_memory(error)

# A matmul on a full GPU, before cuBLAS has its handle and workspace: which error does the library raise?
a = torch.ones(64, 64, device="cuda")
blocks = []
try:
    while True:
        blocks.append(torch.empty(2**30, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError:
    pass
try:
    while True:
        blocks.append(torch.empty(2**20, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError:
    pass
try:
    (a @ a).sum().item()
    print("matmul on a full GPU: no error (cuBLAS found its workspace)")
except Exception as error:  # noqa: BLE001
    print(f"matmul on a full GPU: {type(error).__module__}.{type(error).__name__}: {str(error).splitlines()[0][:120]}")
    print(f"  is_out_of_memory: {is_out_of_memory(error)}")
finally:
    blocks.clear()
    torch.cuda.empty_cache()
EOF
}
if [[ $device == cuda ]]; then
    check out-of-memory out_of_memory
else
    skip out-of-memory "no GPU in a --cpu run"
fi

echo
echo "GPU smoke summary, $device ($work):"
printf '  %s\n' "${RESULTS[@]}"
exit "$failed"
