"""Stratified, grouped, seeded folds: copies of one comment never sit on both sides of a split."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from weibolabel.util.errors import UserError


def make_folds(labels: np.ndarray, groups: list[str], num_folds: int, seed: int) -> np.ndarray:
    """The test fold (0..num_folds-1) of every row."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if num_folds < 2:
        raise UserError("--num_folds must be at least 2.")
    if counts.min() < num_folds:
        rare = {int(c): int(n) for c, n in zip(classes, counts) if n < num_folds}
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
    fit, validation = next(_stratified_group_splits(part_labels, part_groups, max(2, round(1 / fraction)), seed))
    return train_index[fit], train_index[validation]
