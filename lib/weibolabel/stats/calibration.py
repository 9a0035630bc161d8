"""Temperature scaling fitted on out-of-fold predictions, expected calibration error and the reliability table.

Out-of-fold probabilities come from fold models that never saw their rows, so the fit needs no extra held-out split.
Log-probabilities serve as logits: they differ by a per-row constant, which the softmax ignores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from weibolabel.util.errors import UserError

NUM_BINS = 15
FITTED_ON = "out-of-fold predictions"
_LOG_T_RANGE = (math.log(0.05), math.log(20.0))


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant; the clip keeps a float32 zero from becoming -inf."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels under softmax(logits / T)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = (top + np.log(np.exp(scaled - top).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tolerance: float = 1e-5) -> float:
    """The T minimising NLL, by golden-section search on log T in [0.05, 20] (the NLL is convex in 1/T, hence
    unimodal in log T)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise UserError("Cannot fit a temperature on zero predictions.")
    low, high = _LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while high - low > tolerance:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((low + high) / 2))


def reliability_table(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> pd.DataFrame:
    """Per equal-width confidence bin: rows, mean confidence (top-1 probability) and accuracy of the top-1 class."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # Bins are (lower, upper]; a confidence of exactly 0 cannot occur (it is at least 1 / classes).
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, num_bins - 1)
    members = [which == b for b in range(num_bins)]
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": [int(m.sum()) for m in members],
            "mean_confidence": [float(confidence[m].mean()) if m.any() else float("nan") for m in members],
            "accuracy": [float(correct[m].mean()) if m.any() else float("nan") for m in members],
        }
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Sum over bins of (share of rows in the bin) x |accuracy - mean confidence|."""
    table = reliability_table(probs, labels, num_bins)
    filled = table[table["count"] > 0]
    gap = (filled["accuracy"] - filled["mean_confidence"]).abs()
    return float((filled["count"] * gap).sum() / max(int(table["count"].sum()), 1))


def calibrate(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> tuple[dict, np.ndarray]:
    """Fit T on (probs, labels); the summary for calibration.json and the recalibrated probabilities."""
    logits, labels = log_probs(probs), np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(logits, labels)
    calibrated = softmax(logits, temperature)
    summary = {
        "temperature": temperature,
        "ece_before": expected_calibration_error(probs, labels, num_bins),
        "ece_after": expected_calibration_error(calibrated, labels, num_bins),
        "nll_before": nll(logits, labels),
        "nll_after": nll(logits, labels, temperature),
        "fitted_on": FITTED_ON,
        "num_rows": len(labels),
        "num_bins": num_bins,
    }
    return summary, calibrated
