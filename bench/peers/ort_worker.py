"""The ONNX Runtime peers, run in the optimum virtualenv (bench/.venv-optimum, made by setup_optimum.sh: optimum
pins transformers 4.x, the project needs v5). Started once by bench/label_throughput.py (labeling.OrtWorker); one
JSON request a line on stdin, one JSON answer a line on stdout (whatever the libraries print goes to stderr):

  {"op": "export", "checkpoint": DIR, "out": DIR}
      ORTModelForSequenceClassification(export=True), then ORTOptimizer at level 2 (attention, GELU and LayerNorm
      fused, optimum's advice for CPU) -> model_optimized.onnx; its dynamic int8 with the settings of
      AutoQuantizationConfig.<avx512_vnni|avx512|avx2>(is_static=False), by this CPU's flags ->
      model_optimized_quantized.onnx.
  {"op": "load", "key": K, "model_dir": DIR, "file_name": F, "threads": N}    CPU provider, N intra-op threads
  {"op": "label", "key": K, "texts": [...], "max_length": L, "batch_size": B}
      -> probabilities (rows x classes) and `seconds`, from the tokenizer call to the probabilities.
  {"op": "unload", "key": K}, {"op": "versions"}
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np
from labeling import sorted_batches  # this folder is on the path: the same batching as the in-process peers

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol owns the real stdout
os.dup2(2, 1)
sys.stdout = sys.stderr
MODELS: dict = {}


def quantization_preset() -> str:
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def export(request: dict) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoTokenizer

    out = Path(request["out"])
    model = ORTModelForSequenceClassification.from_pretrained(request["checkpoint"], export=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(request["checkpoint"]).save_pretrained(out)
    ORTOptimizer.from_pretrained(model).optimize(
        save_dir=out, optimization_config=OptimizationConfig(optimization_level=2, optimize_for_gpu=False)
    )
    config = getattr(AutoQuantizationConfig, quantization_preset())(is_static=False)
    # ORTQuantizer fails on the optimized graph (shape inference cannot type the fused com.microsoft operators, and
    # optimum passes no DefaultTensorType): onnxruntime's own quantize_dynamic, with the same settings, can.
    quantize_dynamic(
        out / "model_optimized.onnx",
        out / "model_optimized_quantized.onnx",
        op_types_to_quantize=[str(getattr(op, "value", op)) for op in config.operators_to_quantize],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=QuantType.QInt8,
        extra_options={
            "WeightSymmetric": config.weights_symmetric,
            "ActivationSymmetric": config.activations_symmetric,
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
    return {}


def load(request: dict) -> dict:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = int(request["threads"]), 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = ORTModelForSequenceClassification.from_pretrained(
        request["model_dir"], file_name=request["file_name"], session_options=options, provider="CPUExecutionProvider"
    )
    MODELS[request["key"]] = (model, AutoTokenizer.from_pretrained(request["model_dir"]))
    return {}


def label(request: dict) -> dict:
    model, tokenizer = MODELS[request["key"]]
    texts = request["texts"]

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(model(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids)).logits)

    started = time.perf_counter()
    probs = sorted_batches(forward, tokenizer, texts, int(request["max_length"]), int(request["batch_size"]))
    return {"seconds": time.perf_counter() - started, "probs": probs.tolist()}


def unload(request: dict) -> dict:
    MODELS.pop(request["key"], None)
    return {}


def versions(_: dict) -> dict:
    found = {}
    for name in ("optimum", "optimum-onnx", "onnxruntime", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return {"versions": found}


def main() -> None:
    operations = {"export": export, "load": load, "label": label, "unload": unload, "versions": versions}
    for line in sys.stdin:
        try:
            request = json.loads(line)
            answer = {"ok": True, **operations[request["op"]](request)}
        except Exception as error:  # answered, not raised: the benchmark says so and skips the peer
            traceback.print_exc()  # to the log the benchmark names
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        PROTOCOL.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
