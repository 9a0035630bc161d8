"""The SLURM submit scripts: syntax and shellcheck, the per-node `accelerate launch` line for a fake 2-node
allocation, and (marked `slurm`, root only) real runs through a local SLURM that .ci/local_cluster.sh brings up
in a temporary directory, with two nodes on this machine: a labeling job, a 2-node labeling job, a 2-node job on
nodes with different GPU counts (refused), labeling jobs pre-empted mid-run (time-limit warning, `scontrol
requeue`) that are requeued and resume to exactly the uninterrupted result, and a training job requeued in the
middle of a fold that resumes it.

Under CI=true (.ci/run sets it) a missing SLURM, shellcheck or scontrol fails these tests instead of skipping
them, so that a green CI run means they ran."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO
from helpers.data import make_labeled_rows
from helpers.jobs import launch_job

SLURM_DIR = REPO / "slurm"
BATCH_SCRIPTS = [SLURM_DIR / "train.sh", SLURM_DIR / "label_corpus.sh"]
SHELL_SCRIPTS = [
    *BATCH_SCRIPTS,
    SLURM_DIR / "launch.sh",
    SLURM_DIR / "doctor.sh",
    REPO / ".ci" / "local_cluster.sh",
    REPO / ".ci" / "slurm_setup.sh",
]
SCRIPT_IDS = [str(p.relative_to(REPO)) for p in SHELL_SCRIPTS]
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_unless_ci(reason: str) -> None:
    """Skip on a developer's machine; under CI a missing tool is a failure, not a quiet skip."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}: .ci/run installs it (.ci/slurm_setup.sh, as root)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------- static checks
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=SCRIPT_IDS)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=SCRIPT_IDS)
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        skip_unless_ci("shellcheck is not installed (apt-get install shellcheck; .ci/slurm_setup.sh does it)")
    # -x follows `source`d files; run from the repository root so relative source paths resolve.
    result = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("ci", ["true", ""], ids=["CI=true", "no-CI"])
def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(ci, tmp_path):
    """What makes a green CI run mean the shell and SLURM tests ran: pytest on this file, without shellcheck."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash"))  # shellcheck, sbatch & co. are not on this PATH
    env = {**os.environ, "PATH": str(bin_dir), "CI": ci}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_shellcheck"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    if ci:
        assert result.returncode == 1, result.stdout
        assert f"{len(SHELL_SCRIPTS)} failed" in result.stdout
        assert "CI=true and shellcheck is not installed" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        assert f"{len(SHELL_SCRIPTS)} skipped" in result.stdout


def sbatch_options(script: Path) -> dict[str, str]:
    options = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = line.split(None, 1)[1].partition("=")
            options[name] = value
    return options


@pytest.mark.parametrize("script", BATCH_SCRIPTS, ids=lambda p: p.name)
def test_batch_script_headers(script):
    options = sbatch_options(script)
    for name in ("--job-name", "--nodes", "--gres", "--cpus-per-task", "--mem", "--time"):
        assert name in options, f"{script.name} has no #SBATCH {name}"
    assert options["--output"] == "logs/%x-%j.out"
    assert options["--signal"] == "B:USR1@120"
    assert "--requeue" in options
    assert options["--open-mode"] == "append"  # a requeued run appends to the first run's log
    assert options["--ntasks-per-node"] == "1"
    text = script.read_text()
    assert "\nset -euo pipefail\n" in text
    assert "##SBATCH --partition" in text  # there, commented, for the user to fill in
    # SLURM opens the log before the script runs: the directory must be in the repository.
    assert (REPO / "logs" / ".gitkeep").is_file()


# --------------------------------------------------------------------------------------------- launch line
def node_command(env: dict[str, str], script="jobs/train.py", *args: str, path: str | None = None) -> list[str]:
    """The command `slurm/launch.sh node` would exec on a node with these SLURM_* variables."""
    clean = {"PATH": path or os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    result = subprocess.run(
        ["bash", str(SLURM_DIR / "launch.sh"), "node", "--print-command", script, *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def two_node_gpu_env(node_id: int) -> dict[str, str]:
    return {
        "SLURM_JOB_ID": "123456",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_NODEID": str(node_id),
        "SLURM_PROCID": str(node_id),
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_CPUS_PER_TASK": "32",
        "SLURM_SUBMIT_DIR": str(REPO),
    }


def tool_dir_without_scontrol(tmp_path: Path) -> str:
    """A PATH with only the few tools launch.sh needs, so it must parse the node list itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "hostname", "nproc", "date"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


@pytest.mark.parametrize("with_scontrol", [True, False], ids=["scontrol", "no-scontrol"])
def test_two_node_gpu_launch_lines(with_scontrol, tmp_path):
    if with_scontrol and shutil.which("scontrol") is None:
        skip_unless_ci("scontrol is not installed (slurm-client)")
    path = None if with_scontrol else tool_dir_without_scontrol(tmp_path)
    args = ("--data", "my data.xlsx", "--num_folds", "5")
    commands = [node_command(two_node_gpu_env(node), "jobs/train.py", *args, path=path) for node in (0, 1)]
    for node, command in enumerate(commands):
        assert command[:2] == ["accelerate", "launch"]
        assert option(command, "--machine_rank") == str(node)  # evaluated on each node, not on the first
        assert option(command, "--num_machines") == "2"
        assert option(command, "--main_process_ip") == "node01"
        assert option(command, "--num_processes") == "8"  # 2 nodes x 4 GPUs
        assert option(command, "--num_cpu_threads_per_process") == "8"  # 32 CPUs / 4 processes
        assert "--multi_gpu" in command
        assert "--cpu" not in command
        assert option(command, "--config_file") == str(REPO / "accelerate_config.yaml")
        assert command[-5:] == [str(REPO / "jobs" / "train.py"), *args]  # arguments pass through untouched
    port = option(commands[0], "--main_process_port")
    assert option(commands[1], "--main_process_port") == port  # every node meets on the same port
    assert 20000 <= int(port) < 30000


def test_node_list_forms_without_scontrol(tmp_path):
    path = tool_dir_without_scontrol(tmp_path)
    for nodelist, first in [("gpu[07,09-10]", "gpu07"), ("a1,b2", "a1"), ("rack1-n[3-4]-ib", "rack1-n3-ib")]:
        env = {**two_node_gpu_env(1), "SLURM_JOB_NODELIST": nodelist}
        assert option(node_command(env, path=path), "--main_process_ip") == first


def test_cpu_launch_lines():
    base = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_CPUS_PER_TASK": "4"}
    # No GPU: N gloo processes through torchrun; accelerate's --cpu would start one process whatever N says.
    command = node_command(base)
    assert command[:4] == ["env", "ACCELERATE_USE_CPU=true", "accelerate", "launch"]
    assert "--multi_gpu" in command and "--cpu" not in command
    assert option(command, "--num_processes") == "2"
    assert option(command, "--mixed_precision") == "no"
    assert option(command, "--main_process_ip") == "127.0.0.1"
    assert option(command, "--main_process_port") == "20077"
    assert "--config_file" not in command  # the repository's config is for GPUs (bf16)
    # bf16 on CPU is opt-in (about 1.9x on CPUs with AVX512-BF16/AMX).
    assert option(node_command({**base, "MIXED_PRECISION": "bf16"}), "--mixed_precision") == "bf16"

    command = node_command({**base, "PROCS_PER_NODE": "1"})
    assert command[:2] == ["accelerate", "launch"]
    assert "--cpu" in command and "--multi_gpu" not in command
    assert option(command, "--num_processes") == "1"

    two_nodes = {**base, "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "cpu[1-2]"}
    command = node_command({**two_nodes, "PROCS_PER_NODE": "3"})
    assert option(command, "--num_processes") == "6"
    assert option(command, "--machine_rank") == "1"
    assert option(command, "--main_process_ip") == "cpu1"


def test_gpu_overrides():
    base = {"SLURM_JOB_ID": "5", "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_GPUS_ON_NODE": "1"}
    command = node_command(base)
    assert option(command, "--num_processes") == "1" and "--multi_gpu" not in command
    command = node_command({**base, "MIXED_PRECISION": "fp16", "MAIN_PROCESS_PORT": "29999"})
    assert option(command, "--mixed_precision") == "fp16"
    assert option(command, "--main_process_port") == "29999"
    command = node_command({**base, "SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "a100:2"})
    assert option(command, "--num_processes") == "2" and "--multi_gpu" in command


def test_node_mode_refuses_a_missing_node_id():
    env = {"PATH": os.environ["PATH"], "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    result = subprocess.run(
        ["bash", str(SLURM_DIR / "launch.sh"), "node", "--print-command", "jobs/train.py"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0 and "SLURM_NODEID" in result.stderr


# --------------------------------------------------------------------------------------------- real SLURM
def _slurm_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: .ci/local_cluster.sh runs slurmctld, slurmd and munged as root"
    missing = [exe for exe in ("slurmctld", "slurmd", "munged", "mungekey", "sbatch") if shutil.which(exe) is None]
    if missing:
        return f"{', '.join(missing)} not installed: run .ci/slurm_setup.sh (apt-get install slurmctld slurmd ...)"
    return None


def _second_node_possible() -> bool:
    """The second local node is named `localhost`; the first one, this host, must resolve to be a main address."""
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
    except OSError:
        return False
    return host != "localhost"


LAUNCHER_VARIABLES = {
    "REPO_DIR",
    "VENV",
    "CONDA_ENV",
    "GPUS_PER_NODE",
    "PROCS_PER_NODE",
    "MAIN_PROCESS_PORT",
    "MIXED_PRECISION",
}
SLURM_SKIP_REASON = _slurm_skip_reason()
LOCAL_NODES = 2 if _second_node_possible() else 1
# A skip mark, not a skip inside the fixture: pytest sets up the session fixtures (a trained tiny run) first. Under
# CI the tests run anyway and the cluster fixture fails with the reason.
needs_slurm = pytest.mark.skipif(SLURM_SKIP_REASON is not None and not IN_CI, reason=SLURM_SKIP_REASON or "")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running SLURM on this machine (2 nodes where possible); yields the environment for sbatch & co. Always
    torn down."""
    if SLURM_SKIP_REASON is not None:
        skip_unless_ci(SLURM_SKIP_REASON)
    directory = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(
        ["bash", str(REPO / ".ci" / "local_cluster.sh"), "up", str(directory), "--nodes", str(LOCAL_NODES)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    try:
        assert up.returncode == 0, f"local_cluster.sh up failed:\n{up.stdout}\n{up.stderr}"
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.MULTILINE))
        assert "SLURM_CONF" in exports, up.stdout
        # A clean environment for the jobs: nothing from an enclosing SLURM job, a user's SBATCH_* settings or
        # the launcher's own variables (PROCS_PER_NODE, ...).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and k not in LAUNCHER_VARIABLES
        }
        env.update(exports)
        env.update({"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
        if sys.prefix != sys.base_prefix:  # the jobs run in the interpreter running the tests
            env["VENV"] = sys.prefix
        yield env
    finally:
        subprocess.run(
            ["bash", str(REPO / ".ci" / "local_cluster.sh"), "down", str(directory)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )


# Resources for a 2-core CI machine; the scripts' own lines ask for GPUs, more CPUs and memory.
CPU_TEST_RESOURCES = ["--gres=none", f"--cpus-per-task={min(2, os.cpu_count() or 1)}", "--mem=2G", "--time=00:10:00"]


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else f"(no log at {path})"


def job_state(env: dict, job_id: str) -> str:
    result = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    return result.stdout + result.stderr


def sbatch_wait(env: dict, args: list[str], cwd: Path, timeout: int) -> tuple[int, str]:
    """`sbatch --wait --parsable ARGS` (it waits through requeues); returns (exit code, job id)."""
    process = subprocess.run(
        ["sbatch", "--wait", "--parsable", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return process.returncode, process.stdout.strip().split(";")[0] or process.stderr


def sbatch_label_job(env: dict, log_dir: Path, job_args: list[str], resources=CPU_TEST_RESOURCES, timeout=240):
    """`sbatch --wait slurm/label_corpus.sh JOB_ARGS`, submitted from the repository root as the docs say, its log in
    `log_dir`: (exit code, job id, log)."""
    script = str(SLURM_DIR / "label_corpus.sh")
    rc, job_id = sbatch_wait(
        env, [*resources, f"--output={log_dir / 'label-%j.out'}", script, *job_args], cwd=REPO, timeout=timeout
    )
    return rc, job_id, read_log(log_dir / f"label-{job_id}.out")


@pytest.fixture(scope="module")
def sbatch_labels(cluster, tiny_run_dir, unlabeled_xlsx, tmp_path_factory) -> tuple[int, str, Path]:
    """`sbatch --wait slurm/label_corpus.sh ...` on one node, 2 CPU processes: (exit code, log, output)."""
    directory = tmp_path_factory.mktemp("sbatch-label")
    output = directory / "labels.parquet"
    job_args = ["--input", str(unlabeled_xlsx), "--model", str(tiny_run_dir), "--output", str(output)]
    rc, job_id, log = sbatch_label_job(cluster, directory, [*job_args, "--chunk_size", "8"])
    return rc, log + job_state(cluster, job_id), output


@pytest.mark.slurm
@needs_slurm
def test_sbatch_label_corpus(sbatch_labels, unlabeled_xlsx):
    rc, log, output = sbatch_labels
    assert rc == 0, f"sbatch --wait returned {rc}\n{log}"
    assert "SLURM_RESTART_COUNT=0" in log
    assert "ACCELERATE_USE_CPU=true accelerate launch" in log and "--num_processes 2" in log
    assert "2 process(es) on cpu" in log  # the job saw a 2-process gloo group, not 2 independent copies
    assert "job step finished with exit code 0" in log
    assert output.is_file(), log  # a job cancelled while pending also gives 0: the output is the proof
    labels = pd.read_parquet(output)
    assert len(labels) == len(pd.read_excel(unlabeled_xlsx))
    assert labels["row_id"].tolist() == list(range(len(labels)))
    assert {"text", "label", "label_name", "confidence", "probs", "status", "truncated"} <= set(labels.columns)


@pytest.mark.slurm
@needs_slurm
def test_sbatch_with_a_missing_input_ends_with_the_jobs_message_before_srun(cluster, tiny_run_dir, tmp_path):
    """The inputs are checked in the batch script's one process: no srun, no launcher traceback, status 2."""
    missing = tmp_path / "missing.xlsx"
    job_args = ["--input", str(missing), "--model", str(tiny_run_dir), "--output", str(tmp_path / "labels.parquet")]
    rc, job_id, log = sbatch_label_job(cluster, tmp_path, job_args, timeout=120)
    assert rc == 2, f"sbatch --wait returned {rc}\n{log}"
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines[-1].endswith(f"ERROR Input not found: {missing}"), log
    assert "accelerate launch" not in log and "Traceback" not in log, log  # srun never started a launcher
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"label-{job_id}.out"]


@pytest.mark.slurm
@needs_slurm
def test_resubmitting_a_finished_labeling_job_is_a_noop(cluster, sbatch_labels, tiny_run_dir, unlabeled_xlsx, tmp_path):
    """The same sbatch line again (an afterok chain re-run, a copy-paste): the output is complete, status 0."""
    rc, _, output = sbatch_labels
    assert rc == 0 and output.is_file()
    written = output.stat().st_mtime_ns
    job_args = ["--input", str(unlabeled_xlsx), "--model", str(tiny_run_dir), "--output", str(output)]
    rc, _, log = sbatch_label_job(cluster, tmp_path, [*job_args, "--chunk_size", "8"])
    assert rc == 0, f"sbatch --wait returned {rc}\n{log}"
    assert f"{output} is complete and matches these arguments" in log, log
    assert output.stat().st_mtime_ns == written


@pytest.mark.slurm
@needs_slurm
def test_two_node_job(cluster, sbatch_labels, tiny_run_dir, unlabeled_xlsx, tmp_path):
    """A real 2-node allocation (two slurmd on this machine): one launcher per node, each with its own rank."""
    if LOCAL_NODES < 2:
        pytest.skip("this machine's hostname is localhost or does not resolve: no second local node")
    output = tmp_path / "labels.parquet"
    job_args = ["--input", str(unlabeled_xlsx), "--model", str(tiny_run_dir), "--output", str(output)]
    two_nodes = ["--nodes=2", "--gres=none", "--cpus-per-task=1", "--mem=2G", "--time=00:10:00"]
    rc, job_id, log = sbatch_label_job(
        {**cluster, "PROCS_PER_NODE": "1"}, tmp_path, [*job_args, "--chunk_size", "8"], resources=two_nodes
    )
    assert rc == 0, f"sbatch --wait returned {rc}\n{log}\n{job_state(cluster, job_id)}"
    launches = re.findall(r"node (\S+) rank (\d)/2: (.*)", log)
    assert len(launches) == 2, log
    assert {node for node, _, _ in launches} == {"localhost", socket.gethostname().split(".")[0]}
    for _, rank, line in launches:
        command = shlex.split(line)
        assert option(command, "--machine_rank") == rank
        assert option(command, "--num_machines") == "2"
        assert option(command, "--num_processes") == "2"
        assert option(command, "--main_process_ip") == "localhost"  # the allocation's first node, on both
    assert "2 process(es) on cpu" in log
    # The same labels as the single-node, 2-process run.
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(sbatch_labels[2]))


PREEMPT_ROWS = 16000
PREEMPT_CHUNK = 64


def submit_and_interrupt(
    sbatch_args: list[str],
    *,
    env: dict,
    cwd: Path,
    log_of: Callable[[str], Path],
    ready: Callable[[], bool],
    waiting_for: str,
    interrupt: list[str],
    timeout: int,
) -> tuple[str, int, str]:
    """`sbatch --wait` a job, run `interrupt + [job id]` once `ready()` (within 180 s), and wait for the job to end.
    Returns the job id, sbatch's status and the job's log; a failure on the way cancels the job."""
    submit = subprocess.Popen(
        ["sbatch", "--wait", "--parsable", *sbatch_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )
    job_id = ""
    try:
        job_id = submit.stdout.readline().strip().split(";")[0]
        assert job_id.isdigit(), submit.stderr.read() if submit.poll() is not None else job_id
        log_path = log_of(job_id)
        deadline = time.monotonic() + 180
        while not ready():
            assert submit.poll() is None, f"job ended before {waiting_for}\n{read_log(log_path)}"
            assert time.monotonic() < deadline, f"waiting for {waiting_for}: none after 180 s\n{read_log(log_path)}"
            time.sleep(0.05)
        interrupted = subprocess.run([*interrupt, job_id], capture_output=True, text=True, env=env)
        assert interrupted.returncode == 0, interrupted.stderr
        rc = submit.wait(timeout=timeout)
    except BaseException:
        if job_id.isdigit():
            subprocess.run(["scancel", job_id], env=env, capture_output=True)
        submit.kill()
        raise
    return job_id, rc, read_log(log_path)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, tiny_run_dir) -> tuple[Path, Path]:
    """Enough rows that labeling takes several seconds on 2 CPU processes, and its uninterrupted labeling."""
    directory = tmp_path_factory.mktemp("big")
    source = directory / "big.parquet"
    pd.DataFrame({"Sentence": make_labeled_rows(PREEMPT_ROWS, seed=11)["Sentence"]}).to_parquet(source)
    reference = directory / "reference.parquet"
    launch_job("label_corpus.py", ["--input", str(source), "--model", str(tiny_run_dir), "--output", str(reference)])
    return source, reference


@pytest.mark.slurm
@needs_slurm
@pytest.mark.parametrize(
    "how",
    [
        # What SLURM sends --signal=B:USR1@120 before the time limit: the script stops the step and requeues itself.
        pytest.param(["scancel", "--signal=USR1", "--batch"], id="usr1-before-time-limit"),
        # What pre-emption or an admin does: SLURM sends SIGTERM to everything and requeues the job.
        pytest.param(["scontrol", "requeue"], id="scontrol-requeue"),
    ],
)
def test_preempted_job_is_requeued_and_resumes(how, cluster, tiny_run_dir, big_corpus, tmp_path):
    source, reference = big_corpus
    output = tmp_path / "labels.parquet"
    parts = output.with_name(output.name + ".parts")
    # Submitted from elsewhere, with REPO_DIR: the script's own `--output=logs/%x-%j.out` lands in ./logs.
    (tmp_path / "logs").mkdir()

    def a_few_chunks_written() -> bool:  # pre-empt it once a few chunks are on disk
        assert not output.exists(), "the job finished before it could be pre-empted; give it more rows"
        return len(list(parts.glob("part-*.done"))) >= 3

    job_id, rc, log = submit_and_interrupt(
        [
            *CPU_TEST_RESOURCES,
            str(SLURM_DIR / "label_corpus.sh"),
            *["--input", str(source), "--model", str(tiny_run_dir), "--output", str(output)],
            *["--chunk_size", str(PREEMPT_CHUNK)],
        ],
        env={**cluster, "REPO_DIR": str(REPO)},
        cwd=tmp_path,
        log_of=lambda job_id: tmp_path / "logs" / f"weibolabel-label-{job_id}.out",
        ready=a_few_chunks_written,
        waiting_for="a chunk",
        interrupt=how,
        timeout=240,
    )
    assert rc == 0, f"sbatch --wait returned {rc}\n{log}\n{job_state(cluster, job_id)}"

    # The first run stopped early and cleanly, a second run finished the rest.
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log, log
    assert re.search(r"stopped on SIGTERM after chunk \d+", log), log
    summary = json.loads(output.with_suffix(".summary.json").read_text())  # written by the run that finished
    assert 0 < summary["rows_labeled"] < PREEMPT_ROWS, (summary, log)  # the requeued run skipped the finished chunks
    if how[0] == "scancel":
        assert "caught SIGUSR1" in log and "requeueing job" in log

    labels = pd.read_parquet(output)
    assert labels["row_id"].tolist() == list(range(PREEMPT_ROWS))  # every row exactly once, in order
    pd.testing.assert_frame_equal(labels, pd.read_parquet(reference))  # same labels and probabilities
    assert not parts.exists()


@pytest.mark.slurm
@needs_slurm
def test_two_nodes_with_different_gpu_counts_are_refused_before_launch(cluster, tmp_path):
    """A whole-node allocation without --gres on nodes of 2 and 1 GPUs (a fake nvidia-smi on each node): the batch
    script counts them on the nodes and stops with what to change, instead of a rendezvous that never completes."""
    if LOCAL_NODES < 2:
        pytest.skip("this machine's hostname is localhost or does not resolve: no second local node")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/bash\n"
        "n=2; [[ $SLURMD_NODENAME == localhost ]] && n=1\n"
        'for ((i = 0; i < n; i++)); do echo "GPU $i: NVIDIA A100-SXM4-80GB (UUID: GPU-$i)"; done\n'
    )
    (bin_dir / "nvidia-smi").chmod(0o755)
    # Not hidden from the job as the tests hide GPUs from themselves (conftest): the nodes' own view counts here.
    env = {k: v for k, v in cluster.items() if k != "CUDA_VISIBLE_DEVICES"}
    rc, job_id = sbatch_wait(
        {**env, "PATH": f"{bin_dir}:{cluster['PATH']}"},
        [
            *["--nodes=2", "--gres=none", "--cpus-per-task=1", "--mem=1G", "--time=00:05:00"],
            f"--output={tmp_path / 'gpus-%j.out'}",
            str(SLURM_DIR / "label_corpus.sh"),
            *["--input", "unused.xlsx", "--model", "unused", "--output", str(tmp_path / "unused.parquet")],
        ],
        cwd=REPO,
        timeout=120,
    )
    log = read_log(tmp_path / f"gpus-{job_id}.out")
    assert rc != 0, log
    host = socket.gethostname().split(".")[0]
    assert f"the nodes have different numbers of GPUs (localhost: 1, {host}: 2)" in log, log
    assert "Set PROCS_PER_NODE=1" in log
    assert "accelerate launch" not in log  # stopped before any process started


TRAIN_ROWS = 8000  # about 2 s an epoch for the tiny model on a CPU process: time to requeue inside a fold
TRAIN_EPOCHS = 5


@pytest.mark.slurm
@needs_slurm
def test_sbatch_train_requeued_mid_fold_resumes(cluster, tiny_base_model_dir, tmp_path):
    """slurm/train.sh for real: 2 folds on 2 CPU processes, `scontrol requeue` once fold 0 has saved an epoch; the
    requeued job resumes fold 0 after that epoch and finishes the run."""
    data = tmp_path / "labeled.csv"
    make_labeled_rows(TRAIN_ROWS, seed=3).to_csv(data, index=False)
    out = tmp_path / "cv"
    state = out / "fold_0" / "resume" / "state.pt"  # written after each finished epoch of fold 0

    def fold_0_saved_an_epoch() -> bool:
        if not state.exists():
            return False
        assert not (out / "fold_0" / "fold_result.json").exists(), "fold 0 finished before the requeue"
        return True

    job_id, rc, log = submit_and_interrupt(
        [
            *CPU_TEST_RESOURCES,
            f"--output={tmp_path / 'train-%j.out'}",
            str(SLURM_DIR / "train.sh"),
            *["--data", str(data), "--model_name_or_path", str(tiny_base_model_dir), "--output_dir", str(out)],
            *["--num_folds", "2", "--num_epochs", str(TRAIN_EPOCHS), "--learning_rate", "1e-3"],
            *["--per_device_batch_size", "16", "--max_length", "32", "--seed", "7"],
        ],
        env=cluster,
        cwd=REPO,
        log_of=lambda job_id: tmp_path / f"train-{job_id}.out",
        ready=fold_0_saved_an_epoch,
        waiting_for="fold 0 to save an epoch",
        interrupt=["scontrol", "requeue"],
        timeout=300,
    )
    assert rc == 0, f"sbatch --wait returned {rc}\n{log}\n{job_state(cluster, job_id)}"
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log, log
    assert "ACCELERATE_USE_CPU=true accelerate launch" in log and "--num_processes 2" in log
    assert re.search(r"stopped on SIGTERM in fold 0, epoch \d+", log), log  # mid-fold, not between folds
    resumed = re.search(r"fold 0: resuming after epoch (\d+)", log)
    assert resumed and 1 <= int(resumed.group(1)) < TRAIN_EPOCHS, log
    for fold in (0, 1):
        result = json.loads((out / f"fold_{fold}" / "fold_result.json").read_text())
        assert [epoch["epoch"] for epoch in result["history"]] == list(range(1, TRAIN_EPOCHS + 1))
        assert not (out / f"fold_{fold}" / "resume").exists()
    assert (out / "report.md").is_file() and (out / "metrics.json").is_file()
    assert "job step finished with exit code 0" in log
