"""Classification metrics per fold and their mean ± standard deviation over folds."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

HEADLINE = ("accuracy", "macro_f1", "weighted_f1")


def classification_metrics(y_true, y_pred, names: list[str]) -> dict:
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def summarize_folds(fold_metrics: list[dict], names: list[str]) -> dict:
    """Mean and sample standard deviation (ddof=1) over folds, headline and per-class F1; summed confusion."""

    def mean_std(values) -> dict:
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}

    summary = {key: mean_std([m[key] for m in fold_metrics]) for key in HEADLINE}
    summary["per_class_f1"] = {name: mean_std([m["per_class"][name]["f1"] for m in fold_metrics]) for name in names}
    summary["confusion_matrix"] = np.sum([m["confusion_matrix"] for m in fold_metrics], axis=0).tolist()
    summary["num_folds"] = len(fold_metrics)
    return summary
