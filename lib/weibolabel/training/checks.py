"""Warnings a training report must show before anyone quotes its numbers: pure functions over metrics.json's
content, each returning None (nothing to flag) or one sentence with the evidence."""

from __future__ import annotations

import numpy as np

from weibolabel.stats.comparison import corrected_ttest, test_fraction_of

# Thresholds: where a reader should stop and look, not statistical tests (the baseline check is one).
ONE_CLASS_SHARE = 0.9  # of all out-of-fold predictions in one class
LARGE_FOLD_SPREAD = 0.05  # standard deviation of macro-F1 over folds
MANY_TRUNCATED = 0.05  # of the rows used
TEMPERATURE_RANGE = (0.67, 1.5)


def one_class(metrics: dict) -> str | None:
    """The model predicts (almost) one class: the summed confusion matrix's columns."""
    predicted = np.asarray(metrics["summary"]["confusion_matrix"]).sum(axis=0)
    top = int(predicted.argmax())
    share = predicted[top] / max(predicted.sum(), 1)
    if share < ONE_CLASS_SHARE:
        return None
    return (
        f"The model predicts '{metrics['label_names'][top]}' for {share:.0%} of the out-of-fold rows "
        f"({int(predicted[top])} of {int(predicted.sum())}): it has learned little beyond the majority class."
    )


def below_baseline(metrics: dict) -> str | None:
    """Below the baseline beyond fold noise (corrected resampled t-test), or the baseline right on significantly
    more of the same comments (McNemar): with five folds the t-test is cautious, and either deserves a look."""
    baseline = metrics.get("baseline")
    if not baseline:
        return None
    folds = metrics["folds"]
    differences = [f["test"]["macro_f1"] - b["macro_f1"] for f, b in zip(folds, baseline["folds"])]
    test = corrected_ttest(differences, test_fraction_of(folds))
    interval = (
        f"macro-F1 difference {test['mean_difference']:+.3f} (95% CI [{test['ci_low']:+.3f}, "
        f"{test['ci_high']:+.3f}], corrected resampled t-test, p = {test['p_value']:.3g})"
    )
    if test["ci_high"] < 0:
        return f"The encoder is below the TF-IDF baseline beyond fold noise: {interval}."
    mcnemar = (baseline.get("paired_test") or {}).get("mcnemar")
    if mcnemar and mcnemar["p_value"] < 0.05 and mcnemar["only_b_correct"] > mcnemar["only_a_correct"]:
        return (
            f"The TF-IDF baseline gets more of the same comments right than the encoder ({mcnemar['only_b_correct']} "
            f"against {mcnemar['only_a_correct']}, McNemar p = {mcnemar['p_value']:.3g}), though the fold scores "
            f"do not tell them apart ({interval}): a pretrained encoder should beat it; check the model, the "
            "epochs and the learning rate."
        )
    return None


def still_rising(metrics: dict) -> str | None:
    """Validation macro-F1 was still rising at the last epoch in most folds: more epochs would likely help."""
    curves = {fold["fold"]: [epoch["val_macro_f1"] for epoch in fold["history"]] for fold in metrics["folds"]}
    rising = [k for k, curve in curves.items() if len(curve) >= 2 and curve[-1] > curve[-2] and curve[-1] >= max(curve)]
    if len(rising) <= len(metrics["folds"]) / 2:
        return None
    return (
        f"Validation macro-F1 was still rising at the last epoch in {len(rising)} of {len(metrics['folds'])} folds "
        f"(folds {rising}): training stopped before it converged; try more --num_epochs."
    )


def large_spread(metrics: dict) -> str | None:
    """The spread over folds is large: the mean hides fold-to-fold differences a reader must know about."""
    values = [f["test"]["macro_f1"] for f in metrics["folds"]]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    if spread <= LARGE_FOLD_SPREAD:
        return None
    return (
        f"Macro-F1 varies a lot over folds: standard deviation {spread:.3f} (from {min(values):.3f} to "
        f"{max(values):.3f}); the mean is uncertain, more labeled data would narrow it."
    )


def many_truncated(metrics: dict) -> str | None:
    data = metrics["data"]
    truncated, used = data.get("truncated", 0), max(data.get("rows_used", 0), 1)
    if truncated / used <= MANY_TRUNCATED:
        return None
    return (
        f"{truncated} of {used} texts ({truncated / used:.0%}) were longer than --max_length "
        f"{metrics['setup']['max_length']} tokens and were truncated: the model never saw their ends."
    )


def temperature_far_from_one(metrics: dict) -> str | None:
    calibration = metrics.get("calibration")
    if not calibration:
        return None
    temperature, (low, high) = calibration["temperature"], TEMPERATURE_RANGE
    if low <= temperature <= high:
        return None
    direction = "over-confident" if temperature > 1 else "under-confident"
    return (
        f"The fitted temperature is {temperature:.2f} (outside [{low}, {high}]): the raw probabilities were strongly "
        f"{direction} (ECE {calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after scaling)."
    )


CHECKS = (one_class, below_baseline, still_rising, large_spread, many_truncated, temperature_far_from_one)


def run_checks(metrics: dict) -> list[str]:
    """Every flag raised on this run, in the order of CHECKS."""
    return [message for check in CHECKS if (message := check(metrics))]


def checks_section(metrics: dict) -> list[str]:
    """The report's 'Checks' section as Markdown lines."""
    warnings = [f"- **Warning.** {message}" for message in run_checks(metrics)]
    none = (
        "None of the checks flagged anything (one predicted class, below the baseline, still rising at the last "
        "epoch, large spread over folds, many truncated texts, temperature far from 1)."
    )
    return ["## Checks", "", *(warnings or [none]), ""]
