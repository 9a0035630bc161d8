"""Likely label errors (confident learning on out-of-fold probabilities) and applying the reviewed decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from weibolabel.data.folds import make_folds
from weibolabel.data.labeled import group_key
from weibolabel.data.tables import read_table
from weibolabel.review.label_issues import ISSUE_COLUMNS
from weibolabel.training.baseline import tfidf_logreg_probs

from helpers.data import NAMES, make_labeled_rows
from helpers.jobs import run_job

NUM_FLIPPED = 12


def flipped_file(directory, num_rows: int = 240, seed: int = 5):
    """A labeled .xlsx with extra columns and NUM_FLIPPED labels flipped on purpose; (path, frame, flipped rows)."""
    frame = make_labeled_rows(num_rows, seed=seed)
    frame.insert(0, "show", [f"show {i % 3}" for i in range(num_rows)])
    frame["note"] = [f"n{i}" for i in range(num_rows)]
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(num_rows, size=NUM_FLIPPED, replace=False))
    frame.loc[flipped, "Label"] = (frame.loc[flipped, "Label"] + rng.integers(1, 4, NUM_FLIPPED)) % 4
    path = directory / "labeled.xlsx"
    frame.to_excel(path, index=False)
    return path, frame, flipped


def fake_run(directory, data_path, frame, old_row_names: bool = False):
    """A run directory as jobs/train.py leaves it, with out-of-fold probabilities from the TF-IDF baseline (a
    cross-validated model that is fast to fit), so the test measures the ranking, not a trained encoder."""
    run = directory / "run"
    run.mkdir()
    texts, labels = frame["Sentence"].tolist(), frame["Label"].to_numpy(dtype=np.int64)
    fold_of_row = make_folds(labels, [group_key(t) for t in texts], 5, seed=0)
    probs = np.zeros((len(texts), 4))
    for fold in range(5):
        train, test = fold_of_row != fold, fold_of_row == fold
        probs[test] = tfidf_logreg_probs(
            [t for t, m in zip(texts, train) if m], labels[train], [t for t, m in zip(texts, test) if m], 4, False
        )
    rows = {"row": [f"row {i + 2}" for i in range(len(texts))]} if old_row_names else {"row_id": np.arange(len(texts))}
    pd.DataFrame(
        {
            **rows,
            "text": texts,
            "gold": labels,
            "fold": fold_of_row,
            **{f"prob_{name}": probs[:, i].astype(np.float32) for i, name in enumerate(NAMES)},
        }
    ).to_parquet(run / "oof_predictions.parquet")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data_path), "header_row": 1, "labels": None}))
    return run


@pytest.fixture
def reviewed(tmp_path, capsys):
    """A flipped file, its label issues found by the job, and the review sheet."""
    data, frame, flipped = flipped_file(tmp_path)
    run = fake_run(tmp_path, data, frame)
    status, _, err = run_job(
        "find_label_issues.py", ["--run", str(run), "--output_dir", str(tmp_path / "review")], capsys
    )
    assert status == 0, err
    return data, frame, flipped, tmp_path / "review"


def test_flipped_labels_are_ranked_at_the_top(reviewed):
    _, frame, flipped, review = reviewed
    issues = pd.read_csv(review / "label_issues.csv")
    assert list(issues.columns[: len(ISSUE_COLUMNS)]) == ISSUE_COLUMNS
    assert issues["rank"].tolist() == list(range(1, len(issues) + 1))
    top = set(issues["row_id"].head(NUM_FLIPPED))
    recall_at_k = len(top & set(flipped)) / NUM_FLIPPED
    # Measured on this seeded example: 10 rows flagged, all 10 of them flipped ones, so recall at 12 = 10/12 = 0.83
    # and precision 1.0. The 2 missed flips have a given-label probability of 0.05: prune_by_noise_rate flags per
    # (given, true) pair only as many rows as the confident joint estimates for it.
    assert recall_at_k >= 0.75, (recall_at_k, sorted(top), flipped.tolist())
    assert len(set(issues["row_id"]) & set(flipped)) >= 0.9 * len(issues)
    for row in issues.head(NUM_FLIPPED).itertuples():  # row_id is the row of the file, text and label included
        assert frame["Sentence"].iloc[row.row_id] == row.text
        assert NAMES[frame["Label"].iloc[row.row_id]] == row.given_label
    sheet = pd.read_excel(review / "label_issues.xlsx", sheet_name=None)
    assert set(sheet) == {"Sheet1", "labels"} and sheet["Sheet1"]["Decision"].isna().all()
    assert sheet["Sheet1"]["row_id"].tolist() == issues["row_id"].tolist()
    noise = pd.read_csv(review / "noise_estimate.csv")
    assert noise["label"].tolist() == NAMES and noise["rows"].sum() == len(frame)
    assert 0 < noise["estimated_errors"].sum() < 3 * NUM_FLIPPED
    assert "An **estimate**" in (review / "label_issues.md").read_text()


def test_a_run_of_an_older_format_is_refused_with_what_to_do(tmp_path, capsys):
    data, frame, _ = flipped_file(tmp_path, num_rows=80)
    run = fake_run(tmp_path, data, frame, old_row_names=True)
    status, _, err = run_job("find_label_issues.py", ["--run", str(run), "--output_dir", str(tmp_path / "r")], capsys)
    assert status == 2 and "older version" in err and "Train the run again" in err and "Traceback" not in err


def test_not_a_run_is_a_clear_error(tmp_path, capsys):
    status, _, err = run_job("find_label_issues.py", ["--run", str(tmp_path)], capsys)
    assert status == 2 and "not a finished training run" in err and "Traceback" not in err


def review_args(review, data) -> list[str]:
    return ["--review", str(review), "--data", str(data)]


def fill_decisions(review, decisions: dict[int, object]):
    """The review sheet with Decision cells filled in by rank; returns its path."""
    sheets = pd.read_excel(review / "label_issues.xlsx", sheet_name=None)
    sheet = sheets["Sheet1"].astype({"Decision": object})
    for rank, decision in decisions.items():
        sheet.loc[sheet["rank"] == rank, "Decision"] = decision
    path = review / "filled.xlsx"
    with pd.ExcelWriter(path) as writer:
        sheet.to_excel(writer, sheet_name="Sheet1", index=False)
        sheets["labels"].to_excel(writer, sheet_name="labels", index=False)
    return path, sheet


def test_decisions_apply_without_losing_columns_or_rows(reviewed, capsys):
    data, frame, _, review = reviewed
    filled, sheet = fill_decisions(review, {1: "suggested", 2: " KEEP ", 3: 0, 4: "culture", 5: "drop"})
    by_rank = sheet.set_index("rank")
    output = review / "out.xlsx"
    status, _, err = run_job("apply_label_review.py", [*review_args(filled, data), "--output", str(output)], capsys)
    assert status == 0, err
    result = read_table(output)
    assert list(result.columns) == list(frame.columns)
    dropped = int(by_rank.loc[5, "row_id"])
    kept_rows = frame.drop(index=dropped).reset_index(drop=True)
    assert len(result) == len(frame) - 1
    for column in ("show", "Sentence", "note"):  # every other cell, in order
        assert result[column].tolist() == kept_rows[column].tolist()
    expected = frame["Label"].copy()
    expected[by_rank.loc[1, "row_id"]] = NAMES.index(by_rank.loc[1, "suggested_label"])
    expected[by_rank.loc[3, "row_id"]] = 0
    expected[by_rank.loc[4, "row_id"]] = NAMES.index("culture")
    assert result["Label"].astype(int).tolist() == expected.drop(index=dropped).tolist()
    log = pd.read_csv(review / "out_review_log.csv")
    assert sorted(log["row_id"]) == sorted(by_rank.loc[[1, 2, 3, 4, 5], "row_id"])
    assert log.loc[log["row_id"] == dropped, "change"].item() == "row removed"
    assert log.loc[log["row_id"] == by_rank.loc[2, "row_id"], "change"].item() == "none"
    removed = pd.read_csv(review / "out_review_dropped.csv")
    assert removed["note"].tolist() == [frame["note"].iloc[dropped]]  # a dropped row keeps all its cells somewhere
    untouched = read_table(data)  # the input file is not written to
    assert untouched["Label"].tolist() == frame["Label"].tolist() and len(untouched) == len(frame)


def test_bad_decisions_are_refused_naming_the_rows(reviewed, capsys):
    data, _, _, review = reviewed
    filled, _ = fill_decisions(review, {1: "maybe", 2: 7, 3: "keep"})
    args = [*review_args(filled, data), "--output", str(review / "out.xlsx")]
    status, _, err = run_job("apply_label_review.py", args, capsys)
    assert status == 2 and "Traceback" not in err
    assert "row 2, column 'Decision': 'maybe' is not a decision" in err
    assert "row 3, column 'Decision': 7 is not a decision" in err
    assert not (review / "out.xlsx").exists()

    sheets = pd.read_excel(filled, sheet_name=None)
    sheets["Sheet1"].loc[0, ["Decision", "row_id"]] = ["keep", 99999]
    sheets["Sheet1"].loc[1, "Decision"] = "keep"
    sheets["Sheet1"].loc[1, "Sentence"] = "another text"
    with pd.ExcelWriter(filled) as writer:
        for name, sheet in sheets.items():
            sheet.to_excel(writer, sheet_name=name, index=False)
    status, _, err = run_job("apply_label_review.py", args, capsys)
    assert status == 2 and "review sheet row 2, row_id 99999: not a row of" in err
    assert "review sheet row 3" in err and "the text differs" in err
    assert not (review / "out.xlsx").exists()


def test_replacing_the_data_needs_overwrite_and_keeps_a_backup(reviewed, capsys):
    data, frame, _, review = reviewed
    filled, sheet = fill_decisions(review, {1: "suggested"})
    status, _, err = run_job("apply_label_review.py", [*review_args(filled, data), "--output", str(data)], capsys)
    assert status == 2 and "--overwrite" in err
    assert read_table(data)["Label"].tolist() == frame["Label"].tolist()
    args = [*review_args(filled, data), "--output", str(data), "--overwrite"]
    status, _, err = run_job("apply_label_review.py", args, capsys)
    assert status == 0, err
    (backup,) = data.parent.glob("labeled.backup-*.xlsx")
    assert read_table(backup)["Label"].tolist() == frame["Label"].tolist()
    row_id = int(sheet.loc[0, "row_id"])
    assert int(read_table(data)["Label"].iloc[row_id]) == NAMES.index(sheet.loc[0, "suggested_label"])


def test_a_decision_reaches_every_exact_copy_and_names_stay_names(tmp_path, capsys):
    data = tmp_path / "named.csv"
    pd.DataFrame(
        {
            "Sentence": ["转发微博", "苏轼太有才", "转发微博 ", "早上好"],
            "Label": ["irrelevant", "heritage", "irrelevant", "irrelevant"],
        }
    ).to_csv(data, index=False)
    review = tmp_path / "review.xlsx"
    pd.DataFrame(
        {
            "rank": [1],
            "row_id": [0],
            "Sentence": ["转发微博"],
            "given_label": ["irrelevant"],
            "suggested_label": ["production"],
            "suggested_probability": [0.9],
            "Decision": ["suggested"],
        }
    ).to_excel(review, index=False)
    status, _, err = run_job("apply_label_review.py", ["--review", str(review), "--data", str(data)], capsys)
    assert status == 0, err
    result = read_table(tmp_path / "named_reviewed.csv")
    assert result["Label"].tolist() == ["production", "heritage", "production", "irrelevant"]
    assert result["Sentence"].tolist() == ["转发微博", "苏轼太有才", "转发微博 ", "早上好"]
    log = pd.read_csv(tmp_path / "named_reviewed_review_log.csv")
    assert log["row_id"].tolist() == [0, 2] and log["note"].fillna("").tolist() == ["", "exact copy of row_id 0"]
