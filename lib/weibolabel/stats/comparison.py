"""Is model A better than model B on the same folds? Two paired tests.

- Per metric, the corrected resampled t-test (Nadeau & Bengio 2003) of the fold differences A - B: the folds'
  training sets overlap, so the plain paired t-test understates the variance.
- McNemar's exact test on the out-of-fold predictions: it says whether A beats B on this data set, not whether the
  training recipe would win on another sample.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from weibolabel.stats.metrics import HEADLINE
from weibolabel.util.errors import UserError
from weibolabel.util.markdown import markdown_table


def corrected_ttest(differences: list[float], test_fraction: float, alpha: float = 0.05) -> dict:
    """Nadeau-Bengio corrected resampled t-test of mean(differences) = 0, the variance scaled by (1/k + n_test/n_train)
    (`test_fraction`): mean, standard error, t, df, two-sided p and the (1 - alpha) interval."""
    d = np.asarray(differences, dtype=np.float64)
    k = len(d)
    mean = float(d.mean())
    variance = float(d.var(ddof=1)) if k > 1 else float("nan")
    standard_error = float(np.sqrt((1 / k + test_fraction) * variance))
    if standard_error > 0:
        t = mean / standard_error
        p = float(2 * stats.t.sf(abs(t), df=k - 1))
    else:  # identical differences in every fold: no spread to test against
        t, p = (float("inf") if mean else 0.0), (0.0 if mean else 1.0)
    half = float(stats.t.ppf(1 - alpha / 2, df=k - 1) * standard_error) if k > 1 else float("nan")
    return {
        "mean_difference": mean,
        "standard_error": standard_error,
        "t": float(t),
        "df": k - 1,
        "p_value": p,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test: rows only A gets right against rows only B gets right (binomial, p = 1/2)."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    p = float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p_value": p}


def compare_pair(
    *,
    folds_a: list[dict],
    folds_b: list[dict],
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    test_fraction: float,
    metrics: tuple[str, ...] = HEADLINE,
) -> dict:
    """Per metric the corrected t-test of A - B over the per-fold metric dicts, and McNemar's test on the rows."""
    return {
        "metrics": {
            m: {
                **corrected_ttest([a[m] - b[m] for a, b in zip(folds_a, folds_b)], test_fraction),
                "mean_a": float(np.mean([a[m] for a in folds_a])),
                "mean_b": float(np.mean([b[m] for b in folds_b])),
            }
            for m in metrics
        },
        "mcnemar": mcnemar(correct_a, correct_b),
    }


def test_fraction_of(folds: list[dict]) -> float:
    """Mean n_test / n_train over folds, n_train the rows the fold model was fitted on (`num_train`, without the
    validation split); records without it count every row outside the test fold."""
    total = sum(f["num_test"] for f in folds)
    return float(np.mean([f["num_test"] / f.get("num_train", total - f["num_test"]) for f in folds]))


# ------------------------------------------------------------------------------------------------- runs
def check_same_folds(a: dict, b: dict) -> None:
    """Paired tests need the very same rows in the very same folds; anything else is refused, naming the difference."""
    fa, fb = a["folds"], b["folds"]
    if len(fa) != len(fb):
        raise UserError(
            f"{a['path']} and {b['path']} used different data: {len(fa)} and {len(fb)} rows in folds.csv. Paired "
            "tests need both runs on the same rows and folds (same --data and --seed)."
        )
    common = [c for c in ("text", "fold") if c in fa.columns and c in fb.columns]
    differs = ~(fa[common].astype(str).to_numpy() == fb[common].astype(str).to_numpy()).all(axis=1)
    if differs.any():
        first = int(np.flatnonzero(differs)[0])
        raise UserError(
            f"{a['path']} and {b['path']} have different folds: {int(differs.sum())} of {len(fa)} rows of folds.csv "
            f"differ (first: line {first + 2}, fold {fa['fold'].iloc[first]} against {fb['fold'].iloc[first]}). "
            "Paired tests need both runs on the same rows and folds (same --data and --seed)."
        )
    if not np.array_equal(a["oof"]["gold"].to_numpy(), b["oof"]["gold"].to_numpy()):
        raise UserError(f"{a['path']} and {b['path']}: out-of-fold gold labels differ although folds.csv agrees.")


def compare_runs(runs: list[dict]) -> list[dict]:
    """One entry per pair of runs (A before B in the order given), each checked for identical folds first."""
    for other in runs[1:]:
        check_same_folds(runs[0], other)
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            gold = a["oof"]["gold"].to_numpy()
            result = compare_pair(
                folds_a=[f["test"] for f in a["metrics"]["folds"]],
                folds_b=[f["test"] for f in b["metrics"]["folds"]],
                correct_a=a["oof"]["predicted"].to_numpy() == gold,
                correct_b=b["oof"]["predicted"].to_numpy() == gold,
                test_fraction=test_fraction_of(a["metrics"]["folds"]),
            )
            pairs.append({"a": str(a["path"]), "b": str(b["path"]), **result})
    return pairs


def comparison_markdown(pairs: list[dict]) -> str:
    lines = [
        "# Paired comparison of runs on the same folds",
        "",
        "Difference = A - B, mean over folds; 95% CI and p from the corrected resampled t-test (Nadeau & Bengio "
        "2003), which accounts for the overlap of the folds' training sets. McNemar: exact test on the out-of-fold "
        "predictions, rows only A gets right against rows only B gets right. With several pairs, p-values are not "
        "corrected for multiple comparisons.",
        "",
    ]
    header = ["A", "B", "metric", "mean A", "mean B", "difference [95% CI]", "t", "p"]
    header += ["McNemar (only A / only B right)", "p"]
    rows = [
        [
            pair["a"],
            pair["b"],
            metric,
            f"{r['mean_a']:.3f}",
            f"{r['mean_b']:.3f}",
            f"{r['mean_difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
            f"{r['t']:.2f}",
            f"{r['p_value']:.3g}",
            f"{pair['mcnemar']['only_a_correct']} / {pair['mcnemar']['only_b_correct']}",
            f"{pair['mcnemar']['p_value']:.3g}",
        ]
        for pair in pairs
        for metric, r in pair["metrics"].items()
    ]
    return "\n".join([*lines, markdown_table(header, rows)]) + "\n"
