"""jobs/train.py through its real entry point: what a finished run directory holds, resuming, refusing to mix
runs, independence of the process count, and clean errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from weibolabel.run.config import TrainConfig

from helpers.data import NAMES, make_labeled_rows
from helpers.jobs import launch_job, train_args

NUM_FOLDS = 3


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def fold_results(metrics: dict) -> list[dict]:
    """Per-fold results without wall-clock times, which legitimately differ between runs."""
    folds = []
    for fold in metrics["folds"]:
        fold = {**fold, "history": [{k: v for k, v in h.items() if "seconds" not in k} for h in fold["history"]]}
        folds.append(fold)
    return folds


# --------------------------------------------------------------------------------------------- run directory
def test_run_directory_has_config_env_and_tables(tiny_run_dir, labeled_xlsx):
    config = yaml.safe_load((tiny_run_dir / "config.yaml").read_text())
    assert config["num_folds"] == NUM_FOLDS
    assert config["num_epochs"] == 2
    assert config["seed"] == 7
    assert config["learning_rate"] == pytest.approx(1e-3)
    assert config["data"] == str(labeled_xlsx)

    env = json.loads((tiny_run_dir / "env.json").read_text())
    assert {"torch", "transformers", "accelerate", "python"} <= env["versions"].keys()
    assert env["git_revision"]
    assert env["hardware"]["num_processes"] == 1
    assert "cpu_count" in env["hardware"] and "gpus" in env["hardware"] and env["hardware"]["device"] == "cpu"

    folds = pd.read_csv(tiny_run_dir / "folds.csv")
    assert len(folds) == 120
    assert set(folds["fold"]) == set(range(NUM_FOLDS))
    assert {"row", "text", "label", "fold"} <= set(folds.columns)

    issues = pd.read_csv(tiny_run_dir / "data_issues.csv")
    assert list(issues.columns) == ["row", "column", "issue", "action"]
    assert issues.empty  # the generated table has no empty texts and no duplicates

    for plot in ("learning_curves.png", "confusion_matrix.png"):
        path = tiny_run_dir / "plots" / plot
        assert path.is_file()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_json_has_history_per_fold_metrics_summary_and_baseline(tiny_run_dir):
    metrics = read_metrics(tiny_run_dir)
    assert metrics["label_names"] == NAMES
    assert metrics["setup"]["demo_model"] is True
    assert metrics["data"]["rows_read"] == 120
    assert metrics["data"]["rows_used"] == 120
    assert len(metrics["folds"]) == NUM_FOLDS
    for k, fold in enumerate(metrics["folds"]):
        assert fold["fold"] == k
        assert [h["epoch"] for h in fold["history"]] == [1, 2]
        for record in fold["history"]:
            assert {"train_loss", "val_accuracy", "val_macro_f1", "learning_rate"} <= record.keys()
            assert 0 < record["train_seconds"] < record["seconds"]  # the steps, without the validation pass
            assert math.isfinite(record["train_loss"])
        assert 1 <= fold["best_epoch"] <= 2
        test = fold["test"]
        assert set(test["per_class"]) == set(NAMES)
        matrix = np.array(test["confusion_matrix"])
        assert matrix.shape == (4, 4)
        assert matrix.sum() == fold["num_test"]
        assert test["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
        assert sum(c["support"] for c in test["per_class"].values()) == fold["num_test"]
    assert sum(f["num_test"] for f in metrics["folds"]) == 120

    summary = metrics["summary"]
    accuracies = [f["test"]["accuracy"] for f in metrics["folds"]]
    assert summary["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    for key in ("macro_f1", "weighted_f1"):
        assert {"mean", "std"} <= summary[key].keys()
    assert set(summary["per_class_f1"]) == set(NAMES)
    assert np.array(summary["confusion_matrix"]).sum() == 120
    assert summary["num_folds"] == NUM_FOLDS

    baseline = metrics["baseline"]
    assert baseline["description"]
    assert len(baseline["folds"]) == NUM_FOLDS
    assert {"mean", "std"} <= baseline["summary"]["macro_f1"].keys()


def test_report_md_has_tables_data_summary_baseline_and_demo_banner(tiny_run_dir):
    report = (tiny_run_dir / "report.md").read_text()
    metrics = read_metrics(tiny_run_dir)
    assert "Demo model" in report  # the tiny encoder is built from scratch
    assert "## Per fold" in report
    assert "| mean ± std |" in report
    for k in range(NUM_FOLDS):
        assert f"\n| {k} | " in report
    assert "## Per class" in report
    for name in NAMES:
        assert f"| {name} |" in report
    assert "Confusion matrix" in report
    assert "gold \\ predicted" in report
    assert "## Data" in report
    assert "rows read: 120; used: 120" in report
    assert "Baseline" in report
    accuracy = metrics["summary"]["accuracy"]
    assert f"{accuracy['mean']:.3f} ± {accuracy['std']:.3f}" in report
    assert "plots/confusion_matrix.png" in report and "plots/learning_curves.png" in report


def test_oof_predictions_cover_every_used_row_once(tiny_run_dir):
    oof = pd.read_parquet(tiny_run_dir / "oof_predictions.parquet")
    folds = pd.read_csv(tiny_run_dir / "folds.csv")
    assert len(oof) == 120
    assert oof["row_id"].dtype == np.int64 and oof["row_id"].is_unique
    assert sorted(oof["row_id"]) == sorted(folds["row_id"]) == list(range(120))  # no row of the sheet dropped
    # The spreadsheet row is derivable: header on row 1, so row_id 0 is spreadsheet row 2, as data_issues.csv names it.
    assert (oof["spreadsheet_row"] == oof["row_id"] + 2).all()
    assert {"fold", "gold", "predicted", "text"} <= set(oof.columns)
    prob_columns = [f"prob_{name}" for name in NAMES]
    assert set(prob_columns) <= set(oof.columns)
    probs = oof[prob_columns].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(oof["predicted"].to_numpy(), probs.argmax(axis=1))
    merged = oof.merge(folds[["row_id", "fold", "label"]], on="row_id", suffixes=("", "_csv"))
    assert (merged["fold"] == merged["fold_csv"]).all()
    assert (merged["gold"] == merged["label"]).all()
    # The out-of-fold confusion matrix is the summed per-fold one.
    matrix = np.zeros((4, 4), dtype=int)
    np.add.at(matrix, (oof["gold"].to_numpy(), oof["predicted"].to_numpy()), 1)
    assert matrix.tolist() == read_metrics(tiny_run_dir)["summary"]["confusion_matrix"]


def test_fold_checkpoints_are_complete(tiny_run_dir):
    for k in range(NUM_FOLDS):
        fold_dir = tiny_run_dir / f"fold_{k}"
        assert (fold_dir / "fold_result.json").is_file()
        assert (fold_dir / "model.safetensors").is_file()
        assert (fold_dir / "tokenizer.json").is_file() or (fold_dir / "vocab.txt").is_file()
        config = json.loads((fold_dir / "config.json").read_text())
        assert config["id2label"] == {str(i): name for i, name in enumerate(NAMES)}
        assert not (fold_dir / "resume").exists()  # the resume state is removed once a fold finishes


# --------------------------------------------------------------------------------------------- resume, guards
def test_rerun_is_a_noop_that_skips_finished_folds(tiny_run_dir, tiny_base_model_dir, labeled_xlsx):
    before = read_metrics(tiny_run_dir)
    weights = {k: (tiny_run_dir / f"fold_{k}" / "model.safetensors").stat().st_mtime_ns for k in range(NUM_FOLDS)}
    result = launch_job("train.py", train_args(labeled_xlsx, tiny_base_model_dir, tiny_run_dir))
    log = result.stdout + result.stderr
    for k in range(NUM_FOLDS):
        assert f"fold {k}: already finished" in log
    assert "epoch 1/" not in log  # nothing was trained again
    after = read_metrics(tiny_run_dir)
    assert after["summary"] == before["summary"]
    assert fold_results(after) == fold_results(before)
    assert {k: (tiny_run_dir / f"fold_{k}" / "model.safetensors").stat().st_mtime_ns for k in range(NUM_FOLDS)} == (
        weights
    )


def test_rerun_with_other_settings_is_refused(tiny_run_dir, tiny_base_model_dir, labeled_xlsx):
    config_before = (tiny_run_dir / "config.yaml").read_text()
    args = train_args(labeled_xlsx, tiny_base_model_dir, tiny_run_dir, "--learning_rate", "5e-4")
    result = launch_job("train.py", args, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "learning_rate" in result.stderr
    assert "different settings" in result.stderr
    assert (tiny_run_dir / "config.yaml").read_text() == config_before


def test_two_processes_give_the_same_results_as_one(tiny_run_dir, tiny_base_model_dir, labeled_xlsx, tmp_path):
    out = tmp_path / "two-processes"
    launch_job("train.py", train_args(labeled_xlsx, tiny_base_model_dir, out), num_processes=2)
    one, two = read_metrics(tiny_run_dir), read_metrics(out)
    assert two["env"]["hardware"]["num_processes"] == 2
    assert two["summary"] == one["summary"]
    assert fold_results(two) == fold_results(one)
    assert two["baseline"] == one["baseline"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "oof_predictions.parquet"), pd.read_parquet(tiny_run_dir / "oof_predictions.parquet")
    )


# --------------------------------------------------------------------------------------------- user errors
def test_bad_label_exits_2_naming_file_row_and_column(tiny_base_model_dir, tmp_path):
    table = make_labeled_rows(24)
    table["Label"] = table["Label"].astype(object)
    table.loc[4, "Label"] = "abc"  # spreadsheet row 6 (header is row 1)
    data = tmp_path / "bad.xlsx"
    table.to_excel(data, index=False)
    out = tmp_path / "run"
    result = launch_job("train.py", train_args(data, tiny_base_model_dir, out), check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(data) in result.stderr
    assert "row 6" in result.stderr
    assert "column 'Label'" in result.stderr
    assert "'abc'" in result.stderr
    assert not (out / "metrics.json").exists()


def test_help_documents_every_option():
    result = launch_job("train.py", ["--help"])
    assert result.returncode == 0
    for option in dataclasses.fields(TrainConfig):
        assert f"--{option.name}" in result.stdout, option.name
    assert "--config" in result.stdout
