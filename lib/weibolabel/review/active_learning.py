"""A replay of the annotation loop on already-labeled data: does uncertainty selection beat random selection?

The selection is `weibolabel.review.annotation`'s own, so the simulation measures what jobs/select_for_annotation.py
does; the learner is the TF-IDF baseline, as the encoder is far too slow to retrain every round on CPU.
scikit-learn is imported inside the functions that fit: the job checks its options first (the import takes seconds).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from weibolabel.data.labeled import clean_text, group_key
from weibolabel.review.annotation import fold_disagreement, select_for_annotation, uncertainty
from weibolabel.util.errors import UserError

STRATEGIES = ("random", "margin", "entropy", "disagreement")


def seed_set(train_index: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` rows of `train_index`, stratified by label, seeded."""
    from sklearn.model_selection import train_test_split

    if size >= len(train_index):
        return np.sort(train_index)
    classes = len(np.unique(labels[train_index]))
    if size < classes:
        raise UserError(f"--seed_size {size} is smaller than the {classes} classes; each needs a place.")
    try:
        chosen, _ = train_test_split(train_index, train_size=size, stratify=labels[train_index], random_state=seed)
    except ValueError as error:  # a class with a single row cannot be stratified
        raise UserError(f"Cannot draw a stratified seed set of {size} rows: {error}") from None
    return np.sort(chosen)


def _learner_probs(texts: list[str], labels: np.ndarray, fit: np.ndarray, score: np.ndarray, num_labels: int):
    """The baseline learner's probabilities for the rows `score`, trained on the rows `fit`."""
    from weibolabel.training.baseline import tfidf_logreg_probs

    return tfidf_logreg_probs([texts[i] for i in fit], labels[fit], [texts[i] for i in score], num_labels, False)


def _committee_probs(
    texts: list[str], labels: np.ndarray, labeled: np.ndarray, pool: np.ndarray, num_labels: int, size: int, seed: int
) -> np.ndarray:
    """[size, pool, classes]: the learner trained on each k-fold training part of the labeled rows, as a run's fold
    models are, so `fold_disagreement` measures the same thing as in the annotation loop."""
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=min(size, len(labeled)), shuffle=True, random_state=seed)
    members = []
    for part, _ in splitter.split(labeled):
        fit = labeled[part]
        if len(np.unique(labels[fit])) == 1:  # logistic regression needs two classes; one class is a sure guess
            members.append(np.eye(num_labels)[np.full(len(pool), labels[fit][0])])
            continue
        members.append(_learner_probs(texts, labels, fit, pool, num_labels))
    return np.stack(members).astype(np.float64)


def choose_batch(
    strategy: str,
    *,
    texts: list[str],
    labels: np.ndarray,
    labeled: np.ndarray,
    pool: np.ndarray,
    pool_probs: np.ndarray,
    batch_size: int,
    class_quota: float,
    committee_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The pool rows the strategy reveals next (all that is left when fewer than a batch remain)."""
    if len(pool) <= batch_size:
        return pool
    if strategy == "random":
        return rng.choice(pool, size=batch_size, replace=False)
    if strategy == "disagreement":
        seed = int(rng.integers(1 << 31))
        committee = _committee_probs(texts, labels, labeled, pool, pool_probs.shape[1], committee_size, seed)
        scores = fold_disagreement(committee)
    else:
        scores = uncertainty(pool_probs, strategy)
    predicted = pool_probs.argmax(axis=1)
    frame = pd.DataFrame(
        {"row_id": pool, "text": [texts[i] for i in pool], "label": predicted, "confidence": pool_probs.max(axis=1)}
    )
    groups = frame["text"].map(lambda text: group_key(clean_text(text))).nunique()
    k = min(batch_size, groups)
    if k < len(np.unique(predicted)):  # too few distinct texts left for the class quota: the most uncertain ones
        return pool[np.argsort(-scores, kind="stable")[:batch_size]]
    return select_for_annotation(frame, scores, k, class_quota)["row_id"].to_numpy(dtype=np.int64)


def simulate_fold(
    *,
    strategy: str,
    texts: list[str],
    labels: np.ndarray,
    train_index: np.ndarray,
    test_index: np.ndarray,
    names: list[str],
    seed_size: int,
    batch_size: int,
    max_labels: int | None,
    class_quota: float,
    committee_size: int,
    seed: int,
) -> list[dict]:
    """One strategy on one fold from one seed set: a record per round (labels so far, test accuracy, macro-F1)."""
    from weibolabel.stats.metrics import classification_metrics

    if strategy not in STRATEGIES:
        raise UserError(f"Unknown strategy '{strategy}'; use some of {list(STRATEGIES)}.")
    rng = np.random.default_rng(seed)
    limit = len(train_index) if max_labels is None else min(max_labels, len(train_index))
    labeled = seed_set(train_index, labels, seed_size, seed)
    records = []
    for round_number in itertools.count():
        pool = np.setdiff1d(train_index, labeled)
        # One fit scores the test part and the pool: the learner never sees a pool row's label before it is chosen.
        probs = _learner_probs(texts, labels, labeled, np.concatenate([test_index, pool]), len(names))
        metrics = classification_metrics(labels[test_index], probs[: len(test_index)].argmax(axis=1), names)
        record = {"strategy": strategy, "seed": seed, "round": round_number, "num_labels": len(labeled)}
        records.append({**record, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
        if len(labeled) >= limit or len(pool) == 0:
            return records
        take = min(batch_size, limit - len(labeled))
        batch = choose_batch(
            strategy,
            texts=texts,
            labels=labels,
            labeled=labeled,
            pool=pool,
            pool_probs=probs[len(test_index) :],
            batch_size=take,
            class_quota=class_quota,
            committee_size=committee_size,
            rng=rng,
        )
        labeled = np.sort(np.concatenate([labeled, batch]))


def full_data_score(texts: list[str], labels: np.ndarray, fold_of_row: np.ndarray, names: list[str]) -> float:
    """Mean test macro-F1 over folds of the learner trained on each fold's whole training part."""
    from weibolabel.stats.metrics import classification_metrics

    scores = []
    for fold in np.unique(fold_of_row):
        train, test = np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)
        probs = _learner_probs(texts, labels, train, test, len(names))
        scores.append(classification_metrics(labels[test], probs.argmax(axis=1), names)["macro_f1"])
    return float(np.mean(scores))


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and round: the mean over folds for each seed, then mean, std and range over seeds."""
    per_seed = records.groupby(["strategy", "seed", "round"], as_index=False).agg(
        num_labels=("num_labels", "mean"), macro_f1=("macro_f1", "mean"), accuracy=("accuracy", "mean")
    )
    summary = per_seed.groupby(["strategy", "round"], as_index=False).agg(
        num_labels=("num_labels", "mean"),
        seeds=("seed", "count"),
        macro_f1_mean=("macro_f1", "mean"),
        macro_f1_std=("macro_f1", "std"),
        macro_f1_min=("macro_f1", "min"),
        macro_f1_max=("macro_f1", "max"),
        accuracy_mean=("accuracy", "mean"),
    )
    return summary.fillna({"macro_f1_std": 0.0})


def labels_needed(summary: pd.DataFrame, target: float) -> dict[str, float | None]:
    """Per strategy, the fewest labels (mean over folds) at which the mean macro-F1 reaches `target`, else None."""
    needed = {}
    for strategy in [s for s in STRATEGIES if s in set(summary["strategy"])]:
        part = summary[summary["strategy"] == strategy]
        reached = part[part["macro_f1_mean"] >= target].sort_values("round")
        needed[strategy] = float(reached["num_labels"].iloc[0]) if len(reached) else None
    return needed
