"""Gathering a finished cross-validation: out-of-fold predictions, the baseline on the same folds,
metrics.json, plots and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel import baseline, comparison, plots
from weibolabel.calibration import calibrate_run
from weibolabel.metrics import classification_metrics, summarize_folds
from weibolabel.modeling import is_demo_model, load_model_config
from weibolabel.report import render_report
from weibolabel.runs import now_utc, write_json

# Files whose rows a spreadsheet program numbers from 1, header included.
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".csv")


def write_results(
    *,
    settings: dict,
    out: Path,
    names: list[str],
    data_counts: dict,
    texts: list[str],
    labels: np.ndarray,
    rows: pd.DataFrame,
    fold_of_row: np.ndarray,
) -> dict:
    """Everything a paper table needs, rebuilt from the fold directories; returns metrics.json's content.
    `settings` is the job's resolved config as a dict (what metrics.json records as `setup`)."""
    folds = [json.loads((out / f"fold_{k}" / "fold_result.json").read_text()) for k in range(settings["num_folds"])]
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for k in range(settings["num_folds"]):
        predictions = pd.read_parquet(out / f"fold_{k}" / "test_predictions.parquet")
        probs[predictions["index"].to_numpy()] = np.stack(predictions["probs"].to_numpy())

    baseline_result, baseline_pred = None, None
    if settings["baseline"]:
        baseline_probs = np.zeros_like(probs)
        for k in range(settings["num_folds"]):
            train, test = fold_of_row != k, fold_of_row == k
            baseline_probs[test] = baseline.tfidf_logreg_probs(
                [t for t, m in zip(texts, train) if m],
                labels[train],
                [t for t, m in zip(texts, test) if m],
                len(names),
                settings["class_weighted_loss"],
            )
        baseline_pred = baseline_probs.argmax(axis=1)
        baseline_folds = [
            classification_metrics(labels[fold_of_row == k], baseline_pred[fold_of_row == k], names)
            for k in range(settings["num_folds"])
        ]
        baseline_result = {
            "description": baseline.DESCRIPTION,
            "folds": baseline_folds,
            "summary": summarize_folds(baseline_folds, names),
        }

    predicted = probs.argmax(axis=1)
    # row_id is the 0-based position below the header, as in labels.parquet; spreadsheet_row is the row number a
    # spreadsheet program shows for it (null for Parquet input, which has no such numbering).
    row_ids = rows["row_id"].to_numpy(dtype=np.int64)
    numbered = Path(settings["data"]).suffix.lower() in SPREADSHEET_SUFFIXES
    spreadsheet_row = pd.array(row_ids + settings["header_row"] + 1 if numbered else [None] * len(rows), dtype="Int64")
    oof = pd.DataFrame(
        {
            "row_id": row_ids,
            "spreadsheet_row": spreadsheet_row,
            "text": texts,
            "gold": labels,
            "gold_name": [names[i] for i in labels],
            "predicted": predicted,
            "predicted_name": [names[i] for i in predicted],
            "fold": fold_of_row,
            **{f"prob_{name}": probs[:, i] for i, name in enumerate(names)},
            **({"baseline_predicted": baseline_pred} if baseline_pred is not None else {}),
        }
    )
    oof.to_parquet(out / "oof_predictions.parquet", index=False)
    if baseline_result is not None:  # the encoder against the baseline, paired on the same folds and rows
        baseline_result["paired_test"] = comparison.compare_pair(
            folds_a=[fold["test"] for fold in folds],
            folds_b=baseline_result["folds"],
            correct_a=predicted == labels,
            correct_b=baseline_pred == labels,
            test_fraction=comparison.test_fraction_of(folds),
        )

    metrics = {
        "setup": {**settings, "demo_model": is_demo_model(load_model_config(settings["model_name_or_path"]))},
        "label_names": names,
        "data": data_counts,
        "folds": [{**fold, "test": fold["test"]} for fold in folds],
        "summary": summarize_folds([fold["test"] for fold in folds], names),
        "baseline": baseline_result,
        # One temperature for the labeling job, fitted on out-of-fold rows only (no fold's test data is reused).
        "calibration": calibrate_run(probs, labels, out),
        "env": json.loads((out / "env.json").read_text()),
        "finished": now_utc(),
    }
    write_json(out / "metrics.json", metrics)
    (out / "plots").mkdir(exist_ok=True)
    plots.plot_learning_curves(
        {f["fold"]: f["history"] for f in folds},
        {f["fold"]: f["best_epoch"] - 1 for f in folds},
        out / "plots" / "learning_curves.png",
    )
    plots.plot_confusion_matrix(
        metrics["summary"]["confusion_matrix"],
        names,
        out / "plots" / "confusion_matrix.png",
        "Fine-tuned encoder, summed over test folds",
    )
    (out / "report.md").write_text(render_report(metrics))
    return metrics
