"""Same seed, same data, same process count on CPU: the same metrics.json (timestamps and environment aside) and
bitwise identical fold checkpoints. test_faults.py uses the same comparison for a killed and resumed run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from conftest import TINY_TRAIN_ARGS, launch_job
from safetensors.torch import load_file


def comparable_metrics(run: Path) -> dict:
    """metrics.json without what differs between two identical runs: times, the environment, the directory."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("env")
    metrics.pop("finished")
    metrics["setup"].pop("output_dir")
    for fold in metrics["folds"]:
        for epoch in fold["history"]:
            epoch.pop("seconds")
    return metrics


def assert_same_training_result(expected: Path, actual: Path) -> None:
    want, got = comparable_metrics(expected), comparable_metrics(actual)
    # Per-fold test metrics and the summary first, for a readable failure; then everything else that remains.
    assert [f["test"] for f in got["folds"]] == [f["test"] for f in want["folds"]]
    assert got["summary"] == want["summary"]
    assert got == want
    for fold in range(want["setup"]["num_folds"]):
        want_tensors = load_file(expected / f"fold_{fold}" / "model.safetensors")
        got_tensors = load_file(actual / f"fold_{fold}" / "model.safetensors")
        assert want_tensors.keys() == got_tensors.keys()
        for name, tensor in want_tensors.items():
            assert tensor.dtype == got_tensors[name].dtype and torch.equal(tensor, got_tensors[name]), (fold, name)
        want_probs = pd.read_parquet(expected / f"fold_{fold}" / "test_predictions.parquet")
        got_probs = pd.read_parquet(actual / f"fold_{fold}" / "test_predictions.parquet")
        pd.testing.assert_frame_equal(want_probs, got_probs, check_exact=True)
        assert not (actual / f"fold_{fold}" / "resume").exists()
    pd.testing.assert_frame_equal(
        pd.read_parquet(expected / "oof_predictions.parquet"),
        pd.read_parquet(actual / "oof_predictions.parquet"),
        check_exact=True,
    )


def test_same_seed_same_data_gives_identical_metrics_and_checkpoints(
    tmp_path, tiny_run_dir, tiny_base_model_dir, labeled_xlsx
):
    again = tmp_path / "again"
    launch_job(
        "train.py",
        [
            "--data",
            str(labeled_xlsx),
            "--model_name_or_path",
            str(tiny_base_model_dir),
            "--output_dir",
            str(again),
            *TINY_TRAIN_ARGS,
        ],
    )
    assert_same_training_result(tiny_run_dir, again)
    # Training moved the weights (a run that learned nothing would be trivially reproducible).
    start = load_file(tiny_base_model_dir / "model.safetensors")
    trained = load_file(again / "fold_0" / "model.safetensors")
    shared = [name for name in start if "bert." + name in trained]
    assert shared and any(not torch.equal(start[n], trained["bert." + n]) for n in shared)
