"""Learning curves under a training run's folds: the subsampling, the fast baseline path, one encoder run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from weibolabel.training.learning_curve import subsample

from helpers.jobs import launch_job


def test_subsample_is_stratified_nested_and_complete_at_one():
    labels = np.repeat([0, 1, 2], [40, 20, 8])
    index = np.arange(len(labels))
    quarter, half, full = (subsample(index, labels, f, seed=1) for f in (0.25, 0.5, 1.0))
    assert np.bincount(labels[quarter]).tolist() == [10, 5, 2]
    assert set(quarter) <= set(half) <= set(full)
    assert full.tolist() == index.tolist()
    assert subsample(index, labels, 0.25, seed=1).tolist() == quarter.tolist()


def test_baseline_only_writes_every_fraction(tmp_path, tiny_run_dir):
    out = tmp_path / "curve"
    launch_job("learning_curve.py", ["--run", str(tiny_run_dir), "--baseline_only", "--output_dir", str(out)])
    table = pd.read_csv(out / "learning_curve.csv")
    assert set(table["model"]) == {"baseline"}
    assert sorted(table["fraction"].unique()) == [0.25, 0.5, 0.75, 1.0]
    assert len(table) == 4 * 3  # every fraction on every fold
    sizes = table.groupby("fraction")["num_train"].mean()
    assert sizes.is_monotonic_increasing
    assert table["macro_f1"].between(0, 1).all()
    assert (out / "learning_curve.png").stat().st_size > 10_000
    assert "| baseline | 25% |" in (out / "learning_curve.md").read_text()


def test_encoder_curve_with_two_fractions(tmp_path, tiny_run_dir):
    out = tmp_path / "curve"
    launch_job("learning_curve.py", ["--run", str(tiny_run_dir), "--fractions", "0.5", "1.0", "--output_dir", str(out)])
    table = pd.read_csv(out / "learning_curve.csv")
    encoder = table[table["model"] == "encoder"]
    assert len(encoder) == 2 * 3 and sorted(encoder["fraction"].unique()) == [0.5, 1.0]
    assert set(encoder.loc[encoder["fraction"] == 1.0, "source"]) == {"run"}  # the run's own folds, not retrained
    assert set(encoder.loc[encoder["fraction"] == 0.5, "source"]) == {"trained"}
    folds = pd.read_csv(tiny_run_dir / "folds.csv")
    full = encoder[encoder["fraction"] == 1.0].sort_values("fold")["num_train"].tolist()
    assert full == [int((folds["fold"] != k).sum()) for k in range(3)]
    assert (table["model"] == "baseline").sum() == 2 * 3
    assert (out / "learning_curve.png").is_file() and "encoder" in (out / "learning_curve.md").read_text()
