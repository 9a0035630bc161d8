"""Faults: signals and kills at chosen points of both jobs, full disks, unwritable outputs, non-finite losses and
out-of-memory errors. Kills are placed deterministically by a wrapper (helpers/scripts/kill_wrapper.py) that
patches the job's own functions from outside (no test hooks in the production code) and then runs the job as
`python jobs/<job>.py` would."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import signal
import subprocess
import time
import types
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from transformers.models.bert.modeling_bert import BertEmbeddings

from weibolabel.data.labels import load_label_schema
from weibolabel.model.inference import encode
from weibolabel.model.loading import load_pretrained_classifier, load_tokenizer
from weibolabel.run.config import TrainConfig
from weibolabel.run.launch import make_accelerator
from weibolabel.training.fold import Recipe, Split, evaluate, train_fold
from weibolabel.util.errors import UserError

from helpers.data import make_labeled_rows
from helpers.jobs import (
    CHUNK_SIZE,
    JOBS,
    KILL_WRAPPER,
    label_args,
    launch_job,
    load_job,
    log_of,
    parts_dir,
    start_job,
    train_args,
)
from helpers.outputs import assert_same_training_result

SCHEMA = load_label_schema(None)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """In-process job runs install their SIGTERM/SIGUSR1 handlers in the test process; put pytest's back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def killed_run(script: str, args: list[str], at: str, signame: str = "SIGKILL"):
    """jobs/<script> run to the signal that the kill wrapper sends it at `at` (see helpers/scripts/kill_wrapper.py)."""
    kill = {"WEIBOLABEL_TEST_KILL_AT": at, "WEIBOLABEL_TEST_SIGNAL": signame}
    return launch_job(str(KILL_WRAPPER), [str(JOBS / script), *args], check=False, env=kill)


# ================================================================================================ training
def test_training_sigterm_and_sigkill_then_resume_matches_an_uninterrupted_run(
    tmp_path, tiny_run_dir, tiny_base_model_dir, labeled_xlsx
):
    out = tmp_path / "resumed"
    args = train_args(labeled_xlsx, tiny_base_model_dir, out)

    # SIGTERM (SLURM's warning before the time limit) mid-epoch: the step finishes, the job exits 143.
    first = killed_run("train.py", args, "step:in fold 0, epoch 2, step 2", "SIGTERM")
    assert first.returncode == 143, log_of(first)
    assert "stopped on SIGTERM in fold 0, epoch 2, step 2" in log_of(first)
    assert "Re-run the same command to resume" in log_of(first)
    assert (out / "fold_0" / "resume" / "state.pt").is_file()
    assert not (out / "fold_0" / "fold_result.json").exists()

    # SIGKILL (no warning at all) in the next fold: only the epoch in flight is lost.
    second = killed_run("train.py", args, "step:in fold 1, epoch 2, step 1", "SIGKILL")
    assert second.returncode == -signal.SIGKILL, log_of(second)
    assert "fold 0: resuming after epoch 1" in log_of(second)
    assert (out / "fold_0" / "fold_result.json").is_file() and not (out / "fold_0" / "resume").exists()
    assert (out / "fold_1" / "resume" / "state.pt").is_file()
    # What a kill in the middle of saving leaves: a temporary file that must never be read.
    (out / "fold_1" / "resume" / "state.tmp").write_bytes(b"\x80half a pickle")

    third = launch_job("train.py", args)
    assert "fold 0: already finished, skipped" in log_of(third)
    assert "fold 1: resuming after epoch 1" in log_of(third)
    assert_same_training_result(tiny_run_dir, out)


def test_training_refuses_to_resume_with_other_settings_or_data(tmp_path, caplog, tiny_run_dir, labeled_xlsx):
    train = load_job("train")
    identity = (tiny_run_dir / "run_identity.json").read_text()
    model = json.loads(identity)["model_name_or_path"]

    code = train.main(train_args(labeled_xlsx, Path(model), tiny_run_dir, "--learning_rate", "2e-3"))
    assert code == 2
    assert f"{tiny_run_dir} already holds a training run with different settings" in caplog.text
    assert "learning_rate: 0.001 -> 0.002" in caplog.text and "pass another --output_dir" in caplog.text

    changed = tmp_path / "changed.xlsx"
    frame = pd.read_excel(labeled_xlsx)
    frame.loc[0, "Label"] = (frame.loc[0, "Label"] + 1) % 4
    frame.to_excel(changed, index=False)
    caplog.clear()
    assert train.main(train_args(changed, Path(model), tiny_run_dir)) == 2
    assert "data_sha256" in caplog.text
    assert (tiny_run_dir / "run_identity.json").read_text() == identity


def test_a_refusal_on_the_main_process_ends_every_process_with_one_message(tmp_path, tiny_run_dir, labeled_xlsx):
    # Only the main process checks the run directory; the other process must hear about the refusal and leave too,
    # not wait at a barrier for a process that has gone and die in gloo with a traceback.
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_identity.json").write_text((tiny_run_dir / "run_identity.json").read_text())
    model = json.loads((out / "run_identity.json").read_text())["model_name_or_path"]
    result = launch_job("train.py", train_args(labeled_xlsx, Path(model), out, "--seed", "8"), 2, check=False)
    log = log_of(result)
    assert result.returncode != 0, log[:3000]
    assert log.count("already holds a training run with different settings or data (seed: 7 -> 8)") == 1, log
    assert "Connection closed by peer" not in log and "[rank1]" not in log, log
    assert "exitcode  : 2" in log  # what torchrun reports for the processes (its own summary follows the message)


def test_non_finite_loss_names_fold_epoch_and_step(tmp_path, caplog, tiny_base_model_dir, labeled_xlsx):
    out = tmp_path / "nan"
    args = ["--data", str(labeled_xlsx), "--model_name_or_path", str(tiny_base_model_dir), "--output_dir", str(out)]
    args += ["--num_folds", "2", "--num_epochs", "1", "--learning_rate", "1e6", "--warmup_ratio", "0"]
    assert load_job("train").main([*args, "--max_length", "32", "--per_device_batch_size", "16"]) == 2
    assert "Non-finite loss (nan) in fold 0, epoch 1, step " in caplog.text
    assert "Lower --learning_rate" in caplog.text
    assert not (out / "fold_0" / "fold_result.json").exists()


@pytest.fixture
def small_fold(tiny_base_model_dir):
    """A tiny model and a few encoded rows, for calling train_fold directly."""
    tokenizer = load_tokenizer(str(tiny_base_model_dir))
    rows = make_labeled_rows(24)
    ids = encode(tokenizer, rows["Sentence"].tolist(), 32).input_ids
    labels = rows["Label"].to_numpy().copy()  # pandas hands out read-only arrays
    model = load_pretrained_classifier(str(tiny_base_model_dir), SCHEMA)
    config = TrainConfig(num_epochs=1, per_device_batch_size=4, eval_batch_size=8, max_length=32)
    accelerator, stop = make_accelerator(), types.SimpleNamespace(check=lambda where: None)

    def settings(state_file):  # train_fold's keyword arguments for fold 0
        recipe = Recipe.from_settings(config)
        return dict(
            recipe=recipe,
            accelerator=accelerator,
            fold=0,
            pad_id=tokenizer.pad_token_id,
            state_file=state_file,
            stop=stop,
        )

    return types.SimpleNamespace(
        model=model,
        train=Split(ids[:16], labels[:16]),
        validation=Split(ids[16:], labels[16:]),
        config=config,
        pad_id=tokenizer.pad_token_id,
        accelerator=accelerator,
        stop=stop,
        settings=settings,
    )


def _out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_training_out_of_memory_names_the_options_to_lower(tmp_path, monkeypatch, small_fold):
    f = small_fold
    monkeypatch.setattr(BertEmbeddings, "forward", _out_of_memory)  # the first step of any forward
    with pytest.raises(UserError) as caught:
        train_fold(f.model, f.train, f.validation, **f.settings(tmp_path / "s.pt"))
    message = str(caught.value)
    assert message.startswith("Out of GPU memory in fold 0, epoch 1, step 1 (a batch of 4 texts x ")
    assert "Lower --per_device_batch_size (e.g. to 2) and raise --gradient_accumulation_steps (e.g. to 2)" in message
    with pytest.raises(UserError, match=r"while scoring 8 texts with --eval_batch_size 8: lower --eval_batch_size"):
        evaluate(f.model, f.validation, f.pad_id, f.accelerator, 8)


def test_training_disk_full_and_damaged_state_are_clear_errors(tmp_path, monkeypatch, small_fold):
    f = small_fold
    state = tmp_path / "fold_0" / "resume" / "state.pt"

    def disk_full(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")  # what a full disk leaves: the start of the file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", disk_full)
        with pytest.raises(UserError) as caught:
            train_fold(f.model, f.train, f.validation, **f.settings(state))
    assert str(caught.value) == (
        f"No space left on device ({state}). Free space and re-run the same command; "
        "the fold resumes from its last saved epoch."
    )
    assert list(state.parent.iterdir()) == []  # neither a truncated state.pt nor its temporary file

    state.write_bytes(b"not a checkpoint")  # a damaged disk or a copy cut short
    with pytest.raises(UserError, match=r"(?s)state.pt is damaged and cannot be resumed from .* Delete the directory"):
        train_fold(f.model, f.train, f.validation, **f.settings(state))


def test_unwritable_output_fails_before_any_model_work(tmp_path, monkeypatch, caplog, labeled_xlsx, tiny_run_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")

    def no_model_work(*args, **kwargs):
        raise AssertionError("model work started before the output location was checked")

    train = load_job("train")
    monkeypatch.setattr("weibolabel.model.loading.load_tokenizer", no_model_work)  # the job imports it after its checks
    monkeypatch.setattr("weibolabel.training.fold.load_pretrained_classifier", no_model_work)
    assert train.main(train_args(labeled_xlsx, tmp_path / "model", blocker / "run")) == 2
    assert f"Cannot write to {blocker / 'run'}: Not a directory" in caplog.text
    assert "Pass a --output_dir in a directory you can write to" in caplog.text

    caplog.clear()
    label = load_job("label_corpus")
    monkeypatch.setattr("weibolabel.model.inference.load_ensemble", no_model_work)
    output = blocker / "sub" / "labels.parquet"
    args = ["--input", str(labeled_xlsx), "--model", str(tiny_run_dir), "--output", str(output)]
    assert label.main(args) == 2
    assert f"Cannot write to {blocker / 'sub'}: Not a directory" in caplog.text and "--output" in caplog.text
    assert not output.exists()


# ================================================================================================ labeling
@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory) -> Path:
    """120 ordinary rows and a few odd ones; with --chunk_size 8, 16 chunks."""
    texts = [*make_labeled_rows(120, seed=3)["Sentence"], "", "😭🙏", "中华文化" * 200, "转发微博"]
    texts += ["&lt;3 故宫", "   ", "@央视 https://t.cn/x", "12345"]
    path = tmp_path_factory.mktemp("corpus") / "corpus.csv"
    pd.DataFrame({"Sentence": texts, "show": [f"s{i % 5}" for i in range(len(texts))]}).to_csv(path, index=False)
    return path


def check_after_kill(output: Path, reference: pd.DataFrame) -> int:
    """No final file; every part with a completion record is whole and right. Returns the finished chunks."""
    assert not output.exists()
    parts = parts_dir(output)
    done = sorted(parts.glob("part-*.done"))
    for record in done:
        chunk = json.loads(record.read_text())["chunk"]
        part = pq.read_table(parts / f"part-{chunk:05d}.parquet").to_pandas()
        expected = reference.iloc[chunk * CHUNK_SIZE : (chunk + 1) * CHUNK_SIZE].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, expected, check_exact=True)
    return len(done)


def comparable_metadata(path: Path) -> dict:
    metadata = json.loads(pq.read_schema(path).metadata[b"weibolabel"])
    metadata.pop("time")
    return metadata


def test_labeling_killed_at_five_points_ends_identical_to_an_uninterrupted_run(tmp_path, tiny_run_dir, corpus_csv):
    reference_file = tmp_path / "reference.parquet"
    launch_job("label_corpus.py", [*label_args(corpus_csv, tiny_run_dir, reference_file), "--carry_columns", "show"])
    reference = pq.read_table(reference_file).to_pandas()
    num_chunks = -(-len(reference) // CHUNK_SIZE)
    assert num_chunks == 16

    output = tmp_path / "labels.parquet"
    args = [*label_args(corpus_csv, tiny_run_dir, output), "--carry_columns", "show"]
    parts = parts_dir(output)

    # 1. Half of chunk 2's part is on disk under its temporary name.
    result = killed_run("label_corpus.py", args, "part_tmp:2")
    assert result.returncode == -signal.SIGKILL, log_of(result)
    assert list(parts.glob(".part-00002.parquet.*.tmp")) and not (parts / "part-00002.parquet").exists()
    assert check_after_kill(output, reference) == 2

    # 2. Chunk 4's part is in place but its completion record is not; then the part is damaged on top of it.
    result = killed_run("label_corpus.py", args, "done_tmp:4")
    assert result.returncode == -signal.SIGKILL, log_of(result)
    assert (parts / "part-00004.parquet").is_file() and not (parts / "part-00004.done").exists()
    assert check_after_kill(output, reference) == 4
    damaged = parts / "part-00004.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])

    # 3. Right after chunk 6 is complete.
    result = killed_run("label_corpus.py", args, "after:6")
    assert result.returncode == -signal.SIGKILL, log_of(result)
    assert check_after_kill(output, reference) == 7

    # 4. At a random moment, from outside, as `kill -9` or the OOM killer would.
    slow = {"WEIBOLABEL_TEST_KILL_AT": "slow:0.3"}
    wrapped = [str(JOBS / "label_corpus.py"), *args]
    process = start_job(str(KILL_WRAPPER), wrapped, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(list(parts.glob("part-*.done"))) < 10 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(random.Random(7).uniform(0, 0.3))
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    finished = check_after_kill(output, reference)
    assert 10 <= finished < num_chunks

    # 5. During the merge: three parts copied into the merged file's temporary name.
    result = killed_run("label_corpus.py", args, "merge:3")
    assert result.returncode == -signal.SIGKILL, log_of(result)
    assert list(tmp_path.glob(f".{output.name}.*.tmp")), "the kill did not land in the merge"
    assert check_after_kill(output, reference) == num_chunks

    # The same command once more finishes the run: the file is the one an uninterrupted run writes.
    launch_job("label_corpus.py", args)
    assert not parts.exists()
    pd.testing.assert_frame_equal(pq.read_table(output).to_pandas(), reference, check_exact=True)
    assert pq.read_schema(output).equals(pq.read_schema(reference_file), check_metadata=False)
    assert comparable_metadata(output) == comparable_metadata(reference_file)


def test_labeling_parts_of_a_bf16_run_are_not_finished_in_fp32(tmp_path, monkeypatch, tiny_run_dir, corpus_csv):
    output = tmp_path / "labels.parquet"
    args = label_args(corpus_csv, tiny_run_dir, output)
    with monkeypatch.context() as patch:
        patch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
        result = killed_run("label_corpus.py", args, "after:1")
    assert result.returncode == -signal.SIGKILL, log_of(result)
    result = launch_job("label_corpus.py", args, check=False)
    assert result.returncode == 2, log_of(result)
    assert "unfinished parts of a labeling run with other settings (changed: precision)" in log_of(result)
    assert len(list(output.with_name(output.name + ".parts").glob("part-*.done"))) == 2  # kept for a bf16 re-run


def test_labeling_disk_full_leaves_no_final_file_and_resumes(tmp_path, monkeypatch, caplog, tiny_run_dir, corpus_csv):
    label = load_job("label_corpus")
    output = tmp_path / "labels.parquet"
    parts = parts_dir(output)
    args = label_args(corpus_csv, tiny_run_dir, output)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # Full while writing a part: the job stops at once, nothing half-written is left.
    with monkeypatch.context() as patch:
        patch.setattr(pq, "write_table", disk_full)
        assert label.main(args) == 2
    assert f"Could not write {parts / 'part-00000.parquet'}: No space left on device." in caplog.text
    assert "Free space and re-run to resume" in caplog.text
    assert not output.exists() and not list(parts.glob("*.parquet")) and not list(parts.glob(".*.tmp"))

    # Full during the merge: the parts are kept, the merged file's temporary name is removed.
    class FullDiskWriter(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            disk_full()

    caplog.clear()
    with monkeypatch.context() as patch:
        patch.setattr(pq, "ParquetWriter", FullDiskWriter)
        assert label.main(args) == 2
    expected = f"No space left on device ({output}). Free space and re-run the same command; finished chunks are kept."
    assert expected in caplog.text  # atomic_path names the file the full disk's error does not
    assert not output.exists() and not list(tmp_path.glob(f".{output.name}.*"))
    assert len(list(parts.glob("part-*.done"))) == 16

    # With space again, the same command only merges.
    caplog.clear()
    assert label.main(args) == 0
    table = pq.read_table(output)
    assert table.column("row_id").to_pylist() == list(range(128)) and not parts.exists()


def test_labeling_out_of_memory_names_the_options_to_lower(tmp_path, monkeypatch, caplog, tiny_run_dir, corpus_csv):
    monkeypatch.setattr(BertEmbeddings, "forward", _out_of_memory)  # the first step of any forward
    monkeypatch.setattr("weibolabel.model.loading.check_classify", lambda model: None)  # loading would meet it first
    output = tmp_path / "labels.parquet"
    args = [*label_args(corpus_csv, tiny_run_dir, output), "--batch_size", "64", "--max_tokens", "4096"]
    assert load_job("label_corpus").main(args) == 2
    assert "Out of GPU memory labeling chunk 0 with --batch_size 64 and --max_tokens 4096" in caplog.text
    assert "lower --max_tokens (e.g. to 2048" in caplog.text and "--batch_size" in caplog.text
    assert not output.exists()


@pytest.fixture(autouse=True)
def _job_logs_at_info(caplog):
    caplog.set_level(logging.INFO)
