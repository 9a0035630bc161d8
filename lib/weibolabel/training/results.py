"""Gathering a finished cross-validation: out-of-fold predictions, the baseline on the same folds,
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
    run = RunLayout(out)
    folds = [json.loads(run.fold_result(k).read_text()) for k in range(settings["num_folds"])]
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for k in range(settings["num_folds"]):
        predictions = pd.read_parquet(run.test_predictions(k))
        probs[predictions["index"].to_numpy()] = np.stack(predictions["probs"].to_numpy())
    predicted = probs.argmax(axis=1)

    baseline_result, baseline_pred = None, None
    if settings["baseline"]:
        baseline_result, baseline_pred = score_baseline(settings, texts, labels, fold_of_row, names)
    oof = out_of_fold_frame(
        settings=settings, rows=rows, texts=texts, labels=labels, probs=probs, names=names, fold_of_row=fold_of_row
    )
    if baseline_pred is not None:
        oof["baseline_predicted"] = baseline_pred
    write_table(oof, run.oof_predictions)
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
        "folds": folds,
        "summary": summarize_folds([fold["test"] for fold in folds], names),
        "baseline": baseline_result,
        # One temperature for the labeling job, fitted on out-of-fold rows only (no fold's test data is reused).
        "calibration": calibrate_run(probs, labels, out),
        "env": json.loads(run.env.read_text()),
        "finished": now_utc(),
    }
    write_json(run.metrics, metrics)
    write_plots(run, metrics, folds)
    write_text(run.report, render_report(metrics))  # last, and whole: a run with a report has finished
    return metrics


def score_baseline(
    settings: dict, texts: list[str], labels: np.ndarray, fold_of_row: np.ndarray, names: list[str]
) -> tuple[dict, np.ndarray]:
    """The TF-IDF baseline trained and scored on the encoder's folds: its entry in metrics.json (the paired test
    is added by the caller) and its out-of-fold predictions."""
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for k in range(settings["num_folds"]):
        train, test = fold_of_row != k, fold_of_row == k
        probs[test] = baseline.tfidf_logreg_probs(
            [t for t, m in zip(texts, train) if m],
            labels[train],
            [t for t, m in zip(texts, test) if m],
            len(names),
            settings["class_weighted_loss"],
        )
    predicted = probs.argmax(axis=1)
    folds = [
        classification_metrics(labels[fold_of_row == k], predicted[fold_of_row == k], names)
        for k in range(settings["num_folds"])
    ]
    return {"description": baseline.DESCRIPTION, "folds": folds, "summary": summarize_folds(folds, names)}, predicted


def out_of_fold_frame(
    *,
    settings: dict,
    rows: pd.DataFrame,
    texts: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    names: list[str],
    fold_of_row: np.ndarray,
) -> pd.DataFrame:
    """oof_predictions.parquet's rows: every used row with its gold label, out-of-fold prediction and fold.
    row_id is the 0-based position below the header, as in labels.parquet; spreadsheet_row is the row number a
    spreadsheet program shows for it (null for Parquet input, which has no such numbering)."""
    row_ids = rows["row_id"].to_numpy(dtype=np.int64)
    numbered = Path(settings["data"]).suffix.lower() in SPREADSHEET_SUFFIXES
    spreadsheet_row = pd.array(row_ids + settings["header_row"] + 1 if numbered else [None] * len(rows), dtype="Int64")
    predicted = probs.argmax(axis=1)
    return pd.DataFrame(
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
        }
    )


def write_plots(run: RunLayout, metrics: dict, folds: list[dict]) -> None:
    """The per-fold learning curves and the summed confusion matrix (calibrate_run draws the reliability plot)."""
    run.plots.mkdir(exist_ok=True)
    plots.plot_learning_curves(
        {f["fold"]: f["history"] for f in folds},
        {f["fold"]: f["best_epoch"] - 1 for f in folds},
        run.plots / "learning_curves.png",
    )
    plots.plot_confusion_matrix(
        metrics["summary"]["confusion_matrix"],
        metrics["label_names"],
        run.plots / "confusion_matrix.png",
        "Fine-tuned encoder, summed over test folds",
    )


def calibrate_run(probs: np.ndarray, labels: np.ndarray, out: Path) -> dict:
    """A training run's calibration: `<out>/calibration.json` (read by the labeling job, which divides every fold
    model's logits by T) and `<out>/plots/reliability.png`; returns the summary for metrics.json."""
    summary, calibrated = calibrate(probs, labels)
    run = RunLayout(out)
    write_json(run.calibration, summary)
    run.plots.mkdir(exist_ok=True)
    plots.plot_reliability(
        reliability_table(probs, labels),
        reliability_table(calibrated, labels),
        summary,
        run.plots / "reliability.png",
    )
    return summary
