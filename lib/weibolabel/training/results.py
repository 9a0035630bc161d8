"""Gathering a finished cross-validation: out-of-fold predictions, the baseline on the same folds, calibration,
metrics.json, plots and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.tables import write_table
from weibolabel.model.loading import is_demo_model, load_model_config
from weibolabel.run.launch import now_utc
from weibolabel.run.layout import RunLayout
from weibolabel.stats import comparison
from weibolabel.stats.calibration import calibrate, reliability_table
from weibolabel.stats.metrics import classification_metrics, summarize_folds
from weibolabel.training import baseline
from weibolabel.training.report import render_report
from weibolabel.util import plots
from weibolabel.util.files import write_json, write_text

# Files whose rows a spreadsheet program numbers from 1, header included.
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".csv")


def write_results(
    *, settings: dict, out: Path, names: list[str], data_counts: dict, rows: pd.DataFrame, fold_of_row: np.ndarray
) -> dict:
    """Everything a paper table needs, rebuilt from the fold directories; returns metrics.json's content.
    `settings` is the job's resolved config as a dict (what metrics.json records as `setup`)."""
    run, labels = RunLayout(out), rows["label"].to_numpy()
    folds = [json.loads(run.fold_result(k).read_text()) for k in range(settings["num_folds"])]
    probs = np.zeros((len(rows), len(names)), dtype=np.float32)
    for k in range(settings["num_folds"]):
        predictions = pd.read_parquet(run.test_predictions(k))
        probs[predictions["index"].to_numpy()] = np.stack(predictions["probs"].to_numpy())

    oof = out_of_fold_frame(settings, rows, probs, names, fold_of_row)
    baseline_result = None
    if settings["baseline"]:
        baseline_result, oof["baseline_predicted"] = score_baseline(settings, rows, fold_of_row, names)
        # The encoder against the baseline, paired on the same folds and rows.
        baseline_result["paired_test"] = comparison.compare_pair(
            folds_a=[fold["test"] for fold in folds],
            folds_b=baseline_result["folds"],
            correct_a=oof["predicted"].to_numpy() == labels,
            correct_b=oof["baseline_predicted"].to_numpy() == labels,
            test_fraction=comparison.test_fraction_of(folds),
        )
    write_table(oof, run.oof_predictions)

    # One temperature for the labeling job (which divides every fold model's logits by it), fitted on out-of-fold
    # rows only, so no fold's test data is reused.
    calibration, calibrated = calibrate(probs, labels)
    write_json(run.calibration, calibration)
    run.plots.mkdir(exist_ok=True)
    reliability = reliability_table(probs, labels), reliability_table(calibrated, labels)
    plots.plot_reliability(*reliability, calibration, run.plots / "reliability.png")

    metrics = {
        "setup": {**settings, "demo_model": is_demo_model(load_model_config(settings["model_name_or_path"]))},
        "label_names": names,
        "data": data_counts,
        "folds": folds,
        "summary": summarize_folds([fold["test"] for fold in folds], names),
        "baseline": baseline_result,
        "calibration": calibration,
        "env": json.loads(run.env.read_text()),
        "finished": now_utc(),
    }
    write_json(run.metrics, metrics)
    plots.plot_learning_curves(
        {f["fold"]: f["history"] for f in folds},
        {f["fold"]: f["best_epoch"] - 1 for f in folds},
        run.plots / "learning_curves.png",
    )
    plots.plot_confusion_matrix(
        metrics["summary"]["confusion_matrix"],
        names,
        run.plots / "confusion_matrix.png",
        "Fine-tuned encoder, summed over test folds",
    )
    write_text(run.report, render_report(metrics))  # last, and whole: a run with a report has finished
    return metrics


def score_baseline(
    settings: dict, rows: pd.DataFrame, fold_of_row: np.ndarray, names: list[str]
) -> tuple[dict, np.ndarray]:
    """The TF-IDF baseline trained and scored on the encoder's folds: its entry in metrics.json (the paired test
    is added by the caller) and its out-of-fold predictions."""
    texts, labels = rows["text"].to_numpy(), rows["label"].to_numpy()
    predicted, folds = np.zeros(len(rows), dtype=np.int64), []
    for k in range(settings["num_folds"]):
        train, test = fold_of_row != k, fold_of_row == k
        probs = baseline.tfidf_logreg_probs(
            texts[train].tolist(), labels[train], texts[test].tolist(), len(names), settings["class_weighted_loss"]
        )
        predicted[test] = probs.argmax(axis=1)
        folds.append(classification_metrics(labels[test], predicted[test], names))
    return {"description": baseline.DESCRIPTION, "folds": folds, "summary": summarize_folds(folds, names)}, predicted


def out_of_fold_frame(
    settings: dict, rows: pd.DataFrame, probs: np.ndarray, names: list[str], fold_of_row: np.ndarray
) -> pd.DataFrame:
    """oof_predictions.parquet: every used row's gold label, out-of-fold prediction and fold. row_id counts from 0
    below the header (as in labels.parquet); spreadsheet_row is the row a spreadsheet shows (null for Parquet)."""
    row_ids, labels = rows["row_id"].to_numpy(dtype=np.int64), rows["label"].to_numpy()
    numbered = Path(settings["data"]).suffix.lower() in SPREADSHEET_SUFFIXES
    spreadsheet_row = pd.array(row_ids + settings["header_row"] + 1 if numbered else [None] * len(rows), dtype="Int64")
    predicted = probs.argmax(axis=1)
    return pd.DataFrame(
        {
            "row_id": row_ids,
            "spreadsheet_row": spreadsheet_row,
            "text": rows["text"].tolist(),
            "gold": labels,
            "gold_name": [names[i] for i in labels],
            "predicted": predicted,
            "predicted_name": [names[i] for i in predicted],
            "fold": fold_of_row,
            **{f"prob_{name}": probs[:, i] for i, name in enumerate(names)},
        }
    )
