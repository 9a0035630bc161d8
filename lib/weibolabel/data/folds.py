"""Stratified, grouped, seeded folds: copies of one comment never sit on both sides of a split."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from weibolabel.util.errors import UserError


def make_folds(
    labels: np.ndarray, groups: list[str], num_folds: int, seed: int, names: Sequence[str] | None = None
) -> np.ndarray:
    """The test fold (0..num_folds-1) of every row. `names`: the label schema's names by id, for the messages (a
    class of the schema with no rows is named there too); without them classes are named by id."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_folds < 2:
        raise UserError("--num_folds must be at least 2.")
    names = list(names) if names is not None else list(range(labels.max(initial=-1) + 1))
    counts = np.bincount(labels, minlength=len(names))
    present = {names[i]: int(n) for i, n in enumerate(counts) if n}
    if len(present) < 2:
        # One class trains a model that always says it, and scores it accuracy 1.0: a wrong number, not a result.
        raise UserError(
            f"Only one class has rows ({present}): cross-validation needs examples of at least two of {names}. "
            "Check that --label_column is the label column, or label examples of the other classes."
        )
    if counts[counts > 0].min() < num_folds:
        rare = {names[i]: int(n) for i, n in enumerate(counts) if n < num_folds}
        raise UserError(
            f"Too few examples for {num_folds}-fold cross-validation: class(es) {rare} have fewer rows than folds. "
            "Label more examples of these classes or lower --num_folds."
        )
    fold_of_row = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, test_index) in enumerate(_stratified_group_splits(labels, groups, num_folds, seed)):
        fold_of_row[test_index] = fold
    return fold_of_row


def _stratified_group_splits(labels: np.ndarray, groups: list[str], num_splits: int, seed: int):
    """StratifiedGroupKFold(shuffle=True)'s splits as scikit-learn 1.8+ makes them, on every version (before 1.8 its
    shuffle left folds far from stratified): groups numbered in 1.8's shuffled order, the splitter unshuffled."""
    _, group_of_row = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    order = np.arange(group_of_row.max() + 1)
    np.random.RandomState(seed).shuffle(order)  # the draw scikit-learn's check_random_state(seed) makes
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    splitter = StratifiedGroupKFold(n_splits=num_splits, shuffle=False)
    return splitter.split(np.zeros(len(labels)), labels, position[group_of_row])


def split_validation(
    train_index: np.ndarray, labels: np.ndarray, groups: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified, grouped validation part out of a fold's training rows for best-epoch selection."""
    if not 0 < fraction < 0.5:
        raise UserError("--validation_fraction must be between 0 and 0.5.")
    train_index = np.asarray(train_index)
    part_labels = np.asarray(labels)[train_index]
    part_groups = [groups[i] for i in train_index]
    # The first of round(1/fraction) stratified splits, as before wherever scikit-learn can make them. A small part
    # (a few dozen rows in a few folds, a learning curve's small share) has fewer rows in every class than that, and
    # fewer distinct texts perhaps: then as many splits as it can hold, so a larger share than `fraction`.
    largest_class = int(np.bincount(part_labels).max(initial=0))
    num_splits = min(max(2, round(1 / fraction)), largest_class, len(set(part_groups)))
    if num_splits < 2:
        raise UserError(
            f"A fold's training part has {len(train_index)} row(s) with {len(set(part_groups))} distinct text(s): "
            "too few to carve a validation part from. Label more examples, or use fewer folds (jobs/train.py "
            "--num_folds)."
        )
    with warnings.catch_warnings():
        # A class with fewer rows than splits is simply missing from some splits: scikit-learn's warning about it
        # names its own n_splits, which no option of ours sets.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        fit, validation = next(_stratified_group_splits(part_labels, part_groups, num_splits, seed))
    return train_index[fit], train_index[validation]
