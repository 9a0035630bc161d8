"""The ONNX Runtime contenders of bench/label_throughput.py, run in the optimum virtualenv (bench/.venv-optimum,
made by bench/peers/setup_optimum.sh: optimum pins transformers 4.x, the project needs v5).

Started once by the benchmark and kept running; it reads one JSON request a line on stdin and answers one JSON line
on stdout (anything the libraries print goes to stderr):

  {"op": "export", "checkpoint": DIR, "out": DIR, "quantize": "avx512_vnni"}
      ORTModelForSequenceClassification.from_pretrained(DIR, export=True), saved to OUT (model.onnx); ORTOptimizer
      at level 2 (model_optimized.onnx); ORTQuantizer + AutoQuantizationConfig.<quantize>(is_static=False), dynamic
      int8, of both (model_quantized.onnx, model_optimized_quantized.onnx).
  {"op": "load", "key": K, "model_dir": DIR, "file_name": "model.onnx", "threads": 2, "raw": false}
      An ORTModelForSequenceClassification (or, with raw, a bare onnxruntime.InferenceSession) on the CPU
      execution provider: intra_op_num_threads = threads, inter_op_num_threads 1, ORT_ENABLE_ALL.
  {"op": "label", "key": K, "texts": FILE, "max_length": 128, "batch_size": 32, "warmup": 32, "probs": FILE}
      Texts (a JSON list) -> class probabilities (.npy, input order): one tokenizer call, texts sorted by token
      length, cut into batches of batch_size, each padded to its longest. The answer's seconds and cpu_seconds
      cover exactly that (tokenizer to probabilities), after a warm-up on the first `warmup` texts; the load is
      not in them.
  {"op": "unload", "key": K}
  {"op": "versions"}
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
import psutil

# The protocol owns the real stdout; whatever the libraries print goes to stderr.
PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

MODELS: dict = {}


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def export(request: dict) -> dict:
    """model.onnx (optimum's export), model_optimized.onnx (ORTOptimizer, level 2: attention, GELU and LayerNorm
    fused, as optimum advises for CPU inference) and the dynamic int8 quantization of each (model_quantized.onnx,
    model_optimized_quantized.onnx)."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoTokenizer

    out = Path(request["out"])
    started = time.perf_counter()
    model = ORTModelForSequenceClassification.from_pretrained(request["checkpoint"], export=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(request["checkpoint"]).save_pretrained(out)
    times = {"export_seconds": time.perf_counter() - started}
    started = time.perf_counter()
    optimizer = ORTOptimizer.from_pretrained(model)
    optimizer.optimize(
        save_dir=out, optimization_config=OptimizationConfig(optimization_level=2, optimize_for_gpu=False)
    )
    times["optimize_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    config = getattr(AutoQuantizationConfig, request.get("quantize", "avx2"))(is_static=False)
    ORTQuantizer.from_pretrained(out, file_name="model.onnx").quantize(save_dir=out, quantization_config=config)
    # ORTQuantizer fails on the optimized graph (shape inference cannot type the fused com.microsoft operators, and
    # optimum passes no DefaultTensorType): onnxruntime's own quantize_dynamic, with the same settings, can.
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
    times["quantize_seconds"] = time.perf_counter() - started
    return {**times, "files": sorted(p.name for p in out.glob("*.onnx"))}


def unload(request: dict) -> dict:
    MODELS.pop(request["key"], None)
    return {}


def load(request: dict) -> dict:
    from transformers import AutoTokenizer

    started = time.perf_counter()
    directory, file_name = request["model_dir"], request.get("file_name", "model.onnx")
    options = session_options(int(request["threads"]))
    if request.get("raw"):
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(Path(directory) / file_name), sess_options=options, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in session.get_inputs()}

        def run(feed: dict) -> np.ndarray:
            return session.run(["logits"], {k: v for k, v in feed.items() if k in names})[0]
    else:
        from optimum.onnxruntime import ORTModelForSequenceClassification

        model = ORTModelForSequenceClassification.from_pretrained(
            directory, file_name=file_name, session_options=options, provider="CPUExecutionProvider"
        )

        def run(feed: dict) -> np.ndarray:
            return np.asarray(model(**feed).logits)

    MODELS[request["key"]] = (run, AutoTokenizer.from_pretrained(directory))
    return {"load_seconds": time.perf_counter() - started}


def label_texts(run, tokenizer, texts: list[str], max_length: int, batch_size: int) -> tuple[np.ndarray, int]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    order = np.argsort(-lengths, kind="stable")
    probs = np.zeros((len(texts), 0), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = int(lengths[rows].max())
        ids = np.full((len(rows), longest), tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : lengths[row]] = encoded[row]
            mask[i, : lengths[row]] = 1
        logits = run({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        logits = logits.astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        if probs.shape[1] == 0:
            probs = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        probs[rows] = exp / exp.sum(axis=1, keepdims=True)
    return probs, int(lengths.sum())


def label(request: dict) -> dict:
    run, tokenizer = MODELS[request["key"]]
    texts = json.loads(Path(request["texts"]).read_text(encoding="utf-8"))
    max_length, batch_size = int(request["max_length"]), int(request["batch_size"])
    if request.get("warmup"):
        label_texts(run, tokenizer, texts[: int(request["warmup"])], max_length, batch_size)
    started, cpu = time.perf_counter(), cpu_seconds()
    probs, tokens = label_texts(run, tokenizer, texts, max_length, batch_size)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    if request.get("probs"):
        np.save(request["probs"], probs)
    return {"seconds": seconds, "cpu_seconds": cpu, "tokens": tokens, "rows": len(texts)}


def versions(_: dict) -> dict:
    found = {}
    for name in ("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return {"versions": found}


def main() -> None:
    operations = {"export": export, "load": load, "unload": unload, "label": label, "versions": versions}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = {"ok": True, **operations[request["op"]](request)}
        except Exception as error:  # answered, not raised: the benchmark prints it and skips the contender
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        PROTOCOL.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
