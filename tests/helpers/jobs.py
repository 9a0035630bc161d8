"""Running the jobs in jobs/: as a user would, in a subprocess with the job environment (plain python, or
`accelerate launch` with N processes, gloo on CPU), or in the test process through their main(); and the
arguments the tests give them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from helpers import REPO

JOBS = REPO / "jobs"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
# Programs the tests run by path (each file says how): two wrappers that patch a job from outside and then run it
# as `python jobs/<job>.py` would, and a process that contends for a run lock.
KILL_WRAPPER = SCRIPTS / "kill_wrapper.py"
SLOW_WRAPPER = SCRIPTS / "slow_wrapper.py"
LOCK_CONTENDER = SCRIPTS / "lock_contender.py"


def job_env(**extra: str) -> dict[str, str]:
    """The environment the jobs run in: this process's (GPUs hidden by conftest.py), offline, one thread each."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **extra}


def private_mount_possible() -> bool:
    """Whether this process may mount a tmpfs in a mount namespace of its own (`unshare --mount`: root on Linux):
    how the tests give a job node-local, full or read-only storage without touching the machine's mounts."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def job_command(script: str, args: list[str], num_processes: int = 1) -> list[str]:
    """jobs/<script> (or a script given by absolute path) under plain python, or `accelerate launch` for N > 1."""
    command = [sys.executable]
    if num_processes > 1:
        command += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes)]
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        command += ["--main_process_port", str(free_port())]
    return [*command, str(JOBS / script), *args]


def launch_job(
    script: str,
    args: list[str],
    num_processes: int = 1,
    timeout: int = 600,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a job to its end (env: variables added to the job environment); check: fail the test unless status 0."""
    result = subprocess.run(
        job_command(script, args, num_processes),
        input=input,
        capture_output=True,
        text=True,
        env=job_env(**(env or {})),
        timeout=timeout,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def start_job(
    script: str, args: list[str], num_processes: int = 1, env: dict[str, str] | None = None, **popen
) -> subprocess.Popen:
    """Start a job in the background, as launch_job would run it; popen: stdout, stderr, ..."""
    return subprocess.Popen(job_command(script, args, num_processes), env=job_env(**(env or {})), cwd=REPO, **popen)


def log_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def load_job(name: str) -> ModuleType:
    """jobs/<name>.py imported afresh as module job_<name>, to call its main() in the test process (no interpreter
    and torch start-up per call). Registered in sys.modules: dataclasses look their module up there."""
    module_name = f"job_{name.removesuffix('.py')}"
    spec = importlib.util.spec_from_file_location(module_name, JOBS / f"{name.removesuffix('.py')}.py")
    sys.modules[module_name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]


def run_job(script: str, args: list[str], capsys) -> tuple[int, str, str]:
    """Call a job's main() in this process; (exit status, stdout, stderr)."""
    module = load_job(script)
    capsys.readouterr()
    status = module.main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# The tiny model's training recipe: 3 folds of 2 epochs, seconds on a CPU.
TINY_TRAIN_ARGS = [
    "--num_folds",
    "3",
    "--num_epochs",
    "2",
    "--learning_rate",
    "1e-3",
    "--per_device_batch_size",
    "16",
    "--max_length",
    "64",
    "--seed",
    "7",
]


def train_args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """train.py's arguments for the tiny recipe."""
    return ["--data", str(data), "--model_name_or_path", str(model), "--output_dir", str(out), *TINY_TRAIN_ARGS, *extra]


CHUNK_SIZE = 8  # rows per labeling chunk: small inputs still make several chunks (and parts)


def label_args(source: Path, model: Path, output: Path, *extra: str) -> list[str]:
    """label_corpus.py's arguments, in chunks of CHUNK_SIZE rows."""
    chunks = ["--chunk_size", str(CHUNK_SIZE)]
    return ["--input", str(source), "--model", str(model), "--output", str(output), *chunks, *extra]


def parts_dir(output: Path) -> Path:
    """Where a labeling run keeps its finished chunks until the merge."""
    return output.with_name(output.name + ".parts")
