"""Reading and validating labeled tables: clear errors with file, spreadsheet row and column; empty texts and
duplicates dropped or merged and listed; the shipped sample validates to the documented counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from weibolabel.data.folds import make_folds, split_validation
from weibolabel.data.labeled import clean_text, load_labeled, parse_label
from weibolabel.data.labels import LabelSchema
from weibolabel.data.tables import read_table
from weibolabel.util.errors import UserError

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.jobs import run_job, train_args

SCHEMA = LabelSchema()


def write_xlsx(path: Path, texts: list, labels: list, text_column: str = "Sentence") -> Path:
    pd.DataFrame({text_column: texts, "Label": pd.Series(labels, dtype=object)}).to_excel(path, index=False)
    return path


# --------------------------------------------------------------------------------------------- files, columns
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.xlsx"
    with pytest.raises(UserError, match="File not found") as error:
        load_labeled(missing, SCHEMA)
    assert str(missing) in str(error.value)
    with pytest.raises(UserError, match="File not found"):
        read_table(missing)


def test_missing_column_names_file_and_suggests_the_closest(tmp_path):
    path = write_xlsx(tmp_path / "typo.xlsx", ["好看", "转发微博"], [0, 3], text_column="Sentense")
    with pytest.raises(UserError) as error:
        load_labeled(path, SCHEMA)
    message = str(error.value)
    assert str(path) in message
    assert "'Sentence'" in message
    assert "Did you mean 'Sentense'" in message
    assert "--text_column Sentense" in message


def test_read_table_keeps_text_cells_as_text(tmp_path):
    path = tmp_path / "t.xlsx"
    pd.DataFrame({"Sentence": ["好看", "123"], "Label": [0, 1]}).to_excel(path, index=False)
    frame = read_table(path)
    assert list(frame.columns) == ["Sentence", "Label"]
    assert frame["Sentence"].tolist() == ["好看", "123"]


# --------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (4, "outside the label schema"),
        ("1 ", "spaces around it"),
        (1.5, "not a whole number"),
        ("abc", "neither a label id"),
        (None, "missing label"),
        (float("nan"), "missing label"),
        (True, "not a label id"),
    ],
)
def test_parse_label_rejects(value, problem):
    label, why = parse_label(value, SCHEMA)
    assert label is None
    assert problem in why


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1), (1.0, 1), (np.int64(2), 2), (np.float64(3.0), 3), ("1", 1), ("heritage", 1)]
)
def test_parse_label_accepts(value, expected):
    assert parse_label(value, SCHEMA) == (expected, None)


def test_bad_labels_give_one_error_with_file_row_and_column(tmp_path):
    texts = ["好看", "节目真好", "文物真美", "文化自信", "转发微博", "早上好", "下一季快点播"]
    labels = [0, 4, "1 ", 1.5, "abc", None, 2]
    path = write_xlsx(tmp_path / "bad.xlsx", texts, labels)
    with pytest.raises(UserError) as error:
        load_labeled(path, SCHEMA)
    message = str(error.value)
    assert "5 invalid label(s)" in message
    # Header = row 1, so the first data row is row 2; the bad cells are rows 3..7.
    for row, problem in [(3, "4 is outside"), (4, "spaces around"), (5, "whole number"), (6, "'abc'"), (7, "missing")]:
        line = next(line for line in message.splitlines() if f", row {row}," in line)
        assert str(path) in line
        assert "column 'Label'" in line
        assert problem in line
    assert ", row 2," not in message and ", row 8," not in message


def test_float_string_and_name_labels_are_accepted(tmp_path):
    path = write_xlsx(tmp_path / "ok.xlsx", ["好看", "文物真美", "文化自信", "转发微博"], [1.0, "1", "culture", 3])
    data = load_labeled(path, SCHEMA)
    assert data.rows["label"].tolist() == [1, 1, 2, 3]
    assert data.rows["row"].tolist() == ["row 2", "row 3", "row 4", "row 5"]


# --------------------------------------------------------------------------------------------- texts, duplicates
def test_clean_text():
    assert clean_text("  好看\n\t的   节目 ") == "好看 的 节目"
    assert clean_text("a&amp;b") == "a&b"
    assert clean_text("好\u200b看\ufeff") == "好看"
    assert clean_text(None) == ""
    assert clean_text(float("nan")) == ""
    assert clean_text(pd.NA) == ""
    assert clean_text(123.0) == "123"


def test_empty_texts_are_dropped_and_listed(tmp_path):
    path = write_xlsx(tmp_path / "empty.xlsx", ["好看", None, "   ", "转发微博"], [0, 1, 2, 3])
    data = load_labeled(path, SCHEMA)
    assert data.rows["text"].tolist() == ["好看", "转发微博"]
    dropped = data.issues[data.issues["action"] == "dropped"]
    assert dropped["row"].tolist() == ["row 3", "row 4"]
    assert dropped["issue"].str.contains("empty text").all()
    assert (dropped["column"] == "Sentence").all()
    assert data.counts["empty_text_dropped"] == 2


def test_duplicates_after_whitespace_normalisation_are_merged(tmp_path):
    texts = ["好看 的节目", "转发微博", " 好看  的节目", "好看 的节目 "]
    path = write_xlsx(tmp_path / "dups.xlsx", texts, [0, 3, 0, 0])
    data = load_labeled(path, SCHEMA)
    assert data.rows["text"].tolist() == ["好看 的节目", "转发微博"]
    assert data.rows["row"].tolist() == ["row 2", "row 3"]  # the first copy is kept
    merged = data.issues[data.issues["action"] == "merged"]
    assert merged["row"].tolist() == ["row 4", "row 5"]
    assert merged["issue"].str.contains("duplicate of row 2").all()
    assert data.counts["duplicates_merged"] == 2


def test_conflicting_duplicates_are_dropped_and_listed(tmp_path):
    texts = ["转发微博", "好看", "转发微博", "文物真美"]
    path = write_xlsx(tmp_path / "conflict.xlsx", texts, [3, 0, 0, 1])
    data = load_labeled(path, SCHEMA)
    assert data.rows["text"].tolist() == ["好看", "文物真美"]
    dropped = data.issues[data.issues["action"] == "dropped"]
    assert dropped["row"].tolist() == ["row 2", "row 4"]
    assert dropped["issue"].str.contains("conflicting labels").all()
    assert (dropped["column"] == "Label").all()
    assert data.counts["conflicting_duplicates_dropped"] == 2


def test_conflicting_duplicates_can_be_an_error(tmp_path):
    path = write_xlsx(tmp_path / "conflict.xlsx", ["转发微博", "好看", "转发微博"], [3, 0, 0])
    with pytest.raises(UserError) as error:
        load_labeled(path, SCHEMA, on_conflict="error")
    message = str(error.value)
    assert "row 2" in message and "row 4" in message
    assert "irrelevant" in message and "production" in message
    assert "--on_conflict drop" in message


def test_counts_and_groups(tmp_path):
    texts = ["好看", "好看！", "好看", "", "文物真美", "转发微博", "转发微博", "文化自信"]
    path = write_xlsx(tmp_path / "counts.xlsx", texts, [0, 0, 0, 1, 1, 3, 2, 2])
    data = load_labeled(path, SCHEMA)
    counts = data.counts
    assert counts["rows_read"] == 8
    assert counts["empty_text_dropped"] == 1
    assert counts["duplicates_merged"] == 1
    assert counts["conflicting_duplicates_dropped"] == 2
    assert counts["rows_used"] == 4 == len(data.rows)
    assert counts["class_counts"] == {"production": 2, "heritage": 1, "culture": 1, "irrelevant": 0}
    # Near-duplicates (punctuation only) are kept but share a group, so they share a fold.
    groups = dict(zip(data.rows["text"], data.rows["group"]))
    assert groups["好看"] == groups["好看！"]
    assert groups["好看"] != groups["文物真美"]


def test_shipped_sample_validates():
    data = load_labeled(REPO / "data" / "labeled_sample.xlsx", SCHEMA)
    counts = data.counts
    assert counts["rows_read"] == 480
    assert counts["rows_used"] == 461 == len(data.rows)
    assert counts["duplicates_merged"] == 15
    assert counts["conflicting_duplicates_dropped"] == 4
    assert counts["empty_text_dropped"] == 0
    assert counts["class_counts"] == {"production": 137, "heritage": 115, "culture": 115, "irrelevant": 94}
    conflicts = data.issues[data.issues["action"] == "dropped"]
    assert sorted(conflicts["row"]) == sorted(["row 42", "row 188", "row 186", "row 407"])
    assert data.rows["text"].is_unique
    assert not any(math.isnan(v) for v in data.rows["label"].astype(float))


# --------------------------------------------------------------------------------------------- rows for the folds
def test_a_blank_spacer_row_leaves_integer_labels(tmp_path):
    """A blank row among the rows (None in the label column) once left labels as floats: fold 0 then died in
    cross_entropy ("expected target dtype to be Long"), and a conflict among them could not be named."""
    table = make_labeled_rows(20)
    table.loc[19, "Sentence"] = table.loc[18, "Sentence"]  # a conflicting copy, named by its label names
    blank = pd.DataFrame({"Sentence": [None], "Label": [None]})
    spaced = pd.concat([table.iloc[:10], blank, table.iloc[10:]], ignore_index=True)
    spaced.to_excel(tmp_path / "spaced.xlsx", index=False)
    spaced.to_csv(tmp_path / "spaced.csv", index=False)
    for path in (tmp_path / "spaced.xlsx", tmp_path / "spaced.csv"):
        data = load_labeled(path, SCHEMA)
        assert data.rows["label"].dtype == np.int64, path
        assert data.rows["label"].tolist() == table["Label"].iloc[:18].tolist()
        issues = dict(zip(data.issues["row"], data.issues["issue"]))
        assert issues["row 12"] == "empty row"
        assert "row 21 = culture, row 22 = irrelevant" in issues["row 22"]


def small_rows(rows_per_class: int) -> tuple[np.ndarray, list[str]]:
    labels = np.repeat(np.arange(4), rows_per_class)
    return labels, [f"text {i}" for i in range(len(labels))]


@pytest.mark.parametrize(("rows_per_class", "num_folds"), [(10, 5), (13, 2), (3, 3)])
def test_small_data_gets_a_stratified_validation_part(rows_per_class, num_folds):
    """round(1 / 0.1) = 10 splits of a training part with fewer than 10 rows in every class once raised scikit-learn's
    "n_splits=10 cannot be greater than the number of members in each class" in fold 0."""
    labels, groups = small_rows(rows_per_class)
    fold_of_row = make_folds(labels, groups, num_folds, seed=42)
    for fold in range(num_folds):
        train = np.flatnonzero(fold_of_row != fold)
        fit, validation = split_validation(train, labels, groups, 0.1, seed=42 + fold)
        assert sorted([*fit, *validation]) == sorted(train)
        assert len(validation) > 0 and not set(fit) & set(validation)
        assert len(validation) <= len(train) / 2
        largest = np.bincount(labels[train]).max()  # splits as many as the largest class has rows: one of it
        assert np.bincount(labels[validation], minlength=4)[np.bincount(labels[train]) == largest].max() == 1
        np.testing.assert_array_equal(validation, split_validation(train, labels, groups, 0.1, seed=42 + fold)[1])


def test_a_learning_curve_share_gets_a_validation_part():
    """jobs/learning_curve.py's 25% share of a small fold (two or three rows per class) is split too."""
    from weibolabel.training.learning_curve import subsample

    labels, groups = small_rows(13)
    train = np.flatnonzero(make_folds(labels, groups, 2, seed=42) != 0)
    share = subsample(train, labels, 0.25, seed=42)
    fit, validation = split_validation(share, labels, groups, 0.1, seed=42)
    assert sorted([*fit, *validation]) == sorted(share) and len(validation) > 0


def test_the_validation_part_is_unchanged_where_ten_splits_fit():
    """Data with 10 rows or more in a class of the training part keeps its validation rows: the first of
    round(1 / fraction) stratified group splits, as before small parts were split."""
    from weibolabel.data.folds import _stratified_group_splits

    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=300, p=[0.4, 0.3, 0.2, 0.1])
    groups = [f"g{i}" for i in range(300)]
    for start in range(0, 290, 30):  # near-duplicates: three rows of one comment share a group and a label
        labels[start + 1 : start + 3] = labels[start]
        groups[start + 1] = groups[start + 2] = groups[start]
    fold_of_row = make_folds(labels, groups, 5, seed=1)
    for fold in range(5):
        train = np.flatnonzero(fold_of_row != fold)
        for fraction in (0.1, 0.2, 0.3):
            old_fit, old_validation = next(
                _stratified_group_splits(labels[train], [groups[i] for i in train], round(1 / fraction), fold)
            )
            fit, validation = split_validation(train, labels, groups, fraction, seed=fold)
            np.testing.assert_array_equal(fit, train[old_fit])
            np.testing.assert_array_equal(validation, train[old_validation])


def test_a_training_part_too_small_to_split_is_a_clear_error():
    labels, groups = small_rows(1)
    with pytest.raises(UserError, match="too few to carve a validation part") as error:
        split_validation(np.arange(4), labels, groups, 0.1, seed=0)
    assert "--num_folds" in str(error.value)


def test_one_class_is_refused():
    """A label column with one class trained and reported accuracy 1.0000 (with --no_baseline)."""
    labels = np.full(40, 2)
    with pytest.raises(UserError, match="Only one class has rows") as error:
        make_folds(labels, [str(i) for i in range(40)], 2, seed=0, names=SCHEMA.names)
    assert "{'culture': 40}" in str(error.value) and "--label_column" in str(error.value)


def test_too_few_rows_names_classes_by_name_with_the_empty_ones():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 3)
    with pytest.raises(UserError, match="Too few examples") as error:
        make_folds(labels, [str(i) for i in range(len(labels))], 5, seed=0, names=SCHEMA.names)
    assert "{'culture': 3, 'irrelevant': 0}" in str(error.value)


@pytest.mark.parametrize(
    ("rows_per_class", "extra", "message"),
    [
        ({0: 10, 1: 10, 2: 10, 3: 3}, [], "Too few examples for 5-fold"),
        ({2: 12}, ["--no_baseline"], "Only one class has rows"),
        ({0: 2, 1: 2, 2: 2, 3: 2}, ["--num_folds", "2"], "too few to carve a validation part"),
    ],
)
def test_data_the_folds_refuse_leaves_no_run_directory(
    tmp_path, capsys, caplog, tiny_base_model_dir, rows_per_class, extra, message
):
    """The folds' refusals came after config.yaml and run_identity.json were written, and that directory then
    refused the corrected rerun ("already holds a training run with different settings")."""
    table = make_labeled_rows(48)
    table = pd.concat([table[table["Label"] == label].head(n) for label, n in rows_per_class.items()])
    data = tmp_path / "few.csv"
    table.to_csv(data, index=False)
    out = tmp_path / "run"
    status, _, _ = run_job("train.py", train_args(data, tiny_base_model_dir, out, "--num_folds", "5", *extra), capsys)
    assert status == 2 and message in caplog.text
    assert not out.exists()
