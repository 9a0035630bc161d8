"""Launching and re-launching, with real processes and files: a bad input ends `scripts/launch.sh` with the job's
own message (the inputs are checked before any process starts); a finished job run again is a no-op; two runs on
one output do not interleave (a lock naming its holder, taken over once the holder is gone); and the workers of a
launcher killed with SIGKILL stop instead of running on unsupervised."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from weibolabel.run.lock import LOCK_HEARTBEAT_S, LOCK_STALE_HEARTBEATS, output_lock_path, training_lock_path

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.jobs import (
    JOBS,
    LOCK_CONTENDER,
    SLOW_WRAPPER,
    job_env,
    label_args,
    last_line,
    launch_job,
    log_of,
    parts_dir,
    start_job,
    train_args,
)

HOST = socket.gethostname()


def slow_job(tmp_path: Path, script: str, args: list[str], num_processes: int = 1, env=None):
    """The job started in the background through the pausing wrapper, its output in a file. Every process of it
    waits at each safe point (after a training step, after a labeled chunk) while `process.gate` exists: a test
    acts while the job is held there, and `process.gate.unlink()` lets it go on. Timed pauses instead raced the
    test's own steps on a loaded machine."""
    log = open(tmp_path / f"slow-{script}-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115 (closed by the test)
    gate = tmp_path / f"gate-{time.monotonic_ns()}"
    gate.touch()
    process = start_job(
        str(SLOW_WRAPPER),
        [str(JOBS / script), *args],
        num_processes,
        env={"WEIBOLABEL_TEST_GATE": str(gate), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log, process.gate = log, gate
    return process


def wait_for(condition, process, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            process.log.seek(0)
            raise AssertionError(f"the job ended before {what}:\n{process.log.read()[-4000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def stop(process) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=60)
    process.log.close()


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.csv"
    pd.DataFrame({"Sentence": make_labeled_rows(48, seed=5)["Sentence"]}).to_csv(path, index=False)
    return path


def launch_script(job: str, args: list[str], processes: str = "2") -> subprocess.CompletedProcess:
    """The documented launch, `bash scripts/launch.sh jobs/<job> ARGS...`, with two CPU processes."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "launch.sh"), f"jobs/{job}", *args],
        capture_output=True,
        text=True,
        env=job_env(NUM_PROCESSES=processes),
        cwd=REPO,
        timeout=300,
    )


# ============================================================================== 1. one clean message on bad input
@pytest.mark.parametrize("job", ["train", "label_corpus"])
def test_launch_script_ends_with_the_jobs_message_and_starts_nothing(job, tmp_path, tiny_run_dir, corpus_csv):
    if job == "train":
        args = ["--data", "missing.xlsx", "--model_name_or_path", str(tiny_run_dir / "fold_0")]
        args += ["--output_dir", str(tmp_path / "run")]
        expected = "ERROR File not found: missing.xlsx"
    else:
        args = label_args(corpus_csv, tiny_run_dir, tmp_path / "labels.parquet", "--text_column", "Text")
        expected = "corpus.csv: no column 'Text' in the header (row 1)"
    # Two CPU processes (what the script starts on a machine without GPUs): torchrun would add its summary.
    result = launch_script(f"{job}.py", args)
    log = log_of(result)
    assert result.returncode == 2, log
    assert expected in last_line(result.stderr), log
    assert log.count(expected) == 1 and "Traceback" not in log and "ChildFailedError" not in log, log
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written: no run directory, parts, lock


def test_launch_script_runs_one_cpu_process_and_refuses_a_process_count_that_is_not_one(
    tmp_path, tiny_run_dir, corpus_csv
):
    # NUM_PROCESSES=1: accelerate's --multi_gpu launching refuses a single process, so the script uses --cpu.
    output = tmp_path / "one.parquet"
    result = launch_script("label_corpus.py", label_args(corpus_csv, tiny_run_dir, output), processes="1")
    assert result.returncode == 0, log_of(result)
    assert len(pd.read_parquet(output)) == 48
    assert json.loads(output.with_suffix(".summary.json").read_text())["processes"] == 1
    for bad in ("0", "two", "-1"):
        result = launch_script("label_corpus.py", label_args(corpus_csv, tiny_run_dir, tmp_path / "x.parquet"), bad)
        assert result.returncode == 2, log_of(result)
        assert last_line(result.stderr) == (
            f"error: NUM_PROCESSES={bad}: give the number of CPU processes, a whole number of 1 or more."
        )
        assert "Traceback" not in log_of(result)


def test_plain_single_process_accelerate_launch_with_quiet_ends_with_the_message(tmp_path):
    """What the docs say of `accelerate launch -q` for one process: no CalledProcessError traceback after the job's
    message, and accelerate's status 1 instead of the job's 2."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--cpu", "--num_processes", "1"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [str(REPO / "jobs" / "train.py"), "--data", "missing.xlsx", "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=job_env(), cwd=REPO, timeout=300)
    assert result.returncode == 1, log_of(result)
    assert last_line(result.stderr).endswith("File not found: missing.xlsx"), log_of(result)
    assert "Traceback" not in log_of(result) and "CalledProcessError" not in log_of(result)


def test_preflight_checks_what_the_job_checks_and_writes_nothing(tmp_path, tiny_run_dir, labeled_xlsx):
    def preflight(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "weibolabel.run.preflight", *args]
        return subprocess.run(command, capture_output=True, text=True, env=job_env(), cwd=tmp_path, timeout=120)

    model = json.loads((tiny_run_dir / "run_identity.json").read_text())["model_name_or_path"]
    train = str(REPO / "jobs" / "train.py")
    # A finished run with the same settings passes (the job then says it is complete); other settings do not.
    assert preflight(train, *train_args(labeled_xlsx, Path(model), tiny_run_dir)).returncode == 0
    changed = preflight(train, *train_args(labeled_xlsx, Path(model), tiny_run_dir, "--seed", "8"))
    assert changed.returncode == 2 and "different settings or data (seed: 7 -> 8)" in last_line(changed.stderr)
    # A bad label cell, named by file, row and column.
    bad = tmp_path / "bad.csv"
    rows = make_labeled_rows(12)
    rows.loc[3, "Label"] = 7
    rows.to_csv(bad, index=False)
    result = preflight(train, *train_args(bad, Path(model), tmp_path / "run"))
    assert result.returncode == 2 and str(bad) in result.stderr and "row 5" in result.stderr, result.stderr
    # A misspelt option: argparse's message, status 2, naming the job.
    typo = preflight(train, "--num_foldz", "3")
    assert typo.returncode == 2 and "train.py: error: unrecognized arguments: --num_foldz 3" in typo.stderr
    # Labeling from a spreadsheet: the job would copy it to Parquet; the check reads it and writes nothing.
    label = str(REPO / "jobs" / "label_corpus.py")
    output = tmp_path / "out" / "labels.parquet"
    output.parent.mkdir()
    assert preflight(label, *label_args(labeled_xlsx, tiny_run_dir, output)).returncode == 0
    assert list(output.parent.iterdir()) == []
    # A script without checks of its own passes unchecked.
    assert preflight(str(REPO / "jobs" / "compare_runs.py"), "--whatever").returncode == 0


# ============================================================================== 2. re-running a finished job
def test_rerun_of_a_finished_training_run_is_a_noop(tiny_run_dir, labeled_xlsx):
    model = json.loads((tiny_run_dir / "run_identity.json").read_text())["model_name_or_path"]
    watched = ["env.json", "report.md", "metrics.json", "config.yaml", "folds.csv", "fold_0/model.safetensors"]
    before = {name: (tiny_run_dir / name).stat().st_mtime_ns for name in watched}
    env_json = (tiny_run_dir / "env.json").read_text()
    result = launch_job("train.py", train_args(labeled_xlsx, Path(model), tiny_run_dir))
    assert "holds a finished training run with these settings and data: nothing to do" in log_of(result)
    assert {name: (tiny_run_dir / name).stat().st_mtime_ns for name in watched} == before
    assert (tiny_run_dir / "env.json").read_text() == env_json  # the run's own provenance, not the re-run's
    assert not training_lock_path(tiny_run_dir).exists()


def test_rerun_of_a_finished_labeling_job_is_a_noop_and_other_arguments_need_overwrite(
    tmp_path, tiny_run_dir, corpus_csv
):
    output = tmp_path / "labels.parquet"
    launch_job("label_corpus.py", label_args(corpus_csv, tiny_run_dir, output))
    written = output.read_bytes()
    modified = output.stat().st_mtime_ns

    again = launch_job("label_corpus.py", label_args(corpus_csv, tiny_run_dir, output))
    assert "is complete and matches these arguments" in log_of(again) and "nothing to do" in log_of(again)
    assert output.stat().st_mtime_ns == modified and output.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.parquet", "labels.summary.json"]  # no parts, lock

    other = launch_job(
        "label_corpus.py", label_args(corpus_csv, tiny_run_dir, output, "--chunk_size", "16"), check=False
    )
    assert other.returncode == 2, log_of(other)
    assert "labeled with other settings (changed: chunk_size); pass --overwrite" in last_line(other.stderr)
    assert output.read_bytes() == written

    replaced = launch_job(
        "label_corpus.py", label_args(corpus_csv, tiny_run_dir, output, "--chunk_size", "16", "--overwrite")
    )
    assert "wrote" in log_of(replaced) and output.stat().st_mtime_ns != modified
    assert pq.read_table(output).num_rows == 48


# ============================================================================== 3. one run at a time per output
def test_a_second_training_run_is_refused_and_a_killed_runs_lock_is_taken_over(
    tmp_path, tiny_base_model_dir, labeled_xlsx
):
    out = tmp_path / "run"
    args = train_args(labeled_xlsx, tiny_base_model_dir, out)
    first = slow_job(tmp_path, "train.py", args, env={"SLURM_JOB_ID": "4242"})  # held after its first step
    try:
        wait_for(lambda: (out / "run_identity.json").exists(), first, what="the first run's claim")
        second = launch_job("train.py", args, check=False)
        assert second.returncode == 2, log_of(second)
        message = last_line(second.stderr)
        assert f"Another training run is writing to {out} (process {first.pid} on host {HOST}, SLURM job 4242" in (
            message
        )
        assert "Traceback" not in log_of(second)
        holder = json.loads(training_lock_path(out).read_text())
        assert holder["pid"] == first.pid and holder["slurm_job_id"] == "4242"
    finally:
        stop(first)  # SIGKILL: the lock stays behind, held by a process that is gone
    assert training_lock_path(out).exists()

    third = launch_job("train.py", args)
    assert f"taking over the lock {training_lock_path(out)}" in log_of(third)
    assert (out / "report.md").is_file() and not training_lock_path(out).exists()


def test_a_second_labeling_run_is_refused_while_the_first_finishes(tmp_path, tiny_run_dir, corpus_csv):
    output = tmp_path / "labels.parquet"
    args = label_args(corpus_csv, tiny_run_dir, output)
    first = slow_job(tmp_path, "label_corpus.py", args)  # held after its first chunk until the gate goes
    try:
        wait_for(lambda: output_lock_path(output).exists(), first, what="the first run's lock")
        second = launch_job("label_corpus.py", args, check=False)
        assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
        assert second.returncode == 2, log_of(second)
        first.gate.unlink()
        assert f"Another labeling run is writing to {tmp_path} (process {first.pid} on host {HOST}" in (
            last_line(second.stderr)
        )
        assert first.wait(timeout=120) == 0
    finally:
        stop(first)
    assert pq.read_table(output).column("row_id").to_pylist() == list(range(48))
    assert not output_lock_path(output).exists()


def write_foreign_lock(path: Path, host: str, job: str, age_s: float) -> None:
    holder = {"host": host, "pid": 12345, "slurm_job_id": job, "started": "2026-01-01T00:00:00+00:00", "token": "x"}
    path.write_text(json.dumps(holder))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_a_lock_from_another_host_is_stale_only_without_its_heartbeat(tmp_path, tiny_run_dir, corpus_csv):
    output = tmp_path / "labels.parquet"
    lock = output_lock_path(output)
    label = [sys.executable, "-m", "weibolabel.run.preflight", str(REPO / "jobs" / "label_corpus.py")]
    label += label_args(corpus_csv, tiny_run_dir, output)

    def preflight(**env) -> subprocess.CompletedProcess:
        return subprocess.run(label, capture_output=True, text=True, env=job_env(**env), timeout=120)

    write_foreign_lock(lock, "node-elsewhere", "99", age_s=5)
    refused = preflight()
    assert refused.returncode == 2, refused.stderr
    assert "(process 12345 on host node-elsewhere, SLURM job 99, started 2026-01-01" in last_line(refused.stderr)
    # The same lock seen from a requeued run of job 99 itself: SLURM never runs a job twice at once.
    assert preflight(SLURM_JOB_ID="99").returncode == 0
    # No heartbeat for longer than the limit: the holder is gone.
    write_foreign_lock(lock, "node-elsewhere", "99", age_s=LOCK_HEARTBEAT_S * LOCK_STALE_HEARTBEATS + 30)
    assert preflight().returncode == 0


def test_the_holder_refreshes_its_lock_and_a_killed_holder_is_stale(tmp_path):
    lock = tmp_path / "out.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from weibolabel.run.lock import RunLock\n"
            "RunLock(heartbeat_s=0.2).acquire(Path(sys.argv[1]), 'test run'); print('held', flush=True)\n"
            "time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=job_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        long_ago = time.time() - 1000
        os.utime(lock, (long_ago, long_ago))
        time.sleep(1.0)
        assert time.time() - lock.stat().st_mtime < 5  # refreshed by the holder's heartbeat
        from weibolabel.run.lock import check_lock_free
        from weibolabel.util.errors import UserError

        with pytest.raises(UserError, match=rf"process {holder.pid} on host {HOST}"):
            check_lock_free(lock, "test run")
    finally:
        holder.kill()
        holder.wait()
    check_lock_free(lock, "test run")  # same host, process gone: stale at once


def test_two_runs_taking_over_one_stale_lock_at_once_end_with_one_holder(tmp_path):
    lock, go = tmp_path / "out.lock", tmp_path / "go"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_foreign_lock(lock, HOST, None, age_s=0)  # this host, and a process that has ended: stale
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "pid": int(gone.stdout)}))
    contenders = [
        subprocess.Popen([sys.executable, str(LOCK_CONTENDER), str(lock), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(2.0)  # all of them imported and waiting
    go.touch()
    outcomes = [process.communicate(timeout=60)[0] for process in contenders]
    assert sum(outcome.startswith("held") for outcome in outcomes) == 1, outcomes
    assert all(o.startswith("held") or "Another test run is writing to" in o for o in outcomes), outcomes


def test_every_process_of_a_refused_multi_process_run_exits_with_one_message(tmp_path, tiny_run_dir, corpus_csv):
    output = tmp_path / "labels.parquet"
    write_foreign_lock(output_lock_path(output), "node-elsewhere", "77", age_s=0)
    result = launch_job("label_corpus.py", label_args(corpus_csv, tiny_run_dir, output), 2, check=False)
    log = log_of(result)
    assert result.returncode != 0, log
    assert log.count("Another labeling run is writing to") == 1, log  # the main process's, heard by both
    assert "Connection closed by peer" not in log and "exitcode  : 2" in log, log
    assert not output.exists() and output_lock_path(output).exists()  # the holder's lock is left alone


# ============================================================================== 4. workers die with their launcher
def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_workers_stop_when_their_launcher_is_killed(tmp_path, tiny_run_dir, corpus_csv):
    output = tmp_path / "labels.parquet"
    parts = parts_dir(output)
    args = label_args(corpus_csv, tiny_run_dir, output)
    launcher = slow_job(tmp_path, "label_corpus.py", args, num_processes=2)  # each worker held after its first chunk
    try:
        wait_for(lambda: len(list(parts.glob("part-*.done"))) >= 2, launcher, timeout=180, what="two parts")
        workers = children_of(launcher.pid)
        assert len(workers) == 2, workers
        launcher.send_signal(signal.SIGKILL)  # the OOM killer, or kill -9 on the launcher
        launcher.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        running = [pid for pid in workers if alive(pid)]
    finally:
        for pid in children_of(launcher.pid) + workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        stop(launcher)
    assert running == [], "workers ran on after their launcher was killed"
    finished = len(list(parts.glob("part-*.done")))
    assert 2 <= finished < 6 and not output.exists()
    time.sleep(2.0)
    assert len(list(parts.glob("part-*.done"))) == finished  # nobody writes any more

    # The documented launch resumes it (its input check passes, the stopped run's lock is free again).
    result = launch_script("label_corpus.py", args)
    assert result.returncode == 0, log_of(result)[:6000]
    assert pq.read_table(output).column("row_id").to_pylist() == list(range(48))


# ============================================================================== 5. the workstation launcher's setup
def test_launch_script_meets_on_a_free_port_and_runs_offline(tmp_path):
    """Two jobs on one server must not both take port 29500, and a launch without SLURM sets the offline variables
    slurm/launch.sh sets (one function, export_job_environment, serves both)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "accelerate"  # prints what the launcher would run, and the environment it would run it in
    offline = "$HF_HUB_OFFLINE,$TRANSFORMERS_OFFLINE,$HF_DATASETS_OFFLINE"
    fake.write_text(f'#!/bin/bash\necho "$@"\necho "offline={offline}"\n')
    fake.chmod(0o755)
    job = tmp_path / "job.py"  # no preflight function: the launch goes straight on
    job.write_text("if __name__ == '__main__':\n    print('never run')\n")
    env = {**job_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "MAIN_PROCESS_PORT"):
        env.pop(variable, None)

    def launch(**extra: str) -> tuple[str, list[str]]:
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "launch.sh"), str(job)],
            capture_output=True,
            text=True,
            env={**env, **extra},
            cwd=REPO,
            timeout=120,
        )
        assert result.returncode == 0, log_of(result)
        command, offline = result.stdout.splitlines()
        words = command.split()
        return offline, words

    offline, first = launch()
    assert offline == "offline=1,1,1"
    port = int(first[first.index("--main_process_port") + 1])
    assert port != 29500 and 1024 < port < 65536
    with socket.socket() as taken:  # the first job's rendezvous holds its port: the second gets another
        taken.bind(("", port))
        taken.listen()
        _, second = launch()
        assert int(second[second.index("--main_process_port") + 1]) != port
    offline, chosen = launch(MAIN_PROCESS_PORT="29617", HF_HUB_OFFLINE="0")
    assert chosen[chosen.index("--main_process_port") + 1] == "29617" and offline == "offline=0,1,1"
    _, on_cpu = launch(DEVICE="cpu")
    assert on_cpu[-2:] == ["--device", "cpu"]  # DEVICE=cpu reaches the job as its option


def test_a_job_leaves_without_the_gloo_teardown_where_it_can_hang(tmp_path):
    """torch before 2.8 can deadlock destroying a gloo group (pytorch#154976): there exit_job leaves at once, with the
    job's status and its output flushed; from 2.8 on, or without a group, it is a plain sys.exit."""
    script = (
        "import sys, torch, torch.distributed as dist\n"
        "from weibolabel.run.launch import exit_job, gloo_teardown_can_hang\n"
        "assert not gloo_teardown_can_hang()\n"
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
        "torch.__version__ = sys.argv[1]\n"
        "print('hang' if gloo_teardown_can_hang() else 'safe', flush=False)\n"
        "exit_job(3)\n"
    )
    for version, expected in (("2.4.0+cu121", "hang"), ("2.8.0", "safe")):
        result = subprocess.run([sys.executable, "-c", script, version], capture_output=True, text=True, timeout=120)
        assert result.returncode == 3 and result.stdout.strip() == expected, (result.stdout, result.stderr)
