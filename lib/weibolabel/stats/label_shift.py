"""Does the label-shift assumption behind ACC/PACC hold? The model's mean probabilities per true class on a random
gold sample of the corpus against the out-of-fold ones (docs/statistics.md).

Probabilities, not labels: the corpus is scored by the fold ensemble, whose mean probabilities equal the fold
models' mean while its labels are more accurate than any one fold model's. A permutation test (the rows' origin
shuffled within each true class), so its size holds at any count.
"""

from __future__ import annotations

import numpy as np

PERMUTATION_CHUNK = 256  # permutations drawn at once: bounds memory on large out-of-fold sets


def label_shift_check(
    *,
    oof_gold: np.ndarray,
    oof_probs: np.ndarray,
    gold: np.ndarray,
    gold_probs: np.ndarray,
    permutations: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Permutation test that the gold rows' per-class mean probabilities equal the out-of-fold ones: statistic (the
    summed squared two-sample z, pooled variance), p_value, verdict, and per true class its rows, rates and p."""
    oof_gold, gold = np.asarray(oof_gold, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    oof_probs, gold_probs = np.asarray(oof_probs, np.float64), np.asarray(gold_probs, np.float64)
    num_classes = oof_probs.shape[1]
    rng = np.random.default_rng(seed)
    per_class, observed, null = [], [], []
    for j in range(num_classes):
        in_gold, in_oof = gold_probs[gold == j], oof_probs[oof_gold == j]
        entry = {"class": j, "gold_rows": len(in_gold), "oof_rows": len(in_oof)}
        if len(in_gold) and len(in_oof):
            entry["gold_rate"] = float(in_gold[:, j].mean())
            entry["oof_rate"] = float(in_oof[:, j].mean())
            statistic, draws = _class_statistic(in_gold, in_oof, permutations, rng)
            entry["statistic"] = statistic
            entry["p_value"] = _p_value(statistic, draws)
            observed.append(statistic)
            null.append(draws)
        per_class.append(entry)
    result = {"permutations": permutations, "alpha": alpha, "gold_rows": len(gold), "oof_rows": len(oof_gold)}
    if not observed:
        return {**result, "statistic": None, "p_value": None, "verdict": "not tested", "per_class": per_class}
    statistic = float(np.sum(observed))
    p_value = _p_value(statistic, np.sum(null, axis=0))
    verdict = "violated" if p_value < alpha else "consistent"
    return {**result, "statistic": statistic, "p_value": p_value, "verdict": verdict, "per_class": per_class}


def _class_statistic(
    in_gold: np.ndarray, in_oof: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """One true class: the observed statistic and its `permutations` draws with the rows' origin shuffled."""
    rows = np.concatenate([in_gold, in_oof])
    n_gold, n_all = len(in_gold), len(rows)
    n_oof = n_all - n_gold
    variance = rows.var(axis=0, ddof=1) if n_all > 1 else np.zeros(rows.shape[1])
    keep = variance > 1e-12  # a column constant over the class (e.g. one-hot scores all alike) carries no test
    scale = variance[keep] * (1 / n_gold + 1 / n_oof)
    total = rows[:, keep].sum(axis=0)

    def statistic(gold_sums: np.ndarray) -> np.ndarray:
        difference = gold_sums / n_gold - (total - gold_sums) / n_oof
        return (difference**2 / scale).sum(axis=-1)

    observed = float(statistic(in_gold[:, keep].sum(axis=0)))
    draws = np.empty(permutations)
    for start in range(0, permutations, PERMUTATION_CHUNK):
        size = min(PERMUTATION_CHUNK, permutations - start)
        # The first n_gold of a random order of the class' rows: argpartition is linear, a full sort is not.
        chosen = np.argpartition(rng.random((size, n_all)), n_gold - 1, axis=1)[:, :n_gold]
        draws[start : start + size] = statistic(rows[:, keep][chosen].sum(axis=1))
    return observed, draws


def _p_value(statistic: float, draws: np.ndarray) -> float:
    """Monte Carlo permutation p-value, counting the observed arrangement as one draw (never 0; exact size)."""
    return float((1 + np.sum(draws >= statistic - 1e-12)) / (1 + len(draws)))
