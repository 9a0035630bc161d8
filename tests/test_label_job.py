"""jobs/label_corpus.py and jobs/predict.py through their real entry points: identical output for any process
count, every row once and in order, row statuses, types and provenance, kill-and-resume, and clean errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weibolabel.labeling.parts import read_metadata

from helpers import REPO
from helpers.data import NAMES, make_labeled_rows
from helpers.jobs import label_args, launch_job, parts_dir, start_job


@pytest.fixture(scope="module")
def labeled_once(tiny_run_dir, unlabeled_xlsx, tmp_path_factory) -> Path:
    """The reference output: one process."""
    output = tmp_path_factory.mktemp("label") / "one.parquet"
    launch_job("label_corpus.py", label_args(unlabeled_xlsx, tiny_run_dir, output))
    return output


@pytest.fixture(scope="module")
def reference(labeled_once) -> pd.DataFrame:
    return pd.read_parquet(labeled_once)


# --------------------------------------------------------------------------------------------- content
def test_two_processes_write_the_same_file(labeled_once, tiny_run_dir, unlabeled_xlsx, tmp_path):
    output = tmp_path / "two.parquet"
    launch_job("label_corpus.py", label_args(unlabeled_xlsx, tiny_run_dir, output), num_processes=2)
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(labeled_once))
    assert not parts_dir(output).exists()


def test_every_row_once_in_input_order(reference, unlabeled_xlsx):
    source = pd.read_excel(unlabeled_xlsx)
    assert len(reference) == len(source) == 46
    assert reference["row_id"].tolist() == list(range(len(source)))
    for row_id in (0, 5, 39):  # ordinary comments come back unchanged, in their place
        assert reference.loc[row_id, "text"] == source.loc[row_id, "Sentence"]


def test_row_statuses(reference):
    by_status = reference.set_index("row_id")
    for row_id in (40, 41):  # "" and None: both empty cells
        assert by_status.loc[row_id, "status"] == "empty"
        assert pd.isna(by_status.loc[row_id, "label"])
        assert by_status.loc[row_id, "probs"] is None
    assert by_status.loc[42, "status"] == "unknown_tokens_only"  # emoji only: all [UNK]
    assert pd.isna(by_status.loc[42, "label"])
    assert by_status.loc[43, "status"] == "ok"  # 2,000 characters
    assert bool(by_status.loc[43, "truncated"]) is True
    assert not reference.drop(index=43)["truncated"].any()
    # Duplicates stay separate rows, with the same prediction.
    assert by_status.loc[44, "text"] == by_status.loc[45, "text"] == "转发微博"
    assert by_status.loc[44, "label"] == by_status.loc[45, "label"]
    np.testing.assert_array_equal(by_status.loc[44, "probs"], by_status.loc[45, "probs"])
    ok = reference[reference["status"] == "ok"]
    assert len(ok) == 43
    assert ok["label"].notna().all()
    assert set(ok["label_name"]) <= set(NAMES)
    assert (ok["label_name"] == [NAMES[i] for i in ok["label"]]).all()


def test_column_types_and_probabilities(labeled_once, reference):
    schema = pq.read_schema(labeled_once)
    assert schema.field("row_id").type == pa.int64()
    assert not schema.field("row_id").nullable
    assert schema.field("label").type == pa.int64()
    assert schema.field("probs").type == pa.list_(pa.float32())
    assert schema.field("confidence").type == pa.float32()
    assert schema.field("truncated").type == pa.bool_()
    assert reference["row_id"].dtype == np.int64
    assert str(reference["label"].dtype) == "Int64"  # nullable int, not float64 with NaN
    ok = reference[reference["status"] == "ok"]
    probs = np.stack(ok["probs"].to_numpy())
    assert probs.dtype == np.float32
    assert probs.shape == (len(ok), len(NAMES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), ok["label"].to_numpy(dtype=np.int64))
    np.testing.assert_allclose(ok["confidence"].to_numpy(), probs.max(axis=1), rtol=1e-6)


def test_parquet_metadata_records_provenance(labeled_once, tiny_run_dir):
    metadata = read_metadata(labeled_once)
    assert [label["name"] for label in metadata["labels"]] == NAMES
    assert [label["id"] for label in metadata["labels"]] == [0, 1, 2, 3]
    assert metadata["model"] == str(tiny_run_dir)
    assert metadata["members"] == ["fold_0", "fold_1", "fold_2"]
    assert metadata["code_revision"]
    assert metadata["time"]
    assert metadata["max_length"] == 64  # the training run's
    assert metadata["precision"] == "float32"


def test_summary_json_beside_the_output_agrees_with_it_and_is_documented(labeled_once, reference):
    summary = json.loads(labeled_once.with_suffix(".summary.json").read_text())
    assert summary["output"] == str(labeled_once)
    assert summary["rows"] == summary["rows_labeled"] == len(reference) == 46
    assert summary["labeled"] == int(reference["label"].notna().sum())
    assert summary["label_counts"] == {name: int((reference["label_name"] == name).sum()) for name in NAMES}
    assert summary["processes"] == 1 and summary["device"] == "cpu" and summary["precision"] == "float32"
    assert 0 < summary["seconds_to_first_batch"] < summary["seconds_total"]
    assert 0 < summary["seconds_model_load"] < summary["seconds_to_first_batch"]  # bench/ times runs without it
    assert summary["threads"] == 1  # the jobs' environment here sets OMP_NUM_THREADS=1 (helpers/jobs.py)
    assert summary["rows_per_second"] == pytest.approx(summary["rows_labeled"] / summary["seconds_labeling"])
    # The output and its summary are all the job leaves, and docs/labeling.md describes every key of the summary.
    assert sorted(p.name for p in labeled_once.parent.iterdir()) == ["one.parquet", "one.summary.json"]
    section = (REPO / "docs" / "labeling.md").read_text()
    assert "`labels.summary.json`" in section
    assert not [key for key in summary if f"`{key}`" not in section]


def test_bf16_on_cpu_is_opt_in_and_recorded(reference, tiny_run_dir, unlabeled_xlsx, tmp_path, monkeypatch):
    output = tmp_path / "bf16.parquet"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    launch_job("label_corpus.py", label_args(unlabeled_xlsx, tiny_run_dir, output))
    assert read_metadata(output)["precision"] == "bfloat16"
    bf16 = pd.read_parquet(output)
    assert bf16["status"].tolist() == reference["status"].tolist()
    ok = reference["status"] == "ok"
    fp32_probs, bf16_probs = np.stack(reference["probs"][ok]), np.stack(bf16["probs"][ok])
    assert 0 < np.abs(fp32_probs - bf16_probs).max() < 0.05  # rounded differently, not a different model
    assert (bf16["label"][ok] == reference["label"][ok]).mean() >= 0.9


def test_quantize_onnx_int8_on_cpu_is_opt_in_and_recorded(reference, tiny_run_dir, unlabeled_xlsx, tmp_path):
    output = tmp_path / "int8.parquet"
    result = launch_job("label_corpus.py", label_args(unlabeled_xlsx, tiny_run_dir, output, "--quantize", "onnx-int8"))
    # The quantizer's own logging (a line per tensor it leaves in fp32) stays out of the job's log.
    assert "Quantization parameters" not in result.stderr + result.stdout
    assert "pre-processing before quantization" not in result.stderr + result.stdout
    metadata = read_metadata(output)
    assert metadata["precision"] == "int8-dynamic-onnxruntime" and metadata["job"]["quantize"] == "onnx-int8"
    int8 = pd.read_parquet(output)
    assert int8["status"].tolist() == reference["status"].tolist()
    ok = reference["status"] == "ok"
    fp32_probs, int8_probs = np.stack(reference["probs"][ok]), np.stack(int8["probs"][ok])
    difference = np.abs(fp32_probs - int8_probs).max()
    assert 0 < difference < 0.05  # rounded differently, not a different model
    # The tiny test model is barely trained (small margins): labels may flip only where fp32's margin is that small.
    top2 = np.sort(fp32_probs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * difference
    assert (int8["label"][ok].to_numpy()[clear] == reference["label"][ok].to_numpy()[clear]).all()


def test_onnx_int8_graphs_are_exported_once_per_run_and_reused_by_the_next(tiny_run_dir, unlabeled_xlsx, tmp_path):
    env = {"WEIBOLABEL_CACHE": str(tmp_path / "cache")}

    def label(name: str) -> tuple[str, pd.DataFrame]:
        output = tmp_path / name
        args = label_args(unlabeled_xlsx, tiny_run_dir, output, "--quantize", "onnx-int8")
        result = launch_job("label_corpus.py", args, num_processes=2, env=env)
        return result.stdout + result.stderr, pd.read_parquet(output)

    # Two processes: the main one exports the three folds, the other reads them from the cache.
    log, first = label("first.parquet")
    assert "process 0: 0 graph(s) read from the cache" in log and "3 exported" in log
    assert "process 1: 3 graph(s) read from the cache" in log
    assert len(list((tmp_path / "cache" / "onnx-int8").glob("*.onnx"))) == 3
    # The next run with the same model exports nothing, and labels as the first did.
    log, second = label("second.parquet")
    assert "process 0: 3 graph(s) read from the cache" in log and "process 1: 3 graph(s) read" in log
    pd.testing.assert_frame_equal(second, first)


def test_single_checkpoint_directory_as_model(tiny_run_dir, unlabeled_xlsx, reference, tmp_path):
    output = tmp_path / "fold0.parquet"
    launch_job("label_corpus.py", label_args(unlabeled_xlsx, tiny_run_dir / "fold_0", output))
    single = pd.read_parquet(output)
    assert single["row_id"].tolist() == list(range(46))
    assert single["status"].tolist() == reference["status"].tolist()
    assert read_metadata(output)["members"] == ["."]


# --------------------------------------------------------------------------------------------- kill and resume
def test_killed_run_resumes_to_the_uninterrupted_result(tiny_run_dir, tmp_path):
    source = tmp_path / "big.parquet"
    num_rows = 800
    pd.DataFrame({"Sentence": make_labeled_rows(num_rows, seed=11)["Sentence"]}).to_parquet(source)
    reference = tmp_path / "reference.parquet"
    launch_job("label_corpus.py", label_args(source, tiny_run_dir, reference))

    output = tmp_path / "resumed.parquet"
    parts = parts_dir(output)
    with open(tmp_path / "killed.log", "w") as log:
        process = start_job(
            "label_corpus.py", label_args(source, tiny_run_dir, output), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and len(list(parts.glob("part-*.done"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the job finished before it could be killed; give it more rows"
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = sorted(parts.glob("part-*.done"))
    num_chunks = -(-num_rows // 8)
    assert 3 <= len(done) < num_chunks
    assert not output.exists()

    # Leftovers of the kill that must not count: a half-written temp part, and a part without its .done record.
    (parts / ".part-00001.parquet.99999.tmp").write_bytes(b"PAR1 half written")
    (parts / f"part-{num_chunks - 1:05d}.parquet").write_bytes(b"PAR1 garbage")
    assert not (parts / f"part-{num_chunks - 1:05d}.done").exists()

    launch_job("label_corpus.py", label_args(source, tiny_run_dir, output), num_processes=2)
    resumed = pd.read_parquet(output)
    assert resumed["row_id"].tolist() == list(range(num_rows))  # no duplicate, no missing row
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(reference))
    assert not parts.exists()


# --------------------------------------------------------------------------------------------- user errors
@pytest.mark.parametrize("case", ["missing_input", "missing_text_column", "model_without_head", "existing_output"])
def test_bad_input_writes_nothing_and_exits_2(case, tiny_run_dir, tiny_base_model_dir, unlabeled_xlsx, tmp_path):
    output = tmp_path / "out.parquet"
    args = label_args(unlabeled_xlsx, tiny_run_dir, output)
    expected = {
        "missing_input": "Input not found",
        "missing_text_column": "no column 'Text'",
        "model_without_head": "without a classification head",
        "existing_output": "--overwrite",
    }[case]
    if case == "missing_input":
        args = label_args(tmp_path / "nope.xlsx", tiny_run_dir, output)
    elif case == "missing_text_column":
        args += ["--text_column", "Text"]
    elif case == "model_without_head":
        args = label_args(unlabeled_xlsx, tiny_base_model_dir, output)
    elif case == "existing_output":
        output.write_bytes(b"keep me")
    result = launch_job("label_corpus.py", args, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    if case == "existing_output":
        assert output.read_bytes() == b"keep me"
        assert "already exists" in result.stderr
    else:
        assert not output.exists()
    assert not parts_dir(output).exists()


# --------------------------------------------------------------------------------------------- inputs
def test_gold_column_agreement_and_carried_columns(tiny_run_dir, tmp_path):
    table = make_labeled_rows(12, seed=5)
    table["user_id"] = [1000 + i for i in range(12)]
    table["date"] = [f"2024-01-{i + 1:02d}" for i in range(12)]
    source = tmp_path / "with_gold.xlsx"
    table.to_excel(source, index=False)
    output = tmp_path / "gold.parquet"
    result = launch_job(
        "label_corpus.py", label_args(source, tiny_run_dir, output, "--carry_columns", "user_id", "date")
    )
    assert "agreement with gold on 12 rows" in result.stderr
    labeled = pd.read_parquet(output)
    assert labeled["gold_label"].tolist() == table["Label"].tolist()
    assert labeled["user_id"].tolist() == [str(v) for v in table["user_id"]]
    assert labeled["date"].tolist() == table["date"].tolist()
    accuracy = float((labeled["gold_label"] == labeled["label"]).mean())
    assert f"accuracy {accuracy:.4f}" in result.stderr


def test_directory_of_csv_and_txt_inputs_gives_source_columns_and_global_row_ids(tiny_run_dir, tmp_path):
    directory = tmp_path / "inputs"
    directory.mkdir()
    csv_texts = ["主持人讲得真好", "越王勾践剑好锋利", "", "文化自信", "转发微博"]
    pd.DataFrame({"Sentence": csv_texts}).to_csv(directory / "a.csv", index=False)
    txt_texts = ["兵马俑好震撼", "早上好呀", "为祖国感到骄傲"]
    (directory / "b.txt").write_text("\n".join(txt_texts) + "\n", encoding="utf-8")
    output = tmp_path / "csv_txt.parquet"
    launch_job("label_corpus.py", label_args(directory, tiny_run_dir, output))
    labeled = pd.read_parquet(output)
    assert labeled["row_id"].tolist() == list(range(8))
    assert labeled["source_file"].tolist() == [str(directory / "a.csv")] * 5 + [str(directory / "b.txt")] * 3
    assert labeled["source_row"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert labeled["text"].tolist()[3:] == ["文化自信", "转发微博", *txt_texts]
    assert labeled["status"].tolist() == ["ok", "ok", "empty", "ok", "ok", "ok", "ok", "ok"]
    assert pd.isna(labeled.loc[2, "label"])
    assert read_metadata(output)["inputs"] == [str(directory / "a.csv"), str(directory / "b.txt")]


def test_processes_reading_their_own_chunks_of_mixed_inputs_agree_with_one(tiny_run_dir, tmp_path):
    """Each process reads only its chunks (CSV rows, text lines, Parquet row groups, and the workbook's Parquet
    copy that the main process makes), with chunks across file boundaries: the same file as one process."""
    directory = tmp_path / "inputs"
    directory.mkdir()
    texts = make_labeled_rows(30, seed=3)["Sentence"].tolist()
    pd.DataFrame({"Sentence": texts[:7]}).to_csv(directory / "a.csv", index=False)
    (directory / "b.txt").write_text("\n".join(texts[7:12]) + "\n", encoding="utf-8")
    pd.DataFrame({"Sentence": texts[12:23]}).to_parquet(directory / "c.parquet", row_group_size=4)
    pd.DataFrame({"Sentence": texts[23:]}).to_excel(directory / "d.xlsx", index=False)
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    launch_job("label_corpus.py", label_args(directory, tiny_run_dir, one))
    launch_job("label_corpus.py", label_args(directory, tiny_run_dir, two), num_processes=2)
    labeled = pd.read_parquet(two)
    pd.testing.assert_frame_equal(labeled, pd.read_parquet(one))
    assert labeled["text"].tolist() == texts
    assert labeled["source_row"].tolist() == [*range(7), *range(5), *range(11), *range(7)]
    for output in (one, two):  # the workbook's copy goes with the parts
        assert not output.with_name(output.name + ".inputs").exists() and not parts_dir(output).exists()


# --------------------------------------------------------------------------------------------- predict.py
def run_predict(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return launch_job("predict.py", args, timeout=300, check=False, input=stdin)


def test_predict_prints_a_table_for_comments(tiny_run_dir):
    result = run_predict(["--model", str(tiny_run_dir), "评论一", "评论二"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for name in NAMES:
        assert f"p({name})" in lines[0]
    for line, comment in zip(lines[1:], ["评论一", "评论二"]):
        assert comment in line
        assert any(name in line for name in NAMES)
        assert "ok" in line


def test_predict_reads_stdin(tiny_run_dir):
    result = run_predict(["--model", str(tiny_run_dir / "fold_0")], stdin="好看\n转发微博\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert "好看" in lines[1] and "转发微博" in lines[2]
    probabilities = [float(v) for v in lines[1].split()[3:7]]
    assert sum(probabilities) == pytest.approx(1.0, abs=0.01)
