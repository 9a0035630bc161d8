"""Reading and validating labeled tables: clear errors with file, spreadsheet row and column; empty texts and
duplicates dropped or merged and listed; the shipped sample validates to the documented counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from weibolabel.data.labeled import clean_text, load_labeled, parse_label
from weibolabel.data.labels import LabelSchema
from weibolabel.data.tables import read_table
from weibolabel.util.errors import UserError

from helpers import REPO

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
