"""Do the share intervals cover the truth? A simulation on corpora whose class mix differs from the labeled data.

    python bench/coverage.py                       # the full run recorded in docs/statistics.md (a few minutes)
    python bench/coverage.py --corpora 40 --replicates 100 --corpus_size 2000   # what the test suite runs
    python bench/coverage.py --quick               # 5 corpora, 50 replicates: a smoke test (seconds)

A known classifier (class-conditional logits: each class has its own mean logit vector, with asymmetric confusions,
plus Gaussian noise) scores a labeled set drawn with the training class mix (its out-of-fold predictions) and a
corpus drawn with a shifted mix. For each simulated corpus the true share of each class is the corpus' own share;
the script counts how often each method's 95% interval contains it, and the mean interval width:

- naive: predicted-label share with a Wilson interval (what analyze_labels reported before),
- acc / pacc: misclassification-adjusted shares with the bootstrap interval (weibolabel.stats.shares.adjusted_shares),
- ppi: prediction-powered shares from a uniform gold sample of the corpus (weibolabel.stats.shares.ppi_shares),
- gold: the gold sample alone, Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from weibolabel.review.analysis import wilson_interval
from weibolabel.stats.calibration import softmax
from weibolabel.stats.shares import adjusted_shares, ppi_shares

TRAIN_MIX = (0.30, 0.25, 0.25, 0.20)  # the shipped sample's labeled class mix
CORPUS_MIX = (0.15, 0.45, 0.10, 0.30)  # heritage-heavy, culture-poor: a different show's comments
# Mean logits per gold class (rows): culture is often taken for heritage, irrelevant pulls in a little of everything.
MEAN_LOGITS = np.array(
    [
        [2.6, 0.2, 0.4, 0.6],
        [0.2, 2.6, 0.8, 0.3],
        [0.3, 1.6, 2.4, 0.3],
        [0.5, 0.3, 0.3, 2.4],
    ]
)
NOISE = 1.0
METHOD_NAMES = ("naive", "acc", "pacc", "ppi", "gold")


def draw(num_rows: int, mix, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels with the given class mix and the classifier's probabilities for them."""
    gold = rng.choice(len(mix), size=num_rows, p=mix)
    logits = MEAN_LOGITS[gold] + rng.normal(0, NOISE, size=(num_rows, len(mix)))
    return gold, softmax(logits)


def one_corpus(
    *, rng: np.random.Generator, labeled_size: int, corpus_size: int, gold_size: int, replicates: int, seed: int
) -> dict[str, np.ndarray]:
    """Per method: (covered [classes], width [classes]) on one simulated corpus."""
    oof_gold, oof_probs = draw(labeled_size, TRAIN_MIX, rng)
    corpus_gold, corpus_probs = draw(corpus_size, CORPUS_MIX, rng)
    num_classes = len(TRAIN_MIX)
    truth = np.bincount(corpus_gold, minlength=num_classes) / corpus_size
    predicted = corpus_probs.argmax(axis=1)
    intervals = {}
    counts = np.bincount(predicted, minlength=num_classes)
    intervals["naive"] = wilson_interval(counts, corpus_size)
    adjusted = adjusted_shares(
        corpus_predicted=predicted,
        corpus_probs=corpus_probs,
        oof_gold=oof_gold,
        oof_predicted=oof_probs.argmax(axis=1),
        oof_probs=oof_probs,
        groups=[np.arange(corpus_size)],
        replicates=replicates,
        seed=seed,
    )
    for method in ("acc", "pacc"):
        intervals[method] = (adjusted[f"{method}_low"][0], adjusted[f"{method}_high"][0])
    sample = rng.choice(corpus_size, size=gold_size, replace=False)
    rest = np.setdiff1d(np.arange(corpus_size), sample)
    ppi = ppi_shares(gold=corpus_gold[sample], gold_probs=corpus_probs[sample], unlabeled_probs=corpus_probs[rest])
    intervals["ppi"] = (ppi["ppi_low"].to_numpy(), ppi["ppi_high"].to_numpy())
    intervals["gold"] = (ppi["gold_low"].to_numpy(), ppi["gold_high"].to_numpy())
    return {m: ((low <= truth) & (truth <= high), high - low) for m, (low, high) in intervals.items()}


def simulate(
    *,
    corpora: int = 300,
    labeled_size: int = 460,
    corpus_size: int = 10000,
    gold_size: int = 300,
    replicates: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per method: coverage of the 95% intervals (over corpora and classes), per class, and mean width."""
    rng = np.random.default_rng(seed)
    covered = {m: [] for m in METHOD_NAMES}
    widths = {m: [] for m in METHOD_NAMES}
    for index in range(corpora):
        result = one_corpus(
            rng=rng,
            labeled_size=labeled_size,
            corpus_size=corpus_size,
            gold_size=gold_size,
            replicates=replicates,
            seed=seed * 100003 + index,
        )
        for method, (hit, width) in result.items():
            covered[method].append(hit)
            widths[method].append(width)
    rows = []
    for method in METHOD_NAMES:
        hits = np.array(covered[method])
        rows.append(
            {
                "method": method,
                "coverage": float(hits.mean()),
                **{f"coverage_class_{c}": float(hits[:, c].mean()) for c in range(hits.shape[1])},
                "mean_width": float(np.mean(widths[method])),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=int, default=300, help="Simulated corpora.")
    parser.add_argument("--labeled_size", type=int, default=460, help="Labeled rows (out-of-fold predictions).")
    parser.add_argument("--corpus_size", type=int, default=10000, help="Rows per simulated corpus.")
    parser.add_argument("--gold_size", type=int, default=300, help="Gold rows drawn uniformly from each corpus.")
    parser.add_argument("--replicates", type=int, default=500, help="Bootstrap replicates per corpus.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="Print the table as JSON instead of Markdown.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 5 corpora of 1,000 rows, 50 replicates.")
    args = parser.parse_args(argv)
    if args.quick:
        args.corpora, args.corpus_size, args.replicates, args.gold_size = 5, 1000, 50, 100
    table = simulate(
        corpora=args.corpora,
        labeled_size=args.labeled_size,
        corpus_size=args.corpus_size,
        gold_size=args.gold_size,
        replicates=args.replicates,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(table.to_dict("records"), indent=1))
    else:
        print(f"training mix {TRAIN_MIX}, corpus mix {CORPUS_MIX}, {vars(args)}")
        print(table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
