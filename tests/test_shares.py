"""The share estimators against the libraries they stand in for (the coverage study: tests/test_shares_study.py)."""

from __future__ import annotations

import numpy as np
import pytest

from weibolabel.stats.calibration import softmax
from weibolabel.stats.shares import adjust, adjusted_shares, conditional_rates, ppi_mean, ppi_shares, wilson_interval

TRAIN_MIX = (0.30, 0.25, 0.25, 0.20)  # the shipped sample's labeled class mix
CORPUS_MIX = (0.15, 0.45, 0.10, 0.30)  # heritage-heavy, culture-poor: a different show's comments
# Mean logits per gold class (rows): culture is often taken for heritage, irrelevant pulls in a little of everything.
MEAN_LOGITS = np.array([[2.6, 0.2, 0.4, 0.6], [0.2, 2.6, 0.8, 0.3], [0.3, 1.6, 2.4, 0.3], [0.5, 0.3, 0.3, 2.4]])


def draw(num_rows: int, mix, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels with the given class mix and a known classifier's probabilities for them."""
    gold = rng.choice(len(mix), size=num_rows, p=mix)
    return gold, softmax(MEAN_LOGITS[gold] + rng.normal(0, 1.0, size=(num_rows, len(mix))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppi_mean_matches_ppi_py(seed):
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    rng = np.random.default_rng(seed)
    gold = (rng.random(150) < 0.3).astype(float)
    predicted = np.clip(0.6 * gold + rng.uniform(0, 0.4, 150), 0, 1)
    unlabeled = rng.uniform(0, 1, 2000) ** (1 + seed)
    estimate, low, high = ppi_mean(gold, predicted, unlabeled)
    assert estimate == pytest.approx(float(ppi_mean_pointestimate(gold, predicted, unlabeled)[0]), rel=1e-9)
    library_low, library_high = ppi_mean_ci(gold, predicted, unlabeled, alpha=0.05)
    assert (low, high) == pytest.approx((float(library_low[0]), float(library_high[0])), rel=1e-9)


def test_ppi_mean_with_every_row_in_the_gold_sample_is_the_gold_mean():
    gold = np.array([1.0, 0.0, 1.0, 1.0])
    estimate, low, high = ppi_mean(gold, np.array([0.9, 0.2, 0.8, 0.4]), np.array([]))
    assert estimate == 0.75 and low < 0.75 < high


def test_adjust_matches_quapy_inside_and_outside_the_simplex():
    from quapy.method.aggregative import ACC

    rates = np.array([[0.8, 0.1, 0.2], [0.1, 0.8, 0.3], [0.1, 0.1, 0.5]])
    for observed in ([0.4, 0.35, 0.25], [0.7, 0.25, 0.05], [0.1, 0.1, 0.8]):
        observed = np.array(observed)
        expected = ACC.solve_adjustment(
            class_conditional_rates=rates, unadjusted_counts=observed, method="inversion", solver="minimize"
        )
        got = adjust(rates, observed)
        assert got == pytest.approx(np.asarray(expected), abs=1e-5)
        assert got.min() >= 0 and got.sum() == pytest.approx(1.0)


def test_conditional_rates_columns_are_per_gold_class():
    gold = np.array([0, 0, 0, 0, 1, 1])
    predicted = np.eye(2)[[0, 0, 0, 1, 1, 1]]
    assert conditional_rates(gold, predicted) == pytest.approx(np.array([[0.75, 0.0], [0.25, 1.0]]))


def test_adjusted_shares_undo_a_known_bias_that_the_naive_count_keeps():
    rng = np.random.default_rng(5)
    oof_gold, oof_probs = draw(2000, TRAIN_MIX, rng)
    corpus_gold, corpus_probs = draw(20000, CORPUS_MIX, rng)
    truth = np.bincount(corpus_gold, minlength=4) / len(corpus_gold)
    halves = [np.arange(10000), np.arange(10000, 20000)]
    result = adjusted_shares(
        corpus_predicted=corpus_probs.argmax(axis=1),
        corpus_probs=corpus_probs,
        oof_gold=oof_gold,
        oof_predicted=oof_probs.argmax(axis=1),
        oof_probs=oof_probs,
        groups=[np.arange(20000), *halves],
        replicates=100,
        seed=0,
    )
    naive_error = np.abs(result["naive"][0] - truth).max()
    assert naive_error > 0.02  # culture is taken for heritage: the count is off by 20,000 rows' noise many times
    for method in ("acc", "pacc"):
        assert np.abs(result[method][0] - truth).max() < min(0.012, naive_error / 2), method
        assert (result[f"{method}_low"] <= result[method] + 1e-12).all()
        assert (result[method] <= result[f"{method}_high"] + 1e-12).all()
        assert result[method].sum(axis=1) == pytest.approx(np.ones(3))
    # The confusion matrix's uncertainty is in the interval: wider than sampling noise of 20,000 rows alone.
    low, high = wilson_interval(np.round(result["naive"][0] * 20000), 20000)
    assert (result["pacc_high"][0] - result["pacc_low"][0] > 1.5 * (high - low)).all()


def test_adjusted_shares_need_every_class_labeled():
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        adjusted_shares(
            corpus_predicted=np.array([0, 1]),
            corpus_probs=np.eye(3)[[0, 1]],
            oof_gold=np.array([0, 1]),
            oof_predicted=np.array([0, 1]),
            oof_probs=np.eye(3)[[0, 1]],
            groups=[np.arange(2)],
            replicates=10,
        )


def test_ppi_shares_are_narrower_than_the_gold_sample_alone_with_a_good_model():
    rng = np.random.default_rng(0)
    gold, probs = draw(5000, CORPUS_MIX, rng)
    table = ppi_shares(gold=gold[:300], gold_probs=probs[:300], unlabeled_probs=probs[300:])
    assert ((table["ppi_high"] - table["ppi_low"]) < (table["gold_high"] - table["gold_low"])).all()
    assert table["gold_n"].eq(300).all() and table["ppi_share"].sum() == pytest.approx(1.0, abs=0.02)
