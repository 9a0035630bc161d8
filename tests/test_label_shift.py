"""The label-shift check: its size holds, it finds what uncertainty selection does to the confusion rates, and its
p-value is the permutation test scipy computes."""

from __future__ import annotations

import numpy as np
import pytest

from weibolabel.stats.label_shift import label_shift_check


def draw(num_rows: int, mix, rng: np.random.Generator, hard: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a known class mix with a classifier's probabilities; a `hard` fraction of them the model is much less
    sure of (what the least-certain rows of the annotation loop are)."""
    gold = rng.choice(len(mix), size=num_rows, p=mix)
    logits = rng.normal(0, 1, (num_rows, len(mix)))
    logits[np.arange(num_rows), gold] += 2.0
    logits[:, 1] += 0.6 * (gold == 2)  # culture taken for heritage more than the reverse
    hard_rows = rng.random(num_rows) < hard
    logits[hard_rows, gold[hard_rows]] -= 1.5
    probs = np.exp(logits)
    return gold, probs / probs.sum(axis=1, keepdims=True)


TRAIN_MIX, CORPUS_MIX = (0.30, 0.25, 0.25, 0.20), (0.15, 0.45, 0.10, 0.30)


def test_size_holds_under_label_shift_alone():
    """The class mix differs, the confusion rates do not: at most about 5% of checks may say 'violated'."""
    rng = np.random.default_rng(1)
    p_values = []
    for replicate in range(200):
        oof_gold, oof_probs = draw(300, TRAIN_MIX, rng)
        gold, gold_probs = draw(60, CORPUS_MIX, rng)
        result = label_shift_check(
            oof_gold=oof_gold, oof_probs=oof_probs, gold=gold, gold_probs=gold_probs, permutations=200, seed=replicate
        )
        p_values.append(result["p_value"])
    p_values = np.array(p_values)
    assert 0.01 <= (p_values < 0.05).mean() <= 0.10
    assert 0.35 <= (p_values < 0.5).mean() <= 0.65  # uniform under the null, not just rarely small


def test_uncertainty_selected_training_rows_are_flagged():
    rng = np.random.default_rng(2)
    oof_gold, oof_probs = draw(600, TRAIN_MIX, rng, hard=0.5)
    gold, gold_probs = draw(300, CORPUS_MIX, rng)
    result = label_shift_check(oof_gold=oof_gold, oof_probs=oof_probs, gold=gold, gold_probs=gold_probs)
    assert result["verdict"] == "violated" and result["p_value"] < 0.01
    assert [c["gold_rows"] for c in result["per_class"]] == np.bincount(gold, minlength=4).tolist()
    for entry in result["per_class"]:  # hard cases: the out-of-fold rows look worse than the corpus
        assert entry["oof_rate"] < entry["gold_rate"]


def test_same_rates_are_consistent_and_no_gold_row_is_not_tested():
    rng = np.random.default_rng(3)
    oof_gold, oof_probs = draw(600, TRAIN_MIX, rng)
    gold, gold_probs = draw(300, CORPUS_MIX, rng)
    result = label_shift_check(oof_gold=oof_gold, oof_probs=oof_probs, gold=gold, gold_probs=gold_probs, seed=0)
    assert result["verdict"] == "consistent" and result["p_value"] > 0.05
    empty = label_shift_check(
        oof_gold=oof_gold, oof_probs=oof_probs, gold=np.array([], dtype=int), gold_probs=np.zeros((0, 4))
    )
    assert empty["verdict"] == "not tested" and empty["p_value"] is None


def test_one_class_p_value_is_scipys_permutation_test():
    """With two classes and one true class, the statistic is monotone in the difference of mean probabilities, so
    the p-value is scipy's two-sample permutation test of |mean difference|."""
    from scipy.stats import permutation_test

    rng = np.random.default_rng(4)
    oof = rng.beta(5, 2, 80)
    gold = rng.beta(4, 2, 25)
    result = label_shift_check(
        oof_gold=np.zeros(80, dtype=int),
        oof_probs=np.column_stack([oof, 1 - oof]),
        gold=np.zeros(25, dtype=int),
        gold_probs=np.column_stack([gold, 1 - gold]),
        permutations=20000,
    )
    library = permutation_test(
        (gold, oof),
        lambda a, b: abs(a.mean() - b.mean()),
        permutation_type="independent",
        n_resamples=20000,
        alternative="greater",
        random_state=0,
    )
    assert result["p_value"] == pytest.approx(library.pvalue, abs=0.01)
    assert result["per_class"][1] == {"class": 1, "gold_rows": 0, "oof_rows": 0}
