"""The peers of bench/label_throughput.py, one function each, at their documented best: a checkpoint in, a
`label(texts, batch_size) -> (probabilities [rows, classes] in input order, seconds)` out. The seconds run from the
tokenizer call to the probabilities; loading is outside them. Nothing here imports weibolabel: a peer is what a
user of transformers, PyTorch or ONNX Runtime would write."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PROTOTYPE_LENGTH, PROTOTYPE_BATCH = 100, 256


class Skip(Exception):
    """A peer that cannot run here (the optimum virtualenv missing, a CPU-only peer on a GPU)."""


def _timed(label):
    def timed(texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        probs = label(texts, batch_size)  # numpy: a GPU's work is finished
        return probs, time.perf_counter() - started

    return timed


def _load(checkpoint: Path, device: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # no "Loading weights" bar for every model in the output
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32, local_files_only=True)
    return AutoTokenizer.from_pretrained(checkpoint), model.to(device).eval()


def sorted_batches(forward, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """The usual recipe: one tokenizer call, texts sorted by token length, fixed-size batches padded to their
    longest, with a mask; `forward(ids, mask)` gives logits (numpy or torch)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])
    order, probs = np.argsort(-lengths, kind="stable"), None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids = np.full((len(rows), lengths[rows].max()), tokenizer.pad_token_id, dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : lengths[row]] = encoded[row]
        logits = np.asarray(forward(ids, (ids != tokenizer.pad_token_id).astype(np.int64)), dtype=np.float64)
        if probs is None:
            probs = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs[rows] = exp / exp.sum(axis=1, keepdims=True)
    return probs


def prototype(checkpoint: Path, device: str, max_length: int):
    """The prototype's way: each text tokenised on its own and padded to 100, no mask, input order, batches of 256,
    fp32 (max_length and the batch size asked for do not apply)."""
    tokenizer, model = _load(checkpoint, device)

    @torch.inference_mode()
    def label(texts: list[str], batch_size: int) -> np.ndarray:
        ids = [
            tokenizer(t, padding="max_length", truncation=True, max_length=PROTOTYPE_LENGTH)["input_ids"] for t in texts
        ]
        out = []
        for start in range(0, len(ids), PROTOTYPE_BATCH):
            batch = torch.tensor(ids[start : start + PROTOTYPE_BATCH], device=device)
            out.append(torch.softmax(model(input_ids=batch).logits.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    return _timed(label)


def pipeline(checkpoint: Path, device: str, max_length: int, sort: bool):
    """`transformers.pipeline("text-classification")`, fp32: at batch 1 in input order (its advice on CPU), or, with
    `sort`, batched over the texts sorted by length."""
    from transformers import pipeline as make_pipeline

    tokenizer, model = _load(checkpoint, device)
    pipe = make_pipeline("text-classification", model=model, tokenizer=tokenizer, device=torch.device(device))
    label2id = model.config.label2id

    def label(texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable") if sort else np.arange(len(texts))
        outputs = pipe([texts[i] for i in order], batch_size=batch_size if sort else 1, truncation=True,
                       max_length=max_length, top_k=None)  # fmt: skip
        probs = np.zeros((len(texts), len(label2id)), dtype=np.float32)
        for row, scores in zip(order, outputs):
            for item in scores:
                probs[row, label2id[item["label"]]] = item["score"]
        return probs

    return _timed(label)


def torch_int8(checkpoint: Path, device: str, max_length: int):
    """PyTorch's dynamic int8 of the linear layers on the transformers model, its own forward, sorted batches."""
    if device != "cpu":
        raise Skip("dynamic int8 quantization runs on CPU only")
    tokenizer, model = _load(checkpoint, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    @torch.inference_mode()
    def forward(ids, mask):
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.float()

    return _timed(lambda texts, batch_size: sorted_batches(forward, tokenizer, texts, max_length, batch_size))


class OrtWorker:
    """bench/peers/ort_worker.py in the optimum virtualenv (optimum pins transformers 4.x), one JSON line each way."""

    def __init__(self, python: Path, threads: int, work_dir: Path):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": str(threads)}
        self.log, self.work_dir, self.threads = work_dir / "ort_worker.log", work_dir, threads
        self.process = subprocess.Popen(
            [str(python), str(Path(__file__).with_name("ort_worker.py"))], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, env=env | {"TOKENIZERS_PARALLELISM": "false"},
        )  # fmt: skip
        self.versions = ", ".join(f"{k} {v}" for k, v in self.call(op="versions")["versions"].items())

    def call(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline() or '{"ok": false, "error": "the worker stopped"}')
        if not answer.pop("ok"):
            raise Skip(f"ONNX Runtime worker, {request['op']}: {answer['error']} (log {self.log})")
        return answer

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def ort(worker: OrtWorker | None, checkpoint: Path, max_length: int, int8: bool):
    """optimum's ORTModelForSequenceClassification, CPU provider, sorted batches, on the graph ORTOptimizer makes at
    level 2 (optimum's advice for CPU), fp32 or dynamic int8 (ort_worker.py exports them); it times itself."""
    if worker is None:
        raise Skip("no optimum virtualenv: `bash bench/peers/setup_optimum.sh` makes it")
    out = worker.work_dir / "onnx" / f"{checkpoint.resolve().parent.name}-{checkpoint.name}"
    stamp = str((checkpoint / "model.safetensors").stat().st_mtime_ns)
    if not (out / "stamp").is_file() or (out / "stamp").read_text() != stamp:
        worker.call(op="export", checkpoint=str(checkpoint.resolve()), out=str(out))
        (out / "stamp").write_text(stamp)
    key, graph = f"{out.name}/{int8}", "model_optimized_quantized.onnx" if int8 else "model_optimized.onnx"
    worker.call(op="load", key=key, model_dir=str(out), file_name=graph, threads=worker.threads)

    def label(texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
        answer = worker.call(op="label", key=key, texts=texts, max_length=max_length, batch_size=batch_size)
        return np.array(answer["probs"], dtype=np.float32), answer["seconds"]

    label.close = lambda: worker.call(op="unload", key=key)
    return label
