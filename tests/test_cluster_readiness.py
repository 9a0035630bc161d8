"""Ready for a GPU cluster without a GPU here: how slurm/launch.sh counts a node's GPUs (a fake `nvidia-smi` on PATH
and SLURM's variables, through real bash), the check that every node sees the output directory (two "nodes" as two
real launches, one of them with its own private scratch mounted over the directory), the merge's wait for parts
that a network filesystem shows late, and each process reading only its own chunks of the input."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weibolabel.data import tables as tables_module
from weibolabel.labeling.corpus import Corpus, copy_spreadsheets
from weibolabel.labeling.parts import PartStore
from weibolabel.run.launch import limit_tokenizer_threads, tokenizer_threads
from weibolabel.run.layout import ensure_writable, write_probe_path
from weibolabel.util.errors import UserError

from helpers import REPO
from helpers.jobs import JOBS, free_port, job_env, private_mount_possible

LAUNCH = REPO / "slurm" / "launch.sh"


# --------------------------------------------------------------------------------------------- GPU counting
def fake_nvidia_smi(directory: Path, gpus: int, fails: bool = False) -> Path:
    """A `nvidia-smi` that lists `gpus` GPUs the way the real one does (or fails like a node without a driver)."""
    directory.mkdir(exist_ok=True)
    script = directory / "nvidia-smi"
    if fails:
        body = 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n'
    else:
        lines = "".join(f'echo "GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i}aa5e1f2)"\n' for i in range(gpus))
        # MIG instances are listed indented below their GPU: they must not count as GPUs.
        body = lines + 'echo "  MIG 1g.10gb     Device  0: (UUID: MIG-0b9c)"\n'
    script.write_text(f"#!/bin/bash\n[[ $1 == -L ]] || exit 1\n{body}")
    script.chmod(0o755)
    return directory


def launch_line(env: dict[str, str], bin_dir: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{bin_dir}:{os.environ['PATH']}" if bin_dir else os.environ["PATH"]
    base = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "SLURM_JOB_ID": "42", "SLURM_NNODES": "1"}
    return subprocess.run(
        ["bash", str(LAUNCH), "node", "--print-command", "jobs/label_corpus.py"],
        capture_output=True,
        text=True,
        env={**base, "SLURM_NODEID": "0", **env},
        cwd=REPO,
    )


def processes(result: subprocess.CompletedProcess) -> tuple[int, bool]:
    """(--num_processes, runs on GPUs) of a printed launch line."""
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    return int(command[command.index("--num_processes") + 1]), command[0] != "env"  # CPU runs set ACCELERATE_USE_CPU


def test_whole_node_without_gres_counts_the_gpus_nvidia_smi_lists(tmp_path):
    # A whole-node allocation without --gres: SLURM sets no GPU variable and no CUDA_VISIBLE_DEVICES.
    assert processes(launch_line({}, fake_nvidia_smi(tmp_path / "bin", 4))) == (4, True)
    assert processes(launch_line({}, fake_nvidia_smi(tmp_path / "one", 1))) == (1, True)
    # No nvidia-smi, or one that cannot reach a driver: a CPU node, 2 gloo processes.
    assert processes(launch_line({})) == (2, False)
    assert processes(launch_line({}, fake_nvidia_smi(tmp_path / "broken", 0, fails=True))) == (2, False)


def test_slurm_and_cuda_visible_devices_win_over_nvidia_smi(tmp_path):
    four = fake_nvidia_smi(tmp_path / "bin", 4)
    # --gres=gpu:2 on a 4-GPU node: SLURM's count, not the node's.
    assert processes(launch_line({"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "1,3"}, four)) == (2, True)
    assert processes(launch_line({"SLURM_GPUS_PER_NODE": "h100:3"}, four)) == (3, True)
    # A CUDA_VISIBLE_DEVICES set by hand hides GPUs from CUDA, but not from nvidia-smi: it decides.
    assert processes(launch_line({"CUDA_VISIBLE_DEVICES": "0,2"}, four)) == (2, True)
    assert processes(launch_line({"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d,GPU-5e6f"}, four)) == (3, True)
    assert processes(launch_line({"CUDA_VISIBLE_DEVICES": "0,-1,2"}, four)) == (1, True)  # CUDA stops at -1
    for hidden in ("", "NoDevFiles", "-1"):
        assert processes(launch_line({"CUDA_VISIBLE_DEVICES": hidden}, four)) == (2, False), hidden
    assert processes(launch_line({"GPUS_PER_NODE": "8"}, four)) == (8, True)  # the user's word is final


def test_more_processes_than_gpus_is_refused_with_what_to_change(tmp_path):
    four = fake_nvidia_smi(tmp_path / "bin", 4)
    assert processes(launch_line({"PROCS_PER_NODE": "2"}, four)) == (2, True)  # fewer is fine
    for env in ({"PROCS_PER_NODE": "8"}, {"PROCS_PER_NODE": "8", "SLURM_GPUS_ON_NODE": "4"}):
        result = launch_line(env, four)
        assert result.returncode == 2 and result.stdout == ""
        assert "PROCS_PER_NODE=8 but node" in result.stderr and "has 4 GPU(s)" in result.stderr
        assert "Duplicate GPU" in result.stderr and "Set PROCS_PER_NODE=4 or less" in result.stderr
        assert "--gres=gpu:8" in result.stderr
    # On a CPU node any count is allowed.
    assert processes(launch_line({"PROCS_PER_NODE": "8"})) == (8, False)


def check_same_gpus(counts: str, procs_per_node: str | None = None) -> subprocess.CompletedProcess:
    """The batch script's check of every node's `launch.sh gpus` line, as a sourced shell function."""
    env = {"PATH": os.environ["PATH"], **({"PROCS_PER_NODE": procs_per_node} if procs_per_node else {})}
    return subprocess.run(
        ["bash", "-c", f'source {shlex.quote(str(LAUNCH))} && check_same_gpus "$1" && echo same', "-", counts],
        capture_output=True,
        text=True,
        env=env,
    )


def test_nodes_with_different_gpu_counts_are_refused():
    assert check_same_gpus("gpu01 4\ngpu02 4").stdout == "same\n"
    result = check_same_gpus("gpu02 2\ngpu01 4")
    assert result.returncode == 2
    assert "different numbers of GPUs (gpu01: 4, gpu02: 2)" in result.stderr
    assert "Set PROCS_PER_NODE=2" in result.stderr and "rendezvous" in result.stderr
    # With as many processes everywhere as the smallest node has GPUs, the counts may differ.
    assert check_same_gpus("gpu01 4\ngpu02 2", procs_per_node="2").stdout == "same\n"
    assert check_same_gpus("gpu01 4\ngpu02 2", procs_per_node="4").returncode == 2
    mixed = check_same_gpus("gpu01 4\ncpu07 0", procs_per_node="1")
    assert mixed.returncode == 2 and "some nodes have GPUs and some have none" in mixed.stderr


def test_gpus_mode_prints_the_node_and_its_count(tmp_path):
    env = {"PATH": f"{fake_nvidia_smi(tmp_path / 'bin', 3)}:{os.environ['PATH']}", "SLURMD_NODENAME": "gpu05"}
    result = subprocess.run(["bash", str(LAUNCH), "gpus"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "gpu05 3\n"


# --------------------------------------------------------------------------------------------- shared filesystem
def test_write_probe_is_unique_per_host(tmp_path, monkeypatch):
    """Process ids repeat across nodes: a probe named by pid alone is removed by another node's probe."""
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    other_node_probe = write_probe_path(tmp_path)
    other_node_probe.write_bytes(b"x")  # node B, same pid, is between its write and its unlink
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    ensure_writable(tmp_path)
    assert other_node_probe.exists()  # node A's probe did not touch it
    assert [p.name for p in tmp_path.iterdir()] == [other_node_probe.name]


def part_frame(first: int, rows: int) -> pd.DataFrame:
    return pd.DataFrame({"row_id": np.arange(first, first + rows, dtype=np.int64), "text": ["x"] * rows})


SCHEMA = pa.schema([pa.field("row_id", pa.int64(), nullable=False), pa.field("text", pa.string())])


def two_chunk_store(tmp_path: Path) -> PartStore:
    store = PartStore(tmp_path / "out.parquet", SCHEMA)
    store.prepare({"job": 1}, overwrite=False)
    store.write(0, part_frame(0, 3), {})
    return store


def test_merge_waits_for_parts_finished_on_another_node(tmp_path):
    store = two_chunk_store(tmp_path)
    # Chunk 1's part shows up 1.5 s late, as on an NFS client that cached the directory's listing.
    late = threading.Timer(1.5, lambda: store.write(1, part_frame(3, 2), {}))
    late.start()
    started = time.monotonic()
    store.merge(2, 5, {}, finished_on={0: "node-a", 1: "node-b"}, wait_seconds=30)
    late.join()
    assert 1.4 < time.monotonic() - started < 10
    assert pd.read_parquet(tmp_path / "out.parquet")["row_id"].tolist() == [0, 1, 2, 3, 4]


def test_merge_names_the_node_whose_parts_never_appear(tmp_path):
    store = two_chunk_store(tmp_path)
    with pytest.raises(UserError) as raised:
        store.merge(2, 5, {}, finished_on={0: "node-a", 1: "node-b"}, wait_seconds=1)
    message = str(raised.value)
    assert "chunks [1] were finished on node(s) node-b" in message and "not shared by the nodes" in message
    # A chunk nobody reported finished is not waited for.
    started = time.monotonic()
    with pytest.raises(UserError, match=r"chunks \[1\] of 2 are not finished"):
        store.merge(2, 5, {}, finished_on={0: "node-a"}, wait_seconds=30)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "out.parquet").exists()


def launch_two_nodes(job: str, args: list[str], scratch: Path, timeout: int = 240) -> list[subprocess.CompletedProcess]:
    """The job as a 2-node run: two real `accelerate launch` (machine ranks 0 and 1, one process each) on this
    machine; "node" 1 gets its own empty tmpfs mounted over `scratch`, as if it were node-local storage."""
    port = str(free_port())
    env = job_env(ACCELERATE_USE_CPU="true")
    launches = []
    for machine in (0, 1):
        command = [
            *[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2"],
            *["--machine_rank", str(machine), "--num_processes", "2", "--main_process_ip", "127.0.0.1"],
            *["--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no"],
            str(JOBS / job),
            *args,
        ]
        if machine == 1:
            mount = f'mount -t tmpfs tmpfs {shlex.quote(str(scratch))} && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "-", *command]
        launches.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        )
    results = []
    for launch in launches:
        try:
            stdout, stderr = launch.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in launches:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(launch.args, launch.returncode, stdout, stderr))
    return results


@pytest.mark.slow
@pytest.mark.skipif(not private_mount_possible(), reason="needs root and `unshare --mount` for a private tmpfs")
@pytest.mark.parametrize("job", ["label_corpus.py", "train.py"])
def test_output_on_node_local_scratch_stops_both_nodes_with_one_message(
    job, tmp_path, tiny_run_dir, tiny_base_model_dir, labeled_xlsx, unlabeled_xlsx
):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if job == "label_corpus.py":
        args = ["--input", str(unlabeled_xlsx), "--model", str(tiny_run_dir), "--output", str(scratch / "l.parquet")]
        option = "--output"
    else:
        args = ["--data", str(labeled_xlsx), "--model_name_or_path", str(tiny_base_model_dir)]
        args += ["--output_dir", str(scratch), "--num_folds", "2", "--num_epochs", "1"]
        option = "--output_dir"
    results = launch_two_nodes(job, args, scratch)
    for machine, result in enumerate(results):
        assert result.returncode != 0, f"node {machine} did not stop\n{(result.stdout + result.stderr)[-4000:]}"
    # One message, from the main process (both stopped with status 2 instead of failing later or waiting).
    log = results[0].stdout + results[0].stderr
    assert f"{scratch} is not shared by all nodes" in log, log[-4000:]
    assert "process(es) 1" in log and f"{option} must be on a filesystem that every node mounts" in log
    # accelerate's launcher prints its own traceback when a worker exits non-zero; none comes from the job's code.
    assert "lib/weibolabel/" not in log and f'File "{REPO / "jobs"}' not in log
    assert "exitcode  : 2" in results[1].stderr, results[1].stderr[-4000:]  # node 1's process: a user error, no crash
    # Nothing was labeled or trained: the check runs before any model work.
    assert sorted(p.name for p in scratch.iterdir() if not p.name.startswith(".")) in ([], ["run_identity.json"])
    assert not list(scratch.glob(".shared-check-*"))


# --------------------------------------------------------------------------------------------- per-rank reading
def share(corpus: Corpus, chunk_size: int, rank: int, world: int) -> pd.DataFrame:
    chunks = list(corpus.iter_chunks(chunk_size, wanted=lambda c: c % world == rank))
    assert all(chunk.index % world == rank for chunk in chunks)
    assert all((chunk.rows["row_id"] // chunk_size == chunk.index).all() for chunk in chunks)
    return pd.concat([chunk.rows for chunk in chunks], ignore_index=True) if chunks else pd.DataFrame()


def assert_shares_make_the_whole(corpus: Corpus, chunk_size: int, world: int) -> None:
    whole = pd.concat([chunk.rows for chunk in corpus.iter_chunks(chunk_size)], ignore_index=True)
    assert whole["row_id"].tolist() == list(range(corpus.num_rows))
    shares = pd.concat([share(corpus, chunk_size, rank, world) for rank in range(world)], ignore_index=True)
    pd.testing.assert_frame_equal(shares.sort_values("row_id").reset_index(drop=True), whole)


@pytest.fixture
def mixed_inputs(tmp_path) -> list[Path]:
    """A CSV with a header below a title row, a quoted multi-line comment and a blank row; a text file; a Parquet
    file of several row groups; a workbook with empty and numeric cells."""
    csv = tmp_path / "a.csv"
    csv.write_text(
        '导出于 2024-05-01\nSentence,show\n"第一行\n第二行",国家宝藏\n好看,故宫\n,\n"逗号,也在",只此青绿\n末行,x\n'
    )
    txt = tmp_path / "b.txt"
    txt.write_text("一\n二\n\n四\n五\n", encoding="utf-8")
    parquet = tmp_path / "c.parquet"
    texts = [f"评论{i}" for i in range(11)]
    pd.DataFrame({"Sentence": texts, "show": ["s"] * 11}).to_parquet(parquet, row_group_size=3)
    xlsx = tmp_path / "d.xlsx"
    pd.DataFrame({"Sentence": ["甲", None, 12, "丁", 3.5, "己", "庚"], "show": list("abcdefg")}).to_excel(
        xlsx, index=False
    )
    return [csv, txt, parquet, xlsx]


def test_each_share_is_its_chunks_and_together_the_whole_input(mixed_inputs, tmp_path):
    csv, others = mixed_inputs[0], mixed_inputs[1:]
    for chunk_size in (1, 2, 4, 5):
        for world in (2, 3):
            assert_shares_make_the_whole(Corpus([csv], "Sentence", ["show"], None, header_row=2), chunk_size, world)
            # Chunks cross file boundaries; the workbook is read from its Parquet copy.
            copies = copy_spreadsheets(others, tmp_path / "copies", None, 1, chunk_size)
            corpus = Corpus(others, "Sentence", [], None, copies=copies)
            assert corpus.row_counts == [5, 11, 7]
            assert_shares_make_the_whole(corpus, chunk_size, world)
    csv_rows = Corpus([csv], "Sentence", ["show"], None, header_row=2)
    assert [r.rows["text"].tolist() for r in csv_rows.iter_chunks(2, wanted=lambda c: c == 0)] == [
        ["第一行\n第二行", "好看"]
    ]


def test_a_process_parses_only_its_own_csv_rows(mixed_inputs, monkeypatch):
    read_csv, parsed = pd.read_csv, []

    def counting_read_csv(*args, **kwargs):
        for frame in read_csv(*args, **kwargs):
            parsed.append(len(frame))
            yield frame

    corpus = Corpus([mixed_inputs[0]], "Sentence", [], None, header_row=2)
    assert corpus.num_rows == 5
    monkeypatch.setattr(tables_module.pd, "read_csv", counting_read_csv)
    rows = share(corpus, 2, rank=1, world=2)  # chunk 1 only: rows 2 and 3
    assert rows["source_row"].tolist() == [2, 3]
    assert sum(parsed) == 2  # pandas built rows for that chunk alone


def test_a_process_reads_only_its_own_parquet_row_groups(tmp_path, monkeypatch):
    path = tmp_path / "big.parquet"
    pd.DataFrame({"Sentence": [f"评论{i}" for i in range(40)]}).to_parquet(path, row_group_size=5)
    corpus = Corpus([path], "Sentence", [], None)
    iter_batches, groups = pq.ParquetFile.iter_batches, []

    def recording_iter_batches(self, *args, row_groups=None, **kwargs):
        groups.extend(row_groups)
        return iter_batches(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", recording_iter_batches)
    rows = share(corpus, 10, rank=1, world=4)  # chunk 1: rows 10-19, row groups 2 and 3 of 8
    assert rows["row_id"].tolist() == list(range(10, 20))
    assert groups == [2, 3]


def test_processes_read_a_workbook_from_its_copy_never_the_workbook(mixed_inputs, tmp_path):
    xlsx = mixed_inputs[3]
    copies = copy_spreadsheets([xlsx], tmp_path / "copies", None, 1, 2)
    assert pq.ParquetFile(copies[xlsx]).metadata.num_row_groups == 4  # one row group per chunk
    # The copy is made once: a resumed run keeps it while the workbook is unchanged.
    made = copies[xlsx].stat().st_mtime_ns
    assert copy_spreadsheets([xlsx], tmp_path / "copies", None, 1, 2) == copies
    assert copies[xlsx].stat().st_mtime_ns == made
    counted = Corpus([xlsx], "Sentence", ["show"], None, copies=copies).row_counts  # the main process
    direct = pd.concat([c.rows for c in Corpus([xlsx], "Sentence", ["show"], None).iter_chunks(2)])
    xlsx.write_bytes(b"not a workbook any more")  # another process could not parse it if it tried
    corpus = Corpus([xlsx], "Sentence", ["show"], None, copies=copies, row_counts=counted)
    rows = share(corpus, 2, rank=1, world=2)
    assert rows["row_id"].tolist() == [2, 3, 6] and rows["source_row"].tolist() == [2, 3, 6]
    assert rows["text"].tolist() == ["12", "丁", "庚"]  # cells as text, as the labeling reads them
    assert direct["text"].tolist()[2] == 12
    assert rows["show"].tolist() == ["c", "d", "g"]


def test_tokenizer_threads_are_shared_out_between_a_nodes_processes(monkeypatch):
    assert tokenizer_threads(cpus=32, local_processes=8) == 4
    assert tokenizer_threads(cpus=2, local_processes=8) == 1
    assert tokenizer_threads(cpus=16, local_processes=1) == 16
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # what torchrun sets for 2 processes on this node
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)))
    assert limit_tokenizer_threads() == 6
    assert os.environ["RAYON_NUM_THREADS"] == "6"
    monkeypatch.setenv("RAYON_NUM_THREADS", "3")  # the user's setting is kept
    assert limit_tokenizer_threads() == 3
