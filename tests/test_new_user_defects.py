"""Issue 18: what a new user met first. Merging keeps the group's columns and never overwrites silently; users'
comments are ignored by git; the offline-download advice works; bad options and schemas get a message, not a
traceback; invalid gold labels are counted, not dropped silently; a resume state cannot run code."""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from weibolabel.config import TrainConfig, parse_config
from weibolabel.errors import UserError
from weibolabel.labeled import load_labeled
from weibolabel.labels import LabelSchema, load_label_schema
from weibolabel.modeling import load_pretrained_classifier, load_tokenizer, resolve_model_source, save_checkpoint
from weibolabel.training import FoldTraining, _load_state, _restore_rng, _save_state

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.jobs import launch_job, load_job

SCHEMA = LabelSchema()


# ================================================================================= 1. merging keeps the columns
@pytest.fixture()
def group_files(tmp_path):
    """The group's training file: a custom text column, labels as names, and columns of their own around them."""
    existing = tmp_path / "train.xlsx"
    pd.DataFrame(
        {
            "show": ["国家宝藏", "国家宝藏", "上新了故宫"],
            "评论": ["主持人讲得真好", "越王勾践剑好锋利", "转发微博"],
            "annotator": ["li", "wang", "li"],
            "Label": ["production", "heritage", "irrelevant"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-02-01"]),
        }
    ).to_excel(existing, index=False)
    filled = tmp_path / "filled.xlsx"
    pd.DataFrame(
        {
            "Sentence": ["兵马俑好震撼", "转发微博", "中华文化博大精深"],
            "Label": [1, 2, None],
            "predicted_label": [1, 3, 2],
            "annotator": ["zhao", "zhao", None],
        }
    ).to_excel(filled, index=False)
    return existing, filled


def test_merge_keeps_every_column_of_the_existing_file_in_place(tmp_path, group_files, capsys):
    existing, filled = group_files
    output = tmp_path / "merged.xlsx"
    merge = load_job("merge_annotations")
    args = ["--annotations", str(filled), "--existing", str(existing), "--output", str(output), "--text_column", "评论"]
    assert merge.main([*args, "--prefer", "new"]) == 0, capsys.readouterr().err
    before, merged = pd.read_excel(existing), pd.read_excel(output)
    # Every column in place; how each row was chosen (issue 28) is added at the end.
    assert list(merged.columns) == ["show", "评论", "annotator", "Label", "date", "selection"]
    assert merged["selection"].tolist() == ["original"] * 3 + ["uncertainty"]
    # Existing rows: every cell as it was, except the relabeled conflict (written as a name, like its column).
    pd.testing.assert_frame_equal(merged.iloc[:2, :5], before.iloc[:2])
    assert merged.loc[2, "Label"] == "culture" and merged.loc[2, "annotator"] == "li"
    # The new row fills what it has (text, label, annotator) and leaves the rest empty.
    new = merged.iloc[3]
    assert (new["评论"], new["Label"], new["annotator"]) == ("兵马俑好震撼", "heritage", "zhao")
    assert pd.isna(new["show"]) and pd.isna(new["date"]) and len(merged) == 4
    assert load_labeled(output, SCHEMA, text_column="评论", label_column="Label").counts["rows_used"] == 4


def test_merge_into_the_original_only_when_asked_and_through_a_backup(tmp_path, group_files, capsys):
    existing, filled = group_files
    merge = load_job("merge_annotations")
    original = existing.read_bytes()
    args = ["--annotations", str(filled), "--existing", str(existing), "--output", str(existing)]
    assert merge.main([*args, "--text_column", "评论"]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == original
    assert merge.main([*args, "--text_column", "评论", "--overwrite"]) == 0
    backups = sorted(tmp_path.glob("train.backup-*.xlsx"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert f"backup of the original: {backups[0]}" in capsys.readouterr().out
    merged = pd.read_excel(existing)
    assert list(merged.columns) == ["show", "评论", "annotator", "Label", "date", "selection"] and len(merged) == 4
    sheet = filled.read_bytes()
    args = ["--annotations", str(filled), "--existing", str(existing), "--output", str(filled), "--overwrite"]
    assert merge.main([*args, "--text_column", "评论"]) == 2 and filled.read_bytes() == sheet
    assert f"is the --annotations {filled} itself" in capsys.readouterr().err


def test_merge_into_a_csv_keeps_its_format_and_its_numbers(tmp_path, group_files, capsys):
    _, filled = group_files
    existing = tmp_path / "train.csv"
    pd.DataFrame({"Sentence": ["主持人讲得真好", "转发微博"], "Label": [0, 3], "likes": [12, 7]}).to_csv(
        existing, index=False
    )
    merge = load_job("merge_annotations")
    assert merge.main(["--annotations", str(filled), "--existing", str(existing)]) == 0, capsys.readouterr().err
    lines = (tmp_path / "train_merged.csv").read_text(encoding="utf-8-sig").splitlines()
    # Existing rows as they were (12, not 12.0), the new row after them; a column only the sheet has goes last.
    assert lines == [
        "Sentence,Label,likes,annotator,selection",
        "主持人讲得真好,0,12,,original",
        "转发微博,3,7,,original",
        "兵马俑好震撼,1,,zhao,uncertainty",
    ]
    assert "added at the end: ['annotator', 'selection']" in capsys.readouterr().out


# ================================================================================= 2. users' comments stay local
IGNORED = [
    "data/labeled.xlsx",
    "data/labeled_round2.xlsx",
    "data/comments.xlsx",
    "data/all_comments.xlsx",
    "annotation/round1.xlsx",
    "labels/round1.parquet",
    "analysis/round1/class_shares.csv",
    "corpus/part1.csv",
    "runs/cv/report.md",
    "comparisons/round1_vs_round2.csv",
    "review/round1.xlsx",
    "models/bert-base-chinese/config.json",
    "comments.xlsx",
    "labels.parquet",
]
SHIPPED = ["data/README.md", "data/labeled_sample.xlsx", "data/unlabeled_sample.xlsx", "data/make_sample.py"]


def test_users_comments_and_outputs_are_ignored_but_the_samples_are_not():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git work tree")
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *IGNORED], cwd=REPO, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(IGNORED), ignored.stderr
    shipped = subprocess.run(["git", "check-ignore", "--no-index", *SHIPPED], cwd=REPO, capture_output=True, text=True)
    assert shipped.stdout.split() == [] and shipped.returncode == 1, shipped.stdout


# ================================================================================= 3. offline download advice
NEEDED_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json")


def test_missing_local_model_directory_is_not_called_a_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(UserError) as caught:
        resolve_model_source("models/bert-base-chinese")
    message = str(caught.value)
    assert message.startswith("Model directory not found: models/bert-base-chinese")
    assert "hf download bert-base-chinese" in message and "--local-dir models/bert-base-chinese" in message
    assert "huggingface-cli" not in message and "Hub cannot be reached" not in message
    assert all(name in message for name in NEEDED_FILES)


def test_unreachable_hub_name_gives_the_working_download_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as caught:
        resolve_model_source("nobody-here/weibo-bert")
    message = str(caught.value)
    assert "Hugging Face Hub cannot be reached" in message
    assert "hf download nobody-here/weibo-bert" in message and "--local-dir models/weibo-bert" in message
    assert "--model_name_or_path models/weibo-bert" in message and "huggingface-cli" not in message
    assert all(name in message for name in NEEDED_FILES)


def test_docs_give_the_hf_command_not_huggingface_cli():
    for doc in ("README.md", "docs/cluster.md"):
        text = (REPO / doc).read_text()
        assert "huggingface-cli" not in text, doc
        assert "hf download bert-base-chinese" in text, doc


# ================================================================================= 4. messages, not tracebacks
def test_config_file_missing_unknown_key_or_broken_is_a_message_with_status_2(tmp_path, capsys):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_rte: 0.001\nnum_folds: 3\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("num_folds: [3\n")
    cases = {
        str(tmp_path / "missing.yaml"): "Config file not found",
        str(unknown): "unknown option 'learning_rte' (did you mean 'learning_rate'?)",
        str(broken): "is not valid YAML",
    }
    for path, expected in cases.items():
        with pytest.raises(SystemExit) as caught:
            parse_config(TrainConfig, ["--config", path])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and expected in err and path in err, err
    # The same through a real job's entry point: one line on stderr, exit status 2, no traceback.
    result = launch_job("merge_annotations.py", ["--config", str(unknown)], check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "did you mean 'learning_rate'" not in result.stderr  # merge has no such option: it lists its own
    valid = "valid options are annotations, encoding, existing"
    assert f"unknown options 'learning_rte', 'num_folds'; {valid}" in result.stderr


def test_label_schema_with_a_gap_names_the_file_and_the_fix(tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("- {id: 0, name: a}\n- {id: 1, name: b}\n- {id: 3, name: c}\n")
    with pytest.raises(UserError) as caught:
        load_label_schema(labels)
    message = str(caught.value)
    assert message.startswith(f"{labels}: ") and "[0, 1, 3]" in message
    assert "renumber them 0, 1, 2" in message and "'c': 3 -> 2" in message


def test_label_name_in_the_wrong_case_gets_did_you_mean(tmp_path):
    data = tmp_path / "data.csv"
    pd.DataFrame({"Sentence": ["越王勾践剑好锋利", "主持人讲得真好"], "Label": ["Heritage", 0]}).to_csv(
        data, index=False
    )
    with pytest.raises(UserError) as caught:
        load_labeled(data, SCHEMA)
    assert "row 2, column 'Label': 'Heritage' is neither a label id" in str(caught.value)
    assert "did you mean 'heritage'?" in str(caught.value)


def test_a_refused_run_leaves_no_new_output_directory(tmp_path, tiny_base_model_dir, caplog):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"Sentence": ["一", "二"], "Label": [0, 9]}).to_csv(bad, index=False)
    out = tmp_path / "new" / "run"
    train = load_job("train")
    args = ["--data", str(bad), "--model_name_or_path", str(tiny_base_model_dir), "--output_dir", str(out)]
    assert train.main(args) == 2
    assert "9 is outside the label schema" in caplog.text
    assert not (tmp_path / "new").exists()

    caplog.clear()
    label = load_job("label_corpus")
    output = tmp_path / "labels" / "round1.parquet"
    assert label.main(["--input", str(bad), "--model", str(tmp_path / "no-model"), "--output", str(output)]) == 2
    assert "no-model" in caplog.text and not (tmp_path / "labels").exists()


# ================================================================================= 5. invalid gold labels counted
def test_invalid_gold_labels_are_counted_named_and_in_the_metadata(tmp_path, tiny_base_model_dir, caplog):
    checkpoint = tmp_path / "checkpoint"
    save_checkpoint(
        load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA), load_tokenizer(str(tiny_base_model_dir)),
        checkpoint, SCHEMA,
    )  # fmt: skip
    corpus = tmp_path / "corpus.csv"
    gold = [0, 1, 2, 3, " 1", 1, "abc", 2, "Heritage", 3, None, "heritage"]
    pd.DataFrame({"Sentence": make_labeled_rows(12)["Sentence"], "Label": gold}).to_csv(corpus, index=False)
    output = tmp_path / "new" / "labels.parquet"  # a directory the first write creates
    label = load_job("label_corpus")
    caplog.set_level(logging.INFO)
    args = ["--input", str(corpus), "--model", str(checkpoint), "--output", str(output), "--chunk_size", "4"]
    assert label.main(args) == 0  # three chunks: the counts of each are added up
    assert "agreement with gold on 8 rows" in caplog.text  # 12 rows, one empty gold cell, three invalid ones
    assert "3 gold labels in column 'Label' are not valid labels and are left out of the agreement" in caplog.text
    assert f"{corpus}, row 6: ' 1'" in caplog.text and f"{corpus}, row 10: 'Heritage'" in caplog.text
    metadata = json.loads(pq.read_schema(output).metadata[b"weibolabel"])
    invalid = metadata["gold_labels"]
    assert invalid["invalid"] == 3 and invalid["missing"] == 1 and invalid["valid"] == 8
    assert [cell["row"] for cell in invalid["first_invalid"]] == ["row 6", "row 8", "row 10"]
    assert "did you mean 'heritage'?" in invalid["first_invalid"][2]["problem"]


# ================================================================================= 8. a resume state cannot run code
class _Payload:
    """What an attacker would write: unpickling it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _tiny_training_state(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = SimpleNamespace(scaler=None, device=torch.device("cpu"))
    result = FoldTraining(best_state={k: v.clone() for k, v in model.state_dict().items()}, best_epoch=0)
    result.history.append({"epoch": 1, "train_loss": 0.5, "val_macro_f1": 0.25})
    path = tmp_path / "resume" / "state.pt"
    _save_state(
        path,
        model=model,
        optimizer=SimpleNamespace(optimizer=optimizer),
        scheduler=scheduler,
        accelerator=accelerator,
        epoch=0,
        best_f1=0.25,
        result=result,
    )
    return path, model


def test_resume_state_round_trips_without_unpickling_anything_but_tensors(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    path, model = _tiny_training_state(tmp_path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    state = _load_state(path)
    assert (state["epoch"], state["best_f1"], state["best_epoch"]) == (0, 0.25, 0)
    assert state["history"] == [{"epoch": 1, "train_loss": 0.5, "val_macro_f1": 0.25}]
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    assert state["optimizer"]["state"][0]["exp_avg"].shape == (3, 4)
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    _restore_rng(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_a_resume_state_replaced_by_a_malicious_pickle_is_refused_not_run(tmp_path):
    path, _ = _tiny_training_state(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(UserError) as caught:
        _load_state(path)
    assert not marker.exists()
    message = str(caught.value)
    assert f"{path} is damaged and cannot be resumed from" in message
    assert "not a resume state written by this program" in message and "nothing in it was run" in message
    assert f"Delete the directory {path.parent}" in message

    # A well-formed file of the wrong shape is refused too (tensors only, but not a resume state).
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="not a resume state written by this program"):
        _load_state(path)
