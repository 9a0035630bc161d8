"""What a labeled Parquet file says: label distribution, low-confidence rows, statuses, agreement with gold."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, f1_score


def corpus_summary(path: Path, names: list[str], low_confidence: float) -> dict:
    columns = ["label", "confidence", "status", "truncated"]
    schema_names = pq.read_schema(path).names
    with_gold = "gold_label" in schema_names
    table = pq.read_table(path, columns=columns + (["gold_label"] if with_gold else [])).to_pandas()
    labeled = table["label"].notna()
    counts = table.loc[labeled, "label"].astype(int).value_counts()
    summary = {
        "rows": len(table),
        "labeled": int(labeled.sum()),
        "label_counts": {name: int(counts.get(i, 0)) for i, name in enumerate(names)},
        "low_confidence": int((table.loc[labeled, "confidence"] < low_confidence).sum()),
        "status_counts": {str(k): int(v) for k, v in table["status"].value_counts().items()},
        "truncated": int(table["truncated"].sum()),
    }
    if with_gold:
        both = labeled & table["gold_label"].notna()
        gold, predicted = table.loc[both, "gold_label"].astype(int), table.loc[both, "label"].astype(int)
        summary["gold_agreement"] = {
            "rows": int(both.sum()),
            "accuracy": float(accuracy_score(gold, predicted)) if both.any() else float("nan"),
            "macro_f1": float(
                f1_score(gold, predicted, labels=list(range(len(names))), average="macro", zero_division=0)
            )
            if both.any()
            else float("nan"),
        }
    return summary


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
