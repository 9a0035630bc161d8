"""Class shares a paper can defend, corrected for the classifier's errors (docs/statistics.md has the methods).

Counting predicted labels is biased whenever the classifier errs unevenly, and its interval covers sampling noise
only. ACC/PACC (Forman 2008; Bella et al. 2010) invert the out-of-fold confusion rates, valid under label shift;
PPI++ (Angelopoulos et al. 2023) uses a random gold sample of the corpus and needs no such assumption.
`headline_share` is the share to publish, `difference_interval` compares two groups' independent headlines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from weibolabel.stats.calibration import log_probs, softmax

Z_95 = 1.959963984540054


def wilson_interval(count: np.ndarray, total: int, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion: stays inside [0, 1] and behaves for small counts."""
    count = np.asarray(count, dtype=np.float64)
    if total == 0:
        return np.full(count.shape, np.nan), np.full(count.shape, np.nan)
    share = count / total
    denominator = 1 + z**2 / total
    centre = (share + z**2 / (2 * total)) / denominator
    half = z * np.sqrt(share * (1 - share) / total + z**2 / (4 * total**2)) / denominator
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # exact at the ends (rounding would leave 1e-18 above a share of 0)
    return np.where(count == 0, 0.0, low), np.where(count == total, 1.0, high)


METHODS = ("acc", "pacc")


# ------------------------------------------------------------------------------------------------- ACC / PACC
def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities recalibrated as the labeling job does: softmax(log-probabilities / T)."""
    return softmax(log_probs(probs), temperature)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes)[np.asarray(labels, dtype=np.int64)]


def conditional_rates(gold: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """M[i, j] = mean score of class i among rows of gold class j (quapy's orientation): with one-hot predictions the
    rate at which class j is predicted as i, with probabilities its soft form. Every class must occur in `gold`."""
    num_classes = scores.shape[1]
    sums = np.zeros((num_classes, num_classes))
    np.add.at(sums.T, np.asarray(gold, dtype=np.int64), scores)
    return sums / np.bincount(gold, minlength=num_classes)[None, :]


def adjust(rates: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The shares p on the simplex with rates @ p closest to the observed shares. An exact solution that is already a
    distribution is quapy's answer too; only otherwise is its (slow) constrained solver called."""
    try:
        exact = np.linalg.solve(rates, observed)
    except np.linalg.LinAlgError:
        exact = None
    if exact is not None and (exact >= 0).all():
        return exact / exact.sum()
    from quapy.method.aggregative import ACC  # imported here: it takes seconds, and most calls never need it

    solved = ACC.solve_adjustment(
        class_conditional_rates=rates, unadjusted_counts=observed, method="inversion", solver="minimize"
    )
    solved = np.clip(np.asarray(solved, dtype=np.float64), 0, None)
    return solved / solved.sum()


def stratified_resample(gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices drawn with replacement within each gold class: each class keeps its size, so no column of M
    goes empty in a replicate."""
    members = [np.flatnonzero(gold == c) for c in np.unique(gold)]
    return np.concatenate([rng.choice(rows, size=len(rows)) for rows in members])


def adjusted_shares(
    *,
    corpus_predicted: np.ndarray,
    corpus_probs: np.ndarray,
    oof_gold: np.ndarray,
    oof_predicted: np.ndarray,
    oof_probs: np.ndarray,
    groups: list[np.ndarray],
    replicates: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    pairs: list[tuple[int, int]] = (),
) -> dict[str, np.ndarray]:
    """Naive, ACC and PACC shares [groups, classes] with percentile-bootstrap intervals ({method}_low, _high), and
    per pair (a, b) of groups {method}_difference (a - b) with _difference_low, _high [pairs, classes].

    Each replicate resamples the out-of-fold rows once for all groups (one confusion matrix, as in the real data)
    and every group's rows on their own, so that matrix's error, common to both groups, moves their shares together."""
    num_classes = corpus_probs.shape[1]
    corpus_scores = {"acc": one_hot(corpus_predicted, num_classes), "pacc": np.asarray(corpus_probs, np.float64)}
    oof_scores = {"acc": one_hot(oof_predicted, num_classes), "pacc": np.asarray(oof_probs, np.float64)}
    oof_gold = np.asarray(oof_gold, dtype=np.int64)
    missing = sorted(set(range(num_classes)) - set(np.unique(oof_gold).tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no labeled row, so their error rates are unknown")

    result = {"naive": np.stack([corpus_scores["acc"][rows].mean(axis=0) for rows in groups])}
    for method in METHODS:
        rates = conditional_rates(oof_gold, oof_scores[method])
        result[method] = np.stack([adjust(rates, corpus_scores[method][rows].mean(axis=0)) for rows in groups])

    rng = np.random.default_rng(seed)
    draws = {method: np.empty((replicates, len(groups), num_classes)) for method in METHODS}
    for b in range(replicates):
        oof_rows = stratified_resample(oof_gold, rng)
        corpus_rows = [rng.choice(rows, size=len(rows)) for rows in groups]
        for method in METHODS:
            rates = conditional_rates(oof_gold[oof_rows], oof_scores[method][oof_rows])
            for g, rows in enumerate(corpus_rows):
                draws[method][b, g] = adjust(rates, corpus_scores[method][rows].mean(axis=0))
    first, second = (np.array([pair[i] for pair in pairs], dtype=np.int64) for i in (0, 1))
    for method in METHODS:
        result[f"{method}_low"] = np.quantile(draws[method], alpha / 2, axis=0)
        result[f"{method}_high"] = np.quantile(draws[method], 1 - alpha / 2, axis=0)
        differences = draws[method][:, first] - draws[method][:, second]
        result[f"{method}_difference"] = result[method][first] - result[method][second]
        result[f"{method}_difference_low"] = np.quantile(differences, alpha / 2, axis=0)
        result[f"{method}_difference_high"] = np.quantile(differences, 1 - alpha / 2, axis=0)
    return result


# ------------------------------------------------------------------------------------------------- PPI
def ppi_mean(
    gold: np.ndarray, predicted_gold: np.ndarray, predicted_unlabeled: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, float]:
    """PPI++ mean of `gold` (0/1 on the gold rows) with power tuning and its (1 - alpha) normal interval:
    (estimate, low, high). The same formulas as ppi_py.ppi_mean_ci (tested against it)."""
    y, yhat, yhat_u = (np.asarray(a, dtype=np.float64) for a in (gold, predicted_gold, predicted_unlabeled))
    n, big_n = len(y), len(yhat_u)
    if big_n == 0:  # every row is in the gold sample: the model adds nothing
        y_mean, half = y.mean(), _z(alpha) * y.std() / np.sqrt(n)
        return float(y_mean), float(y_mean - half), float(y_mean + half)
    first = yhat_u.mean() + (y - yhat).mean()  # lambda = 1, the centre of the tuning step
    covariance = np.mean((y - first - (y - first).mean()) * (yhat - first - (yhat - first).mean()))
    variance = np.var(np.concatenate([yhat, yhat_u]) - first, ddof=1)
    lam = float(np.clip(covariance / ((1 + n / big_n) * variance), 0, 1)) if variance > 0 else 0.0
    estimate = lam * yhat_u.mean() + (y - lam * yhat).mean()
    standard_error = np.sqrt(np.var(lam * yhat_u) / big_n + np.var(y - lam * yhat) / n)
    z = _z(alpha)
    return float(estimate), float(estimate - z * standard_error), float(estimate + z * standard_error)


def classical_interval(gold: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """The gold sample alone: its share and Wilson interval, the baseline PPI must beat."""
    gold = np.asarray(gold, dtype=np.float64)
    low, high = wilson_interval(np.array([gold.sum()]), len(gold), z=_z(alpha))
    return float(gold.mean()), float(low[0]), float(high[0])


def ppi_shares(
    *, gold: np.ndarray, gold_probs: np.ndarray, unlabeled_probs: np.ndarray, alpha: float = 0.05
) -> pd.DataFrame:
    """Per class: PPI++ share and interval (clipped to [0, 1]) and the gold-only share and Wilson interval."""
    num_classes = gold_probs.shape[1]
    truth = one_hot(gold, num_classes)
    rows = []
    for c in range(num_classes):
        estimate, low, high = ppi_mean(truth[:, c], gold_probs[:, c], unlabeled_probs[:, c], alpha)
        gold_only = classical_interval(truth[:, c], alpha)
        rows.append([float(np.clip(estimate, 0, 1)), max(low, 0.0), min(high, 1.0), len(gold), *gold_only])
    columns = ["ppi_share", "ppi_low", "ppi_high", "gold_n", "gold_share", "gold_low", "gold_high"]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------- the headline share
# The target is a group's own share: the model's mean over the group has no sampling error, only the gold rows'
# residuals do, with the finite-population correction of a simple random sample.
MIN_CLASS_ROWS = 10  # gold rows in and out of a class below which PPI's variance estimate is unreliable


def ppi_finite_share(
    gold: np.ndarray, predicted_gold: np.ndarray, predicted_rest: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Share of a 0/1 outcome in a finite group (n gold rows + the rest), the PPI++-tuned difference estimator, and
    its t interval (variance (1 - n/N) var(residual) / n) cut to what the gold rows already fix: (share, low, high)."""
    y, yhat, rest = (np.asarray(a, dtype=np.float64) for a in (gold, predicted_gold, predicted_rest))
    n, population = len(y), len(y) + len(rest)
    floor, ceiling = y.sum() / population, 1 - (n - y.sum()) / population
    if len(rest) == 0:  # labeled in full: the share itself
        return float(y.mean()), float(y.mean()), float(y.mean())
    every = np.concatenate([yhat, rest])
    variance = every.var()
    covariance = np.mean((y - y.mean()) * (yhat - yhat.mean()))
    lam = float(np.clip(covariance / variance, 0, 1)) if variance > 0 else 0.0
    estimate = lam * every.mean() + (y - lam * yhat).mean()
    residual_variance = np.var(y - lam * yhat, ddof=1) if n > 1 else np.inf
    standard_error = np.sqrt((1 - n / population) * residual_variance / n)
    from scipy.stats import t

    half = float(t.ppf(1 - alpha / 2, df=max(n - 1, 1))) * standard_error
    estimate = float(np.clip(estimate, floor, ceiling))
    return estimate, float(max(estimate - half, floor)), float(min(estimate + half, ceiling))


def wilson_finite_share(count: int, n: int, population: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """The gold rows alone: their share and Wilson interval with the finite-population correction (effective sample
    size n (N - 1) / (N - n)), cut to what the gold rows already fix; exact when n = N."""
    share = count / n
    if n >= population:
        return float(share), float(share), float(share)
    effective = n * (population - 1) / (population - n)
    low, high = wilson_interval(np.array([share * effective]), effective, z=_z(alpha))
    floor, ceiling = count / population, 1 - (n - count) / population
    return float(share), float(max(low[0], floor)), float(min(high[0], ceiling))


def headline_share(
    gold: np.ndarray,
    predicted_gold: np.ndarray,
    predicted_rest: np.ndarray,
    alpha: float = 0.05,
    min_class_rows: int = MIN_CLASS_ROWS,
) -> dict:
    """One class's published share in one group from its gold rows (`gold` 0/1): PPI with `min_class_rows` gold rows
    in and out of the class, else the gold rows' Wilson interval (whose coverage holds for a rare class where PPI's
    does not), 'exact' for a group labeled in full. Returns share, low, high, method."""
    y = np.asarray(gold, dtype=np.float64)
    count = int(y.sum())
    if len(predicted_rest) and min(count, len(y) - count) < min_class_rows:
        share, low, high = wilson_finite_share(count, len(y), len(y) + len(predicted_rest), alpha)
        return {"share": share, "low": low, "high": high, "method": "gold_wilson"}
    share, low, high = ppi_finite_share(y, predicted_gold, predicted_rest, alpha)  # the share itself if labeled in full
    return {"share": share, "low": low, "high": high, "method": "ppi" if len(predicted_rest) else "exact"}


def difference_interval(
    share_a: float, low_a: float, high_a: float, share_b: float, low_b: float, high_b: float
) -> tuple[float, float, float]:
    """a - b with an interval from two independent intervals (MOVER, Zou & Donner 2008; with Wilson intervals it is
    Newcombe's hybrid score interval): (difference, low, high)."""
    difference = share_a - share_b
    low = difference - np.sqrt((share_a - low_a) ** 2 + (high_b - share_b) ** 2)
    high = difference + np.sqrt((high_a - share_a) ** 2 + (share_b - low_b) ** 2)
    return float(difference), float(low), float(high)


def gold_rows_needed(
    *, oof_gold: np.ndarray, oof_probs: np.ndarray, shares: np.ndarray, width: float, alpha: float = 0.05
) -> np.ndarray:
    """Per class, the random gold rows a PPI interval of full `width` needs, n = (2 z sd / width)^2, with sd the
    residual's from the out-of-fold rows reweighted to the corpus' `shares` (or sqrt(p (1 - p)) where smaller)."""
    oof_gold = np.asarray(oof_gold, dtype=np.int64)
    num_classes = oof_probs.shape[1]
    needed = np.empty(num_classes)
    for c in range(num_classes):
        residual = (oof_gold == c) - oof_probs[:, c]
        first = np.array([residual[oof_gold == j].mean() for j in range(num_classes)])
        second = np.array([(residual[oof_gold == j] ** 2).mean() for j in range(num_classes)])
        ppi_variance = shares @ second - (shares @ first) ** 2
        variance = min(ppi_variance, shares[c] * (1 - shares[c]))
        needed[c] = np.ceil((2 * _z(alpha)) ** 2 * variance / width**2)
    return needed.astype(np.int64)


def _z(alpha: float) -> float:
    if alpha == 0.05:
        return Z_95
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))
