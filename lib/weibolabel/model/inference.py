"""Scoring: tokenisation, length-sorted batching under a token budget, fold ensembles, labeled rows. One code path
serves validation during training, the labeling job and `jobs/predict.py`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from weibolabel.data.labeled import clean_text
from weibolabel.data.labels import LabelSchema
from weibolabel.model.forward import classify
from weibolabel.model.loading import check_quantize, load_checkpoint, load_tokenizer
from weibolabel.run.layout import RunLayout, find_checkpoints
from weibolabel.run.precision import is_out_of_memory, precision_dtype
from weibolabel.util.errors import UserError

STATUS_OK, STATUS_EMPTY, STATUS_UNK_ONLY = "ok", "empty", "unknown_tokens_only"


@dataclass
class Encoded:
    input_ids: list[list[int]]
    truncated: np.ndarray  # bool: the text was longer than max_length tokens
    unk_only: np.ndarray  # bool: every word piece is [UNK] (emoji-only text, say): the label means nothing

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


MAX_PADDING = 0.1  # largest share of padding in an inference batch


def encode(tokenizer, texts: list[str], max_length: int) -> Encoded:
    """One fast-tokenizer call for the whole list, truncated to `max_length`, no padding."""
    if not texts:
        return Encoded([], np.zeros(0, bool), np.zeros(0, bool))
    batch = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)
    input_ids = batch["input_ids"]
    truncated = np.array([len(encoding.overflowing) > 0 for encoding in batch.encodings], dtype=bool)
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    unk = tokenizer.unk_token_id
    unk_only = np.array([all(i == unk for i in ids if i not in special) for ids in input_ids], dtype=bool)
    return Encoded(input_ids, truncated, unk_only)


# On CPU a batch holds at least this many padded tokens, however much padding that takes: each linear layer's call
# has a fixed cost, and `classify` packs the real tokens there, so only attention sees the padding. 1,024 measured
# fastest (or within noise) for fp32, bf16 and int8; 8,192 up to 1.3x slower (bench/README.md, 2026-12-02).
CPU_MIN_TOKENS = 1024


def length_batches(
    lengths: np.ndarray, batch_size: int, max_tokens: int, max_padding: float = MAX_PADDING, min_tokens: int = 0
) -> list[np.ndarray]:
    """Indices, longest first (memory trouble shows at once), in batches of at most `batch_size` rows and `max_tokens`
    padded tokens whose rows are within `max_padding` of the longest, unless that leaves under `min_tokens`."""
    order = np.argsort(-lengths, kind="stable")
    descending = lengths[order]
    batches, start = [], 0
    while start < len(order):
        longest = int(descending[start])
        size = max(1, min(batch_size, max_tokens // max(longest, 1)))
        within = int(np.searchsorted(-descending, -(1 - max_padding) * longest, side="right")) - start
        size = max(1, min(size, max(within, -(-min_tokens // max(longest, 1)))))
        batches.append(order[start : start + size])
        start += size
    return batches


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Training order: shuffled, then sorted by length inside blocks of 50 batches, batches shuffled again.
    Padding stays small and the order depends only on `seed`, so a resumed epoch replays exactly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    block = batch_size * 50
    batches = []
    for start in range(0, len(order), block):
        part = order[start : start + block]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(input_ids: list[list[int]], pad_id: int, multiple_of: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the attention mask that hides the padding."""
    lengths = np.array([len(ids) for ids in input_ids])
    mask = np.arange(-(-lengths.max() // multiple_of) * multiple_of) < lengths[:, None]
    ids = np.full(mask.shape, pad_id, dtype=np.int64)
    ids[mask] = np.concatenate(input_ids)
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


@torch.inference_mode()
def predict_probs(
    models: list[torch.nn.Module],
    input_ids: list[list[int]],
    pad_id: int,
    *,
    batch_size: int = 256,
    max_tokens: int = 16384,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    temperature: float = 1.0,
    on_batch: Callable[[int], None] | None = None,
    min_tokens: int | None = None,
) -> np.ndarray:
    """Class probabilities averaged over `models` (a fold ensemble), in input order, float32 [n, classes];
    `on_batch(rows)` after each batch. `min_tokens` None: CPU_MIN_TOKENS on CPU, none elsewhere."""
    if not input_ids:
        return np.zeros((0, models[0].config.num_labels), dtype=np.float32)
    device = models[0].device  # a transformers model's, or weibolabel.model.onnx's (the CPU)
    multiple_of = 8 if device.type == "cuda" else 1  # tensor-core friendly shapes on GPU
    probs = torch.zeros((len(input_ids), models[0].config.num_labels), dtype=torch.float32, device=device)
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    if min_tokens is None:
        min_tokens = CPU_MIN_TOKENS if device.type == "cpu" else 0  # GPUs: not measured, so as before
    try:
        for batch in length_batches(lengths, batch_size, max_tokens, min_tokens=min_tokens):
            ids, mask = pad_batch([input_ids[i] for i in batch], pad_id, multiple_of)
            ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
            total = 0
            with autocast():
                for model in models:
                    logits = classify(model, ids, mask).float()
                    total = total + torch.softmax(logits / temperature, dim=-1)
            probs[torch.from_numpy(batch).to(device)] = total / len(models)
            if on_batch is not None:
                on_batch(len(batch))
    except RuntimeError as error:
        # cuBLAS/cuDNN report an exhausted GPU as a plain RuntimeError: one type for every caller to catch.
        if is_out_of_memory(error) and not isinstance(error, torch.cuda.OutOfMemoryError):
            raise torch.cuda.OutOfMemoryError(str(error)) from error
        raise
    return probs.cpu().numpy()


def prefetched(items: Iterable, work: Callable) -> Iterator:
    """`work(item)` for each item, one item ahead in a thread: tokenisation releases the GIL, so the next chunk is
    tokenised while the current one runs on the device."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for item in items:
            future = pool.submit(work, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def inference_dtype(device: torch.device, mixed_precision: str) -> torch.dtype | None:
    """The weights' dtype for labeling in `--mixed_precision`: bf16, fp16 (GPUs only) or None (fp32, as stored).
    Near-ties can flip in lower precision, so every output records it."""
    if mixed_precision == "fp16" and device.type != "cuda":
        return None
    return precision_dtype(mixed_precision)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class Ensemble:
    models: list[torch.nn.Module]
    tokenizer: object
    schema: LabelSchema
    max_length: int
    source: str
    members: list[str]  # checkpoint directories, relative to source
    temperature: float = 1.0


def load_ensemble(
    path: str | Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
    calibrated: bool = True,
    quantize: str | None = None,
) -> Ensemble:
    """Fold checkpoints (or one), with the run's temperature unless not `calibrated`; `quantize` (CPU, fp32):
    "onnx-int8", by ONNX Runtime (weibolabel.model.onnx, through its graph cache)."""
    path = Path(path)
    checkpoints = find_checkpoints(path)
    check_quantize(quantize, torch.device(device).type, dtype)
    models, schemas = [], []
    try:
        for checkpoint in checkpoints:
            model, schema = load_checkpoint(checkpoint, dtype=dtype)
            if quantize == "onnx-int8":
                from weibolabel.model.onnx import quantize_onnx_int8

                model = quantize_onnx_int8(model, str(checkpoint))
            else:
                model = model.to(device)
            models.append(model)
            schemas.append(schema)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        one_fold = f", or pass one fold directory (e.g. {checkpoints[0]}) as the model" if len(checkpoints) > 1 else ""
        raise UserError(
            f"Out of GPU memory loading checkpoint {len(models) + 1} of {len(checkpoints)} from {path} onto "
            f"{device}: every process holds all fold models. Free the GPU (nvidia-smi lists what else runs on it) "
            f"or run fewer processes per GPU{one_fold}."
        ) from None
    if any(schema.names != schemas[0].names for schema in schemas):
        raise UserError(f"{path}: the fold checkpoints disagree on the label schema: {[s.names for s in schemas]}.")
    run = RunLayout(path)
    max_length = int(yaml.safe_load(run.config.read_text())["max_length"]) if run.config.is_file() else 512
    max_length = min(max_length, models[0].config.max_position_embeddings)
    calibration = run.calibration
    temperature = json.loads(calibration.read_text())["temperature"] if calibrated and calibration.is_file() else 1
    return Ensemble(
        models=models,
        tokenizer=load_tokenizer(str(checkpoints[0])),
        schema=schemas[0],
        max_length=max_length,
        source=str(path),
        members=[str(c.relative_to(path)) for c in checkpoints],  # "." for one checkpoint
        temperature=float(temperature),
    )


def label_texts(ensemble: Ensemble, raw_texts: list, max_length: int) -> pd.DataFrame:
    """Label, name, confidence, probabilities, status and truncation flag of each text, in input order."""
    texts = [clean_text(t) for t in raw_texts]
    return label_encoded(ensemble, texts, encode(ensemble.tokenizer, texts, max_length))


def label_encoded(ensemble: Ensemble, texts: list[str], encoded: Encoded, **options) -> pd.DataFrame:
    """`label_texts` for texts cleaned and encoded already; `options` as for `predict_probs`."""
    empty = np.array([t == "" for t in texts], dtype=bool)
    index = np.flatnonzero(~empty & ~encoded.unk_only)  # empty and unknown-only texts get no label
    input_ids = [encoded.input_ids[i] for i in index]
    probs = predict_probs(
        ensemble.models, input_ids, ensemble.tokenizer.pad_token_id, temperature=ensemble.temperature, **options
    )
    num_rows, predicted = len(texts), probs.argmax(axis=1)
    label = pd.array([pd.NA] * num_rows, dtype="Int64")
    label[index] = predicted
    confidence = np.full(num_rows, np.nan, dtype=np.float32)
    confidence[index] = probs.max(axis=1)
    all_probs = [None] * num_rows
    for row, p in zip(index, probs):
        all_probs[row] = p
    status = np.where(empty, STATUS_EMPTY, np.where(encoded.unk_only, STATUS_UNK_ONLY, STATUS_OK))
    label_name = np.full(num_rows, None, dtype=object)
    label_name[index] = np.array(ensemble.schema.names, dtype=object)[predicted]
    return pd.DataFrame(
        {
            "label": label,
            "label_name": label_name,
            "confidence": confidence,
            "probs": all_probs,
            "status": status,
            "truncated": encoded.truncated & ~empty,
        }
    )
