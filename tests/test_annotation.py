"""The annotation loop: uncertainty selection, the annotators' spreadsheet, and merging it back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from weibolabel.annotation import drop_known, margin, read_labeled_parquet, select_for_annotation, uncertainty
from weibolabel.errors import UserError
from weibolabel.labeled import group_key, load_labeled
from weibolabel.labels import LabelSchema

from helpers.data import NAMES
from helpers.jobs import launch_job, run_job
from helpers.outputs import write_labeled_parquet


def synthetic_corpus(num_rows: int = 80, seed: int = 0):
    """Mostly confident rows of classes 0-2, few rows of class 3; some rows nearly tied between two classes;
    some near-duplicates (same text up to punctuation and emoji)."""
    rng = np.random.default_rng(seed)
    texts, probs = [], []
    for i in range(num_rows):
        label = 3 if i % 20 == 0 else i % 3
        p = np.full(4, 0.02)
        if i % 4 == 1:  # uncertain: two classes nearly tied
            p[label], p[(label + 1) % 4] = 0.49, 0.47
        else:
            p[label] = 0.94
        p = p / p.sum()
        texts.append(f"评论{i}号 节目真好看")
        probs.append(p + rng.uniform(0, 1e-3, size=4))
    texts[5], texts[9] = "越王勾践剑好锋利", "越王勾践剑，好锋利！！😭"  # two uncertain near-copies
    texts.append("")  # an empty row (status 'empty') must never be picked
    probs.append(np.full(4, 0.25))
    return texts, np.array([p / p.sum() for p in probs])


def test_uncertainty_measures():
    probs = np.array([[0.9, 0.05, 0.05, 0.0], [0.4, 0.38, 0.2, 0.02], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(margin(probs), [0.85, 0.02, 0.0], atol=1e-9)
    assert np.argsort(uncertainty(probs, "margin")).tolist() == [0, 1, 2]
    assert np.argsort(uncertainty(probs, "entropy")).tolist() == [0, 1, 2]
    with pytest.raises(UserError):
        uncertainty(probs, "coin flip")


def test_selection_quota_duplicates_and_uncertainty(tmp_path):
    texts, probs = synthetic_corpus()
    path = write_labeled_parquet(tmp_path / "labels.parquet", texts, probs)
    frame, probs, _ = read_labeled_parquet(path)
    assert len(frame) == len(texts) - 1 and (frame["status"] == "ok").all()
    k = 12
    picked = select_for_annotation(frame, uncertainty(probs, "margin"), k, class_quota=0.5)
    assert len(picked) == k
    assert set(picked["label"].astype(int)) == {0, 1, 2, 3}  # the rare class 3 is represented
    groups = [group_key(t) for t in picked["text"]]
    assert len(set(groups)) == k  # no two near-copies
    assert sum("越王勾践剑" in t for t in picked["text"]) == 1
    # uncertain rows are preferred: all 'most uncertain' picks are near-ties, and they beat every confident row
    chosen_margin = margin(np.stack(picked["probs"].to_numpy()))
    assert (chosen_margin[picked["reason"] == "most uncertain"] < 0.1).all()
    assert np.median(chosen_margin) < np.median(margin(probs))


def test_selection_needs_room_for_every_class(tmp_path):
    texts, probs = synthetic_corpus()
    frame, probs, _ = read_labeled_parquet(write_labeled_parquet(tmp_path / "l.parquet", texts, probs))
    with pytest.raises(UserError, match="predicted classes"):
        select_for_annotation(frame, uncertainty(probs, "margin"), 3)


def test_drop_known_skips_near_copies_of_labeled_texts(tmp_path):
    texts, probs = synthetic_corpus()
    frame, probs, _ = read_labeled_parquet(write_labeled_parquet(tmp_path / "l.parquet", texts, probs))
    kept, kept_probs = drop_known(frame, probs, ["越王勾践剑 好锋利!"])
    assert len(kept) == len(frame) - 2 and len(kept_probs) == len(kept)
    assert not kept["text"].str.contains("越王勾践剑").any()


def test_select_job_writes_annotators_sheet(tmp_path, capsys):
    texts, probs = synthetic_corpus()
    source = write_labeled_parquet(tmp_path / "labels.parquet", texts, probs)
    known = tmp_path / "known.xlsx"
    pd.DataFrame({"Sentence": ["评论2号 节目真好看"], "Label": [2]}).to_excel(known, index=False)
    output = tmp_path / "to_annotate.xlsx"
    status, _, _ = run_job(
        "select_for_annotation.py",
        ["--input", str(source), "--k", "10", "--output", str(output), "--exclude", str(known)],
        capsys,
    )
    assert status == 0
    sheets = pd.read_excel(output, sheet_name=None)
    assert list(sheets) == ["Sheet1", "labels"]
    sheet = sheets["Sheet1"]
    assert list(sheet.columns) == [
        *["Sentence", "Label", "predicted_label", "predicted_name", "confidence", "row_id", "selection"]
    ]
    assert (sheet["selection"] == "uncertainty").all()
    assert len(sheet) == 10 and sheet["Label"].isna().all()
    assert "评论2号 节目真好看" not in set(sheet["Sentence"])
    assert (sheet["predicted_name"] == [NAMES[i] for i in sheet["predicted_label"]]).all()
    assert sheets["labels"].to_dict("records") == LabelSchema().to_list()
    status, _, err = run_job(
        "select_for_annotation.py", ["--input", str(source), "--k", "10", "--output", str(output)], capsys
    )
    assert status == 2 and "already exists" in err


def test_select_by_fold_disagreement_on_a_real_labeling_run(tmp_path, tiny_run_dir, unlabeled_xlsx, capsys):
    labels = tmp_path / "labels.parquet"
    launch_job(
        "label_corpus.py", ["--input", str(unlabeled_xlsx), "--model", str(tiny_run_dir), "--output", str(labels)]
    )
    output = tmp_path / "pick.xlsx"
    status, out, _ = run_job(
        "select_for_annotation.py",
        [
            *("--input", str(labels), "--k", "8", "--output", str(output), "--method", "disagreement"),
            *("--model", str(tiny_run_dir), "--class_quota", "0"),
        ],
        capsys,
    )
    assert status == 0 and "by disagreement" in out
    sheet = pd.read_excel(output)
    assert len(sheet) == 8 and sheet["row_id"].is_unique
    status, _, err = run_job(
        "select_for_annotation.py",
        ["--input", str(labels), "--k", "8", "--output", str(tmp_path / "x.xlsx"), "--method", "disagreement"],
        capsys,
    )
    assert status == 2 and "--model" in err


# ------------------------------------------------------------------------------------------------- merge
@pytest.fixture()
def annotation_files(tmp_path):
    existing = tmp_path / "train.xlsx"
    pd.DataFrame(
        {"Sentence": ["主持人讲得真好", "越王勾践剑好锋利", "转发微博", "中华文化博大精深"], "Label": [0, 1, 3, 2]}
    ).to_excel(existing, index=False)
    filled = tmp_path / "filled.xlsx"
    sheet = pd.DataFrame(
        {
            "Sentence": ["兵马俑好震撼", " 主持人讲得真好 ", "转发微博", "今天天气不错", "文化自信", "导演拍得好"],
            "Label": [1, 0, 2, None, "culture", None],
            "predicted_label": [1, 0, 3, 3, 2, 0],
        }
    )
    with pd.ExcelWriter(filled) as writer:
        sheet.to_excel(writer, sheet_name="Sheet1", index=False)
        pd.DataFrame(LabelSchema().to_list()).to_excel(writer, sheet_name="labels", index=False)
    return existing, filled


def test_merge_adds_new_skips_known_and_reports_conflicts(tmp_path, annotation_files, capsys):
    existing, filled = annotation_files
    before = existing.read_bytes()
    output = tmp_path / "merged.xlsx"
    status, out, _ = run_job(
        "merge_annotations.py",
        ["--annotations", str(filled), "--existing", str(existing), "--output", str(output)],
        capsys,
    )
    assert status == 0
    assert existing.read_bytes() == before  # the original is untouched
    merged = pd.read_excel(output)
    assert list(merged.columns) == ["Sentence", "Label", "selection"]  # how each row was chosen, added
    assert merged["Sentence"].tolist()[4:] == ["兵马俑好震撼", "文化自信"]  # new rows appended, in sheet order
    # A sheet with the model's guess (written before the column existed) was uncertainty-selected.
    assert merged["selection"].tolist() == ["original"] * 4 + ["uncertainty"] * 2
    assert merged.loc[merged["Sentence"] == "转发微博", "Label"].tolist() == [3]  # conflict left out
    data = load_labeled(output, LabelSchema())
    assert data.counts["rows_used"] == 6 and data.counts["conflicting_duplicates_dropped"] == 0
    conflicts = pd.read_csv(tmp_path / "merged_conflicts.csv")
    assert conflicts[["text", "existing_label", "new_label", "annotation_row"]].values.tolist() == [
        ["转发微博", "irrelevant", "culture", "row 4"]
    ]
    issues = pd.read_csv(tmp_path / "merged_merge_issues.csv")
    assert issues.loc[issues["issue"] == "no label given", "row"].tolist() == ["row 5", "row 7"]
    summary = json.loads((tmp_path / "merged_merge_summary.json").read_text())
    assert summary["added"] == 2 and summary["already_known"] == 1 and summary["conflicts"] == 1
    assert summary["not_labeled_skipped"] == 2 and summary["added_by_selection"] == {"uncertainty": 2}
    assert "2 new rows" in out


def test_merge_records_each_rows_selection_and_keeps_recorded_ones(tmp_path, capsys):
    """A random sample's rows are 'random', the sheet's own column wins, rows already recorded keep theirs, and a
    sheet made by hand is 'unknown'."""
    existing = tmp_path / "train.csv"
    pd.DataFrame(
        {"Sentence": ["主持人讲得真好", "越王勾践剑好锋利"], "Label": [0, 1], "selection": [None, "uncertainty"]}
    ).to_csv(existing, index=False)
    sheets = {
        "random.xlsx": pd.DataFrame({"Sentence": ["兵马俑好震撼", "文化自信"], "Label": [1, 2], "row_id": [4, 9]}),
        "own.xlsx": pd.DataFrame(
            {
                "Sentence": ["兵马俑好震撼", "文化自信"],
                "Label": [1, 2],
                "predicted_label": [1, 2],
                "selection": "random",
            }
        ),
        "hand.xlsx": pd.DataFrame({"Sentence": ["兵马俑好震撼", "文化自信"], "Label": [1, 2]}),
    }
    expected = {"random.xlsx": "random", "own.xlsx": "random", "hand.xlsx": "unknown"}
    for name, sheet in sheets.items():
        sheet.to_excel(tmp_path / name, index=False)
        output = tmp_path / f"merged_{name}.csv"
        args = ["--annotations", str(tmp_path / name), "--existing", str(existing), "--output", str(output)]
        status, out, err = run_job("merge_annotations.py", args, capsys)
        assert status == 0, err
        merged = pd.read_csv(output)
        assert merged["selection"].tolist() == ["original", "uncertainty", expected[name], expected[name]], name
        assert f"rows added by how they were chosen: {expected[name]} 2" in out


def test_merge_prefer_new_relabels_existing(tmp_path, annotation_files, capsys):
    existing, filled = annotation_files
    output = tmp_path / "merged.xlsx"
    status, _, _ = run_job(
        "merge_annotations.py",
        ["--annotations", str(filled), "--existing", str(existing), "--output", str(output), "--prefer", "new"],
        capsys,
    )
    assert status == 0
    merged = pd.read_excel(output)
    assert merged.loc[merged["Sentence"] == "转发微博", "Label"].tolist() == [2]
    assert len(merged) == 6


def test_merge_default_output_never_replaces_the_original(tmp_path, annotation_files, capsys):
    existing, filled = annotation_files
    assert run_job("merge_annotations.py", ["--annotations", str(filled), "--existing", str(existing)], capsys)[0] == 0
    assert (tmp_path / "train_merged.xlsx").is_file()
    assert len(pd.read_excel(existing)) == 4
    status, _, err = run_job(
        "merge_annotations.py", ["--annotations", str(filled), "--existing", str(existing)], capsys
    )
    assert status == 2 and "already exists" in err


def test_merge_errors_name_row_and_column(tmp_path, annotation_files, capsys):
    existing, _ = annotation_files
    bad = tmp_path / "bad.xlsx"
    pd.DataFrame({"Sentence": ["一", "二", "三", "四"], "Label": [0, None, "cultrue", 9]}).to_excel(bad, index=False)
    status, _, err = run_job(
        "merge_annotations.py",
        ["--annotations", str(bad), "--existing", str(existing), "--output", str(tmp_path / "m.xlsx")],
        capsys,
    )
    assert status == 2
    assert f"{bad}, row 4, column 'Label'" in err and "cultrue" in err
    assert f"{bad}, row 5, column 'Label'" in err
    assert "row 3," not in err  # the unlabeled row is skipped, not an error
    assert not (tmp_path / "m.xlsx").exists()
