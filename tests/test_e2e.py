"""End to end on the shipped sample data: train with 2 processes, then label the unlabeled sample with 2 processes,
and check every file both jobs write."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from weibolabel.labeling.parts import read_metadata

from helpers import REPO
from helpers.data import NAMES
from helpers.jobs import launch_job


@pytest.mark.slow
def test_train_then_label_the_sample_data(tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    launch_job(
        "train.py",
        [
            "--data",
            str(REPO / "data" / "labeled_sample.xlsx"),
            "--model_name_or_path",
            str(tiny_base_model_dir),
            "--output_dir",
            str(run),
            "--num_folds",
            "2",
            "--num_epochs",
            "1",
            "--learning_rate",
            "1e-3",
            "--per_device_batch_size",
            "32",
            "--max_length",
            "128",
            "--seed",
            "3",
        ],
        num_processes=2,
    )

    # --- the training run directory
    assert yaml.safe_load((run / "config.yaml").read_text())["num_folds"] == 2
    env = json.loads((run / "env.json").read_text())
    assert env["hardware"]["num_processes"] == 2
    assert env["git_revision"] and env["versions"]["torch"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["rows_read"] == 480
    assert metrics["data"]["rows_used"] == 461
    assert metrics["data"]["duplicates_merged"] == 15
    assert metrics["data"]["conflicting_duplicates_dropped"] == 4
    assert metrics["data"]["truncated"] > 0  # the long posts exceed 128 tokens
    assert [f["fold"] for f in metrics["folds"]] == [0, 1]
    assert sum(f["num_test"] for f in metrics["folds"]) == 461
    assert all(len(f["history"]) == 1 for f in metrics["folds"])
    assert len({f["initial_weights_sha256"] for f in metrics["folds"]}) == 1
    assert np.array(metrics["summary"]["confusion_matrix"]).sum() == 461
    assert metrics["baseline"]["summary"]["macro_f1"]["mean"] > 0.5  # char n-grams learn the templated sample
    report = (run / "report.md").read_text()
    assert "Demo model" in report and "| mean ± std |" in report and "rows read: 480; used: 461" in report

    folds = pd.read_csv(run / "folds.csv")
    assert len(folds) == 461 and set(folds["fold"]) == {0, 1}
    assert (folds.groupby("group")["fold"].nunique() == 1).all()  # near-duplicates share a fold
    issues = pd.read_csv(run / "data_issues.csv")
    assert (issues["action"] == "merged").sum() == 15
    assert sorted(issues.loc[issues["action"] == "dropped", "row"]) == ["row 186", "row 188", "row 407", "row 42"]
    oof = pd.read_parquet(run / "oof_predictions.parquet")
    assert len(oof) == 461 and oof["row_id"].is_unique
    assert not {42, 186, 188, 407} & set(oof["spreadsheet_row"])  # the conflicting rows data_issues.csv names
    np.testing.assert_allclose(oof[[f"prob_{n}" for n in NAMES]].sum(axis=1), 1.0, atol=1e-4)
    for plot in ("learning_curves.png", "confusion_matrix.png"):
        assert (run / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    for k in range(2):
        assert (run / f"fold_{k}" / "model.safetensors").is_file()
        assert (run / f"fold_{k}" / "fold_result.json").is_file()
        assert len(pd.read_parquet(run / f"fold_{k}" / "test_predictions.parquet")) == metrics["folds"][k]["num_test"]

    # --- labeling the unlabeled sample with the run's fold ensemble
    output = tmp_path / "labels.parquet"
    result = launch_job(
        "label_corpus.py",
        [
            *("--input", str(REPO / "data" / "unlabeled_sample.xlsx")),
            *("--model", str(run), "--output", str(output), "--chunk_size", "64"),
        ],
        num_processes=2,
    )
    assert f"wrote {output}" in result.stderr
    assert not output.with_name(output.name + ".parts").exists()
    labeled = pd.read_parquet(output)
    assert labeled["row_id"].tolist() == list(range(300))
    source = pd.read_excel(REPO / "data" / "unlabeled_sample.xlsx")
    assert labeled["text"].fillna("").tolist() == source["Sentence"].fillna("").tolist()
    status = labeled.set_index("row_id")["status"]
    # Spreadsheet rows 62, 108, 188 are empty, 243 emoji only, 278 the 2,036-character comment (row_id = row - 2).
    assert status[[60, 106, 186]].tolist() == ["empty"] * 3
    assert status[241] == "unknown_tokens_only"
    assert status[276] == "ok" and bool(labeled.loc[276, "truncated"])
    assert (status == "ok").sum() == 296
    ok = labeled[labeled["status"] == "ok"]
    assert ok["label"].notna().all() and labeled.loc[labeled["status"] != "ok", "label"].isna().all()
    np.testing.assert_allclose(np.stack(ok["probs"].to_numpy()).sum(axis=1), 1.0, atol=1e-5)
    assert pq.read_schema(output).field("probs").type == pa.list_(pa.float32())
    metadata = read_metadata(output)
    assert [label["name"] for label in metadata["labels"]] == NAMES
    assert metadata["members"] == ["fold_0", "fold_1"]
    assert metadata["model"] == str(run)
    assert metadata["max_length"] == 128
