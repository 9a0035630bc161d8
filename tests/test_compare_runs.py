"""Paired comparison of runs (corrected resampled t-test, McNemar), the encoder-vs-baseline test in the training
report, and the report's checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from weibolabel.stats.comparison import corrected_ttest, mcnemar
from weibolabel.training import checks

from helpers.data import NAMES
from helpers.jobs import run_job
from helpers.outputs import write_fake_run


def noisy_predictions(gold, error_rate, seed, num_classes=4):
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(gold)) < error_rate
    return np.where(wrong, (gold + rng.integers(1, num_classes, len(gold))) % num_classes, gold)


def test_corrected_ttest_matches_the_closed_form_and_the_plain_paired_test():
    differences = [0.02, 0.05, -0.01, 0.04, 0.03]
    result = corrected_ttest(differences, test_fraction=0.25)
    d = np.array(differences)
    standard_error = np.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    assert result["t"] == pytest.approx(d.mean() / standard_error)
    from scipy import stats

    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(result["t"]), 4))
    half = stats.t.ppf(0.975, 4) * standard_error
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # With no overlap correction it is the ordinary paired t-test; the correction only widens it.
    plain = corrected_ttest(differences, test_fraction=0.0)
    assert plain["p_value"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert result["p_value"] > plain["p_value"]


def test_test_fraction_counts_only_the_rows_a_fold_model_was_fitted_on():
    """5 folds of 100 rows: 400 outside each test fold, of which 40 were the validation split (not trained on)."""
    from weibolabel.stats.comparison import test_fraction_of

    folds = [{"num_test": 100, "num_train": 360, "num_validation": 40} for _ in range(5)]
    assert test_fraction_of(folds) == pytest.approx(100 / 360)
    assert test_fraction_of([{"num_test": 100} for _ in range(5)]) == pytest.approx(100 / 400)  # older records


def test_mcnemar_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

    rng = np.random.default_rng(1)
    correct_a, correct_b = rng.random(300) < 0.8, rng.random(300) < 0.7
    result = mcnemar(correct_a, correct_b)
    table = [
        [int((correct_a & correct_b).sum()), int((correct_a & ~correct_b).sum())],
        [int((~correct_a & correct_b).sum()), int((~correct_a & ~correct_b).sum())],
    ]
    assert result["only_a_correct"] == table[0][1] and result["only_b_correct"] == table[1][0]
    assert result["p_value"] == pytest.approx(statsmodels_mcnemar(table, exact=True).pvalue)


def test_compare_runs_job_writes_paired_tests_per_pair(tmp_path, capsys):
    gold = np.arange(400) % 4
    run_a = write_fake_run(tmp_path / "a", gold=gold, predicted=noisy_predictions(gold, 0.1, 0))
    run_b = write_fake_run(tmp_path / "b", gold=gold, predicted=noisy_predictions(gold, 0.3, 1))
    run_c = write_fake_run(tmp_path / "c", gold=gold, predicted=noisy_predictions(gold, 0.12, 2))
    out = tmp_path / "cmp"
    status, _, err = run_job("compare_runs.py", [str(run_a), str(run_b), str(run_c), "--output_dir", str(out)], capsys)
    assert status == 0, err
    result = json.loads((out / "comparison.json").read_text())
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [
        (str(run_a), str(run_b)),
        (str(run_a), str(run_c)),
        (str(run_b), str(run_c)),
    ]
    a_vs_b = result["pairs"][0]
    assert a_vs_b["metrics"]["accuracy"]["mean_difference"] > 0.1 and a_vs_b["metrics"]["accuracy"]["ci_low"] > 0
    assert a_vs_b["mcnemar"]["only_a_correct"] > a_vs_b["mcnemar"]["only_b_correct"]
    assert a_vs_b["mcnemar"]["p_value"] < 1e-6
    markdown = (out / "comparison.md").read_text()
    assert "Nadeau & Bengio" in markdown and markdown.count("| macro_f1 |") == 3


def test_compare_runs_refuses_runs_on_other_folds(tmp_path, capsys):
    gold = np.arange(200) % 4
    run_a = write_fake_run(tmp_path / "a", gold=gold, predicted=gold)
    run_b = write_fake_run(tmp_path / "b", gold=gold, predicted=gold, folds=(np.arange(200) + 1) % 5)
    status, _, err = run_job("compare_runs.py", [str(run_a), str(run_b), "--output_dir", str(tmp_path / "o")], capsys)
    assert status == 2 and "different folds" in err and "line 2" in err
    run_c = write_fake_run(tmp_path / "c", gold=gold[:150], predicted=gold[:150])
    status, _, err = run_job("compare_runs.py", [str(run_a), str(run_c), "--output_dir", str(tmp_path / "o")], capsys)
    assert status == 2 and "different data" in err
    status, _, err = run_job("compare_runs.py", [str(run_a), "--output_dir", str(tmp_path / "o")], capsys)
    assert status == 2 and "at least two" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------- checks
def clean_metrics() -> dict:
    folds = [
        {
            "fold": k,
            "num_test": 100,
            "history": [{"val_macro_f1": 0.7}, {"val_macro_f1": 0.8}, {"val_macro_f1": 0.79}],
            "test": {"macro_f1": 0.8 + 0.01 * k},
        }
        for k in range(5)
    ]
    return {
        "label_names": NAMES,
        "summary": {"confusion_matrix": [[90, 5, 3, 2], [4, 80, 10, 6], [3, 8, 85, 4], [2, 3, 4, 91]]},
        "folds": folds,
        "baseline": {"folds": [{"macro_f1": 0.75 + 0.01 * k} for k in range(5)]},
        "data": {"rows_used": 500, "truncated": 3},
        "setup": {"max_length": 128},
        "calibration": {"temperature": 1.1, "ece_before": 0.05, "ece_after": 0.02},
    }


def test_checks_flag_each_problem_with_its_evidence():
    assert checks.run_checks(clean_metrics()) == []
    assert "None of the checks flagged" in "\n".join(checks.checks_section(clean_metrics()))

    metrics = clean_metrics()
    metrics["summary"]["confusion_matrix"] = [[95, 0, 0, 0], [90, 5, 0, 0], [100, 0, 0, 0], [99, 0, 0, 1]]
    assert "'production' for 98% of the out-of-fold rows (384 of 390)" in checks.one_class(metrics)

    metrics = clean_metrics()
    metrics["baseline"]["folds"] = [{"macro_f1": 0.9 + 0.01 * k} for k in range(5)]
    assert "below the TF-IDF baseline" in checks.below_baseline(metrics)
    metrics["baseline"]["folds"] = [{"macro_f1": v} for v in (0.95, 0.70, 0.95, 0.70, 0.95)]  # below, but noisy
    assert checks.below_baseline(metrics) is None
    # ... unless the baseline is right on significantly more of the same rows.
    metrics["baseline"]["paired_test"] = {"mcnemar": {"only_a_correct": 13, "only_b_correct": 48, "p_value": 7.7e-6}}
    assert "more of the same comments right than the encoder (48 against 13" in checks.below_baseline(metrics)
    metrics["baseline"]["paired_test"]["mcnemar"] |= {"only_a_correct": 48, "only_b_correct": 13}  # the encoder's
    assert checks.below_baseline(metrics) is None

    metrics = clean_metrics()
    for fold in metrics["folds"][:3]:
        fold["history"] = [{"val_macro_f1": 0.5}, {"val_macro_f1": 0.6}, {"val_macro_f1": 0.7}]
    assert "3 of 5 folds" in checks.still_rising(metrics)

    metrics = clean_metrics()
    for fold, value in zip(metrics["folds"], (0.6, 0.9, 0.7, 0.85, 0.65)):
        fold["test"]["macro_f1"] = value
    assert "standard deviation 0.129 (from 0.600 to 0.900)" in checks.large_spread(metrics)

    metrics = clean_metrics()
    metrics["data"]["truncated"] = 60
    assert "60 of 500 texts (12%)" in checks.many_truncated(metrics)

    metrics = clean_metrics()
    metrics["calibration"]["temperature"] = 2.4
    assert "2.40" in checks.temperature_far_from_one(metrics) and "over-confident" in checks.temperature_far_from_one(
        metrics
    )
    flagged = "\n".join(checks.checks_section(metrics))
    assert "## Checks" in flagged and "**Warning.**" in flagged


def test_training_report_has_the_baseline_test_and_the_checks(tiny_run_dir):
    """A real (tiny) training run: metrics.json keeps the encoder-vs-baseline paired test, report.md shows it and
    the Checks section."""
    metrics = json.loads((tiny_run_dir / "metrics.json").read_text())
    paired = metrics["baseline"]["paired_test"]
    oof = pd.read_parquet(tiny_run_dir / "oof_predictions.parquet")
    encoder_right, baseline_right = oof["predicted"] == oof["gold"], oof["baseline_predicted"] == oof["gold"]
    assert paired["mcnemar"]["only_a_correct"] == int((encoder_right & ~baseline_right).sum())
    assert paired["mcnemar"]["only_b_correct"] == int((~encoder_right & baseline_right).sum())
    differences = [
        f["test"]["macro_f1"] - b["macro_f1"] for f, b in zip(metrics["folds"], metrics["baseline"]["folds"])
    ]
    assert paired["metrics"]["macro_f1"]["mean_difference"] == pytest.approx(np.mean(differences))
    report = (tiny_run_dir / "report.md").read_text()
    assert "corrected resampled t-test" in report and "McNemar's exact test" in report
    assert "## Checks" in report
    for message in checks.run_checks(metrics):
        assert message in report


def test_a_run_of_an_older_format_is_refused(tmp_path, capsys):
    gold = np.arange(400) % 4
    run_a = write_fake_run(tmp_path / "a", gold=gold, predicted=noisy_predictions(gold, 0.1, 0))
    old = write_fake_run(tmp_path / "b", gold=gold, predicted=noisy_predictions(gold, 0.3, 1), row_column="row")
    status, _, err = run_job("compare_runs.py", [str(run_a), str(old), "--output_dir", str(tmp_path / "c")], capsys)
    assert status == 2 and "older version" in err and "Traceback" not in err
