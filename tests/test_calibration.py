"""Temperature scaling on out-of-fold predictions: the fit, ECE, and what a training run writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weibolabel.stats.calibration import calibrate, expected_calibration_error, fit_temperature, nll, softmax
from weibolabel.training.report import render_report


def overconfident(num_rows: int = 3000, sharpen: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z); the 'model' reports softmax(sharpen * z), so T = sharpen recovers the truth."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(num_rows, 4))
    true = softmax(logits)
    labels = np.array([rng.choice(4, p=p) for p in true])
    return sharpen * logits, labels


def test_temperature_of_overconfident_logits_is_above_one_and_helps():
    logits, labels = overconfident()
    temperature = fit_temperature(logits, labels)
    assert 2.5 < temperature < 3.5
    assert nll(logits, labels, temperature) < nll(logits, labels) - 0.1
    before, after = softmax(logits), softmax(logits, temperature)
    assert expected_calibration_error(after, labels) < expected_calibration_error(before, labels) / 2


def test_calibrate_summary_from_probabilities():
    logits, labels = overconfident(sharpen=2.0)
    summary, calibrated = calibrate(softmax(logits), labels)
    assert summary["temperature"] == pytest.approx(2.0, rel=0.15)
    assert summary["ece_after"] < summary["ece_before"]
    assert summary["nll_after"] < summary["nll_before"]
    assert summary["fitted_on"] == "out-of-fold predictions"
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, rtol=1e-6)
    # temperature scaling never changes the predicted class
    assert (calibrated.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_ece_of_a_perfectly_calibrated_constant_is_zero():
    probs = np.tile([0.75, 0.25], (400, 1))
    labels = np.array([0] * 300 + [1] * 100)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_training_run_writes_calibration(tiny_run_dir):
    calibration = json.loads((tiny_run_dir / "calibration.json").read_text())
    assert {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "fitted_on"} <= calibration.keys()
    assert calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9  # T = 1 is in the search range
    metrics = json.loads((tiny_run_dir / "metrics.json").read_text())
    assert metrics["calibration"] == calibration
    assert (tiny_run_dir / "plots" / "reliability.png").stat().st_size > 10_000
    report = (tiny_run_dir / "report.md").read_text()
    assert "## Calibration" in report and "plots/reliability.png" in report
    # the report still renders for runs made before calibration existed
    metrics.pop("calibration")
    assert "## Calibration" not in render_report(metrics)
