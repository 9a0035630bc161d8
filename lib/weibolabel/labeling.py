"""What a labeled Parquet file says: label distribution, low-confidence rows, statuses, agreement with gold."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def corpus_summary(path: Path, names: list[str], low_confidence: float, block_rows: int = 65536) -> dict:
    """Counts over the whole file, read a block at a time so memory does not grow with the corpus."""
    with_gold = "gold_label" in pq.read_schema(path).names
    columns = ["label", "confidence", "status", "truncated"] + (["gold_label"] if with_gold else [])
    num_labels = len(names)
    label_counts, confusion = np.zeros(num_labels, np.int64), np.zeros((num_labels, num_labels), np.int64)
    rows, low, truncated, status_counts = 0, 0, 0, Counter()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=block_rows, columns=columns):
        label = batch.column("label").to_numpy(zero_copy_only=False)  # float, NaN where null
        labeled = ~np.isnan(label)
        label_counts += np.bincount(label[labeled].astype(np.int64), minlength=num_labels)
        low += int((batch.column("confidence").to_numpy(zero_copy_only=False)[labeled] < low_confidence).sum())
        truncated += int(batch.column("truncated").to_numpy(zero_copy_only=False).sum())
        status_counts.update(dict(zip(*batch.column("status").value_counts().flatten(), strict=True)))
        rows += batch.num_rows
        if with_gold:
            gold = batch.column("gold_label").to_numpy(zero_copy_only=False)
            both = labeled & ~np.isnan(gold)
            np.add.at(confusion, (gold[both].astype(np.int64), label[both].astype(np.int64)), 1)
    summary = {
        "rows": rows,
        "labeled": int(label_counts.sum()),
        "label_counts": {name: int(n) for name, n in zip(names, label_counts)},
        "low_confidence": low,
        "status_counts": {str(k): int(v) for k, v in status_counts.items()},
        "truncated": truncated,
    }
    if with_gold:
        summary["gold_agreement"] = agreement(confusion)
    return summary


def agreement(confusion: np.ndarray) -> dict:
    """Accuracy and macro-F1 (classes without any gold or predicted row count as F1 0) from a confusion matrix."""
    total, hits = int(confusion.sum()), np.diag(confusion)
    if total == 0:
        return {"rows": 0, "accuracy": float("nan"), "macro_f1": float("nan")}
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * hits, denominator, out=np.zeros(len(hits)), where=denominator > 0)
    return {"rows": total, "accuracy": float(hits.sum() / total), "macro_f1": float(f1.mean())}


def format_summary(summary: dict, low_confidence: float) -> str:
    labeled = max(summary["labeled"], 1)
    shares = ", ".join(f"{name} {n} ({n / labeled:.1%})" for name, n in summary["label_counts"].items())
    text = (
        f"{summary['rows']} rows, {summary['labeled']} labeled: {shares}; "
        f"{summary['low_confidence']} with confidence < {low_confidence}; "
        f"status {summary['status_counts']}; {summary['truncated']} truncated"
    )
    if "gold_agreement" in summary:
        gold = summary["gold_agreement"]
        text += (
            f"; agreement with gold on {gold['rows']} rows: accuracy {gold['accuracy']:.4f}, "
            f"macro-F1 {gold['macro_f1']:.4f}"
        )
    return text
