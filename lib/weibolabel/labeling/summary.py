"""What a labeled Parquet file says: label distribution, low-confidence rows, statuses, agreement with gold."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from weibolabel.data.labeled import parse_label
from weibolabel.data.labels import LabelSchema

GOLD_CELLS_LISTED = 5  # invalid gold cells named in the summary and the metadata; the rest are counted


def parse_gold(values, schema: LabelSchema) -> tuple[list[int | None], list[tuple[int, str]]]:
    """Label ids of a chunk's gold cells (None where empty or invalid) and, for each invalid cell, its position
    and what is wrong with it. Blank cells are no gold label; anything else that is not a label is a mistake to
    report, never a silent null (" 1", "abc", "Heritage" would otherwise just leave the agreement figure)."""
    ids, invalid = [], []
    for position, value in enumerate(values):
        label, problem = parse_label(value, schema)
        if problem and not is_blank(value):
            invalid.append((position, problem))
        ids.append(label)
    return ids, invalid


def gold_record(values, invalid: list[tuple[int, str]], where: Callable[[int], tuple[str, str]]) -> dict:
    """What one chunk adds to the gold-label check; `where(position)` names a row's file and row ("row 7")."""
    missing = sum(is_blank(value) for value in values)
    return {
        "gold_valid": len(values) - missing - len(invalid),
        "gold_missing": missing,
        "gold_invalid": len(invalid),
        "gold_invalid_cells": [
            dict(zip(("file", "row"), where(position), strict=True), value=str(values[position]), problem=problem)
            for position, problem in invalid[:GOLD_CELLS_LISTED]
        ],
    }


def gold_check(records: list[dict], column: str) -> dict:
    """The chunks' gold records (in chunk order) summed: counts, and the first invalid cells by input order."""
    cells = [cell for record in records for cell in record.get("gold_invalid_cells", [])]
    return {
        "column": column,
        **{key: sum(record.get(f"gold_{key}", 0) for record in records) for key in ("valid", "missing", "invalid")},
        "first_invalid": cells[:GOLD_CELLS_LISTED],
    }


def is_blank(value) -> bool:
    """A cell with nothing in it: missing, NaN, or only spaces."""
    # a plain bool: the counts built from it go into JSON records
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


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
    check = summary.get("gold_labels")
    if check and check["invalid"]:
        cells = " | ".join(f"{cell['file']}, {cell['row']}: {cell['problem']}" for cell in check["first_invalid"])
        unlisted = check["invalid"] - len(check["first_invalid"])
        more = f" | and {unlisted} more" if unlisted else ""
        text += (
            f". WARNING: {check['invalid']} gold labels in column '{check['column']}' are not valid labels and are "
            f"left out of the agreement ({cells}{more}); fix them in the input to count them"
        )
    return text
