"""The headline share's intervals where they are used: small gold samples of rare classes, gold samples that are a
large part of their group, groups labeled in full, differences between groups, and the gold rows a width needs."""

from __future__ import annotations

import numpy as np
import pytest

from weibolabel.stats.shares import (
    adjusted_shares,
    difference_interval,
    gold_rows_needed,
    headline_share,
    ppi_finite_share,
    ppi_mean,
    wilson_finite_share,
    wilson_interval,
)


def scored_group(size: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 0/1 class indicator and an imperfect, miscalibrated model score of it."""
    truth = (rng.random(size) < share).astype(float)
    return truth, np.clip(0.55 * truth + 0.08 + rng.normal(0, 0.12, size), 0, 1)


def coverage(size: int, gold_rows: int, share: float, replicates: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    hits = {"headline": 0, "ppi_normal": 0}
    for _ in range(replicates):
        truth, score = scored_group(size, share, rng)
        chosen = rng.choice(size, gold_rows, replace=False)
        rest = np.setdiff1d(np.arange(size), chosen)
        target = truth.mean()
        result = headline_share(truth[chosen], score[chosen], score[rest])
        hits["headline"] += result["low"] <= target <= result["high"]
        _, low, high = ppi_mean(truth[chosen], score[chosen], score[rest])
        hits["ppi_normal"] += low <= target <= high
    return {k: v / replicates for k, v in hits.items()}


@pytest.mark.parametrize(("gold_rows", "share"), [(30, 0.03), (100, 0.02)])
def test_rare_class_in_a_small_gold_sample_is_covered(gold_rows, share):
    """Where PPI's normal interval covers 60-85% (issue 28), the headline's covers about 95%."""
    result = coverage(3000, gold_rows, share, replicates=400, seed=gold_rows)
    assert result["ppi_normal"] < 0.88
    assert result["headline"] >= 0.92


def test_gold_sample_most_of_its_group_gets_the_finite_population_interval():
    rng = np.random.default_rng(0)
    truth, score = scored_group(150, 0.3, rng)
    chosen = rng.choice(150, 120, replace=False)
    rest = np.setdiff1d(np.arange(150), chosen)
    _, low, high = ppi_finite_share(truth[chosen], score[chosen], score[rest])
    _, infinite_low, infinite_high = ppi_mean(truth[chosen], score[chosen], score[rest])
    assert high - low < 0.6 * (infinite_high - infinite_low)
    assert low <= truth.mean() <= high
    # What the gold rows fix bounds it: 120 of 150 rows are known.
    assert low >= truth[chosen].sum() / 150 and high <= 1 - (120 - truth[chosen].sum()) / 150


def test_a_group_labeled_in_full_has_its_exact_share():
    truth = np.array([1.0, 0, 0, 1, 0, 0, 0, 1, 0, 0] * 5)
    result = headline_share(truth, np.full(50, 0.3), np.array([]))
    assert result == {"share": 0.3, "low": 0.3, "high": 0.3, "method": "exact"}
    assert wilson_finite_share(15, 50, 50) == (0.3, 0.3, 0.3)


def test_wilson_fallback_for_few_rows_of_the_class_ppi_otherwise():
    rng = np.random.default_rng(1)
    truth, score = scored_group(5000, 0.3, rng)
    truth[:100] = 0
    truth[:4] = 1  # 4 of 100 gold rows in the class
    result = headline_share(truth[:100], score[:100], score[100:])
    assert result["method"] == "gold_wilson" and result["share"] == 0.04
    low, high = wilson_interval(np.array([4.0 * 4999 / 4900]), 100 * 4999 / 4900)
    assert (result["low"], result["high"]) == pytest.approx((low[0], high[0]))
    assert headline_share(truth[:300], score[:300], score[300:])["method"] == "ppi"


def test_difference_interval_is_newcombes_with_wilson_intervals():
    from statsmodels.stats.proportion import confint_proportions_2indep

    low_a, high_a = wilson_interval(np.array([28.0]), 100)
    low_b, high_b = wilson_interval(np.array([19.0]), 120)
    difference, low, high = difference_interval(0.28, low_a[0], high_a[0], 19 / 120, low_b[0], high_b[0])
    library = confint_proportions_2indep(28, 100, 19, 120, method="newcomb", compare="diff")
    assert difference == pytest.approx(0.28 - 19 / 120)
    assert (low, high) == pytest.approx(tuple(float(v) for v in library), abs=1e-9)


def test_group_difference_carries_the_shared_confusion_estimate():
    """Two groups alike: the error of the confusion matrix moves both shares together, so the difference's
    interval from shared bootstrap draws is much narrower than one combining the two intervals as independent."""
    rng = np.random.default_rng(2)
    mix = [0.3, 0.3, 0.4]

    def rows(size):
        gold = rng.choice(3, size=size, p=mix)
        logits = rng.normal(0, 1, (size, 3))
        logits[np.arange(size), gold] += 1.5
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return gold, probs

    oof_gold, oof_probs = rows(300)
    _, corpus_probs = rows(40000)
    result = adjusted_shares(
        corpus_predicted=corpus_probs.argmax(axis=1),
        corpus_probs=corpus_probs,
        oof_gold=oof_gold,
        oof_predicted=oof_probs.argmax(axis=1),
        oof_probs=oof_probs,
        groups=[np.arange(20000), np.arange(20000, 40000)],
        replicates=200,
        pairs=[(0, 1)],
    )
    assert result["pacc_difference"][0] == pytest.approx(result["pacc"][0] - result["pacc"][1])
    for c in range(3):
        _, low, high = difference_interval(
            *(result[k][g, c] for g in (0, 1) for k in ("pacc", "pacc_low", "pacc_high"))
        )
        shared_width = result["pacc_difference_high"][0, c] - result["pacc_difference_low"][0, c]
        assert result["pacc_difference_low"][0, c] <= result["pacc_difference"][0, c]
        assert result["pacc_difference"][0, c] <= result["pacc_difference_high"][0, c]
        assert shared_width < 0.5 * (high - low)


def test_gold_rows_needed_gives_the_width_it_promises():
    rng = np.random.default_rng(3)
    oof_gold = rng.choice(2, size=2000, p=[0.6, 0.4])
    truth, score = scored_group(200000, 0.3, rng)
    oof_score = np.clip(0.55 * (oof_gold == 1) + 0.08 + rng.normal(0, 0.12, 2000), 0, 1)
    oof_probs = np.column_stack([1 - oof_score, oof_score])
    needed = gold_rows_needed(oof_gold=oof_gold, oof_probs=oof_probs, shares=np.array([0.7, 0.3]), width=0.04)
    assert needed[0] == needed[1] < 0.5 * np.ceil((2 * 1.96) ** 2 * 0.21 / 0.04**2)  # the model helps
    widths = []
    for _ in range(30):
        chosen = rng.choice(len(truth), needed[1], replace=False)
        rest = np.ones(len(truth), dtype=bool)
        rest[chosen] = False
        _, low, high = ppi_finite_share(truth[chosen], score[chosen], score[rest])
        widths.append(high - low)
    assert np.mean(widths) == pytest.approx(0.04, rel=0.15)
    useless = gold_rows_needed(
        oof_gold=oof_gold, oof_probs=np.full((2000, 2), 0.5), shares=np.array([0.7, 0.3]), width=0.04
    )
    assert useless[1] == np.ceil((2 * 1.959963984540054) ** 2 * 0.21 / 0.04**2)
