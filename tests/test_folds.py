"""make_folds / split_validation: complete, disjoint, stratified, seeded and grouped splits."""

from __future__ import annotations

import numpy as np
import pytest

from weibolabel.data.folds import make_folds, split_validation
from weibolabel.util.errors import UserError

NUM_FOLDS = 5


@pytest.fixture(scope="module")
def data():
    """300 rows in 4 unequal classes; every tenth group has three copies (near-duplicates share a group)."""
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=300, p=[0.4, 0.3, 0.2, 0.1])
    groups = [f"g{i}" for i in range(300)]
    for start in range(0, 290, 30):  # rows start..start+2 become copies of one comment with one label
        labels[start + 1 : start + 3] = labels[start]
        groups[start + 1] = groups[start + 2] = groups[start]
    return labels, groups


def test_every_row_in_exactly_one_test_fold(data):
    labels, groups = data
    fold = make_folds(labels, groups, NUM_FOLDS, seed=1)
    assert fold.shape == (300,)
    assert set(fold.tolist()) == set(range(NUM_FOLDS))
    test_sets = [set(np.flatnonzero(fold == k)) for k in range(NUM_FOLDS)]
    assert sum(len(s) for s in test_sets) == 300
    assert set().union(*test_sets) == set(range(300))
    for a in range(NUM_FOLDS):
        for b in range(a + 1, NUM_FOLDS):
            assert not test_sets[a] & test_sets[b]


def test_folds_are_stratified(data):
    labels, groups = data
    fold = make_folds(labels, groups, NUM_FOLDS, seed=1)
    overall = np.bincount(labels, minlength=4) / len(labels)
    for k in range(NUM_FOLDS):
        share = np.bincount(labels[fold == k], minlength=4) / (fold == k).sum()
        np.testing.assert_allclose(share, overall, atol=0.06)
        assert abs((fold == k).sum() - 300 / NUM_FOLDS) <= 6


def test_folds_are_reproducible_and_depend_on_the_seed(data):
    labels, groups = data
    first = make_folds(labels, groups, NUM_FOLDS, seed=1)
    np.testing.assert_array_equal(first, make_folds(labels, groups, NUM_FOLDS, seed=1))
    assert not np.array_equal(first, make_folds(labels, groups, NUM_FOLDS, seed=2))


def test_groups_never_straddle_folds(data):
    labels, groups = data
    for seed in (1, 2, 3):
        fold = make_folds(labels, groups, NUM_FOLDS, seed=seed)
        fold_of_group = {}
        for group, k in zip(groups, fold):
            assert fold_of_group.setdefault(group, k) == k, group


def test_validation_part_is_disjoint_grouped_and_stratified(data):
    labels, groups = data
    fold = make_folds(labels, groups, NUM_FOLDS, seed=1)
    for k in range(NUM_FOLDS):
        train = np.flatnonzero(fold != k)
        test = np.flatnonzero(fold == k)
        fit, validation = split_validation(train, labels, groups, 0.1, seed=1 + k)
        assert len(validation) > 0 and len(fit) > 0
        assert not set(fit) & set(validation)
        assert not set(validation) & set(test)
        assert not set(fit) & set(test)
        assert sorted([*fit, *validation]) == sorted(train)
        assert not {groups[i] for i in fit} & {groups[i] for i in validation}
        assert abs(len(validation) / len(train) - 0.1) < 0.03
        assert set(labels[validation]) == set(range(4))
        np.testing.assert_array_equal(validation, split_validation(train, labels, groups, 0.1, seed=1 + k)[1])


def test_too_few_rows_in_a_class_is_a_clear_error():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 3)
    groups = [str(i) for i in range(len(labels))]
    with pytest.raises(UserError) as error:
        make_folds(labels, groups, NUM_FOLDS, seed=0)
    message = str(error.value)
    assert "{2: 3}" in message
    assert "--num_folds" in message
    make_folds(labels, groups, 3, seed=0)  # three folds are fine


@pytest.mark.parametrize("num_folds", [0, 1])
def test_fewer_than_two_folds_is_refused(data, num_folds):
    labels, groups = data
    with pytest.raises(UserError, match="at least 2"):
        make_folds(labels, groups, num_folds, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.7])
def test_validation_fraction_out_of_range_is_refused(data, fraction):
    labels, groups = data
    with pytest.raises(UserError, match="validation_fraction"):
        split_validation(np.arange(100), labels, groups, fraction, seed=0)


def test_folds_are_scikit_learns_shuffled_folds_on_every_version(data):
    """The groups are shuffled by make_folds itself (StratifiedGroupKFold's own shuffle before scikit-learn 1.8 moved
    the class counts but not the groups): where 1.8+ is installed, the folds are exactly its shuffle=True folds."""
    sklearn = pytest.importorskip("sklearn")
    from sklearn.model_selection import StratifiedGroupKFold

    if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 8):
        pytest.skip(f"scikit-learn {sklearn.__version__}: its shuffle=True is the broken one")
    labels, groups = data
    for seed in (0, 1, 7):
        expected = np.full(len(labels), -1)
        splitter = StratifiedGroupKFold(n_splits=NUM_FOLDS, shuffle=True, random_state=seed)
        for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            expected[test_index] = fold
        np.testing.assert_array_equal(make_folds(labels, groups, NUM_FOLDS, seed=seed), expected)
