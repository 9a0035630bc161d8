"""How a job runs: logging, the accelerator, the run's environment record, workers that stop with their
launcher, work on the main process only, and the guarded run that turns every way out into an exit status."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from weibolabel.run.config import check_positive
from weibolabel.run.device import job_device
from weibolabel.run.precision import PRECISIONS, choose_precision, device_capability
from weibolabel.run.preemption import EXIT_PREEMPTED, Preempted
from weibolabel.util.errors import (
    EXIT_INTERRUPTED,
    UserError,
    on_every_process,
    raised_on_every_process,
    storage_error_message,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

T = TypeVar("T")

PACKAGES = ("weibolabel", "torch", "transformers", "accelerate", "tokenizers", "scikit-learn", "pandas", "pyarrow")
REPO_ROOT = Path(__file__).resolve().parents[3]


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # transformers' load reports ("not sharded", weight-loading bars) are noise for a job's log. The jobs import it
    # only after checking their inputs (weibolabel.run.startup): its variables quiet it then; if loaded, it is told now.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()


# Folds and chunks finish at different times, so a process may wait at a barrier for another one's fold (a rank
# with fewer folds waits a whole fold) plus the report or the merge. A hung process makes the others wait this
# long, holding their GPUs: 2 h covers a fold of some 50,000 comments on a T4; CPU folds run 20-50x slower.
COLLECTIVE_TIMEOUT_MINUTES = {"gpu": 120.0, "cpu": 24 * 60.0}


def collective_timeout(minutes: float | None, *, on_gpu: bool) -> timedelta:
    """How long a process waits at a barrier before the job fails: --collective_timeout_minutes, else the device's."""
    check_positive(minutes, "--collective_timeout_minutes")
    return timedelta(minutes=minutes or COLLECTIVE_TIMEOUT_MINUTES["gpu" if on_gpu else "cpu"])


def make_accelerator(collective_timeout_minutes: float | None = None, device: str = "auto") -> Accelerator:
    """The job's one Accelerator: without GPUs, `accelerate launch --multi_gpu --num_processes N` gives N gloo CPU
    processes (its --cpu flag would start one). The launch's --mixed_precision is kept, else run/precision chooses
    (accelerate's own check lets bf16 through on V100/T4, where it is emulated)."""
    from accelerate import Accelerator, InitProcessGroupKwargs
    from accelerate.logging import get_logger

    on_gpu = job_device(device) == "cuda"
    if on_gpu:
        # The ranks exchange only barriers and small objects (docs/cluster.md, "Transport"): NCCL's peer-to-peer
        # path gains nothing and hangs on some PCIe servers until the collective timeout. A user's value is kept.
        os.environ.setdefault("NCCL_P2P_DISABLE", "1")
    timeout = collective_timeout(collective_timeout_minutes, on_gpu=on_gpu)
    # accelerate launch always sets it (from --mixed_precision, the config file, or its default "no"); a value
    # weibolabel does not choose between (fp8) is accelerate's to check.
    requested = os.environ.get("ACCELERATE_MIXED_PRECISION")
    precision, warning = requested, None
    if requested is None or requested in PRECISIONS:
        # Only the bf16 question needs the GPUs' capability (the lowest of this node's: what the launcher saw).
        capability = device_capability() if on_gpu and requested in (None, "bf16") else None
        precision, warning = choose_precision(
            requested, device_type="cuda" if on_gpu else "cpu", compute_capability=capability
        )
    accelerator = Accelerator(
        cpu=not on_gpu,
        # Passed only when it differs from the launch's: accelerate refuses a second, different setting in-process.
        mixed_precision=None if precision == requested else precision,
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timeout)],
    )
    if warning:
        get_logger(__name__).warning(warning)  # once, from the main process
    return accelerator


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str:
    """The commit of the code that ran, with '+dirty' when the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True).stdout

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
        return git("rev-parse", "HEAD").strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def environment(num_processes: int, mixed_precision: str, device: str) -> dict:
    """What a run ran on: `device` is where it computed ("cpu" under --device cpu), `gpus` what the node shows."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "time": now_utc(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_revision": git_revision(),
        "versions": versions(),
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "device": device,
            "gpus": gpus,
            "cuda": torch.version.cuda,
            "num_processes": num_processes,
            "mixed_precision": mixed_precision,
        },
    }


# ------------------------------------------------------------------------- workers die with their launcher
LAUNCHER_GONE_GRACE_S = 60.0  # after the clean-stop signal, what a worker gets to finish its step or chunk


def exit_with_launcher(poll_s: float = 1.0, grace_s: float = LAUNCHER_GONE_GRACE_S) -> None:
    """A torchrun worker stops when its launcher dies, even by SIGKILL: torchrun starts workers in sessions of their
    own, so they would go on writing next to a new run. The kernel's parent-death signal (Linux) sends the jobs'
    clean stop, SIGTERM; a watchdog thread covers the rest (other systems, a launcher gone already) and kills a worker
    still running `grace_s` later (one blocked at a barrier never reaches a safe point)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # a plain `python jobs/...` keeps running under nohup, as ever
        return
    launcher = os.getppid()
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    threading.Thread(
        target=_watch_launcher, args=(launcher, poll_s, grace_s), name="launcher-watchdog", daemon=True
    ).start()


def _watch_launcher(launcher: int, poll_s: float, grace_s: float) -> None:
    while os.getppid() == launcher and launcher != 1:
        time.sleep(poll_s)
    logging.getLogger(__name__).warning(f"the launcher (process {launcher}) is gone: stopping this worker")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)


def tokenizer_threads(cpus: int, local_processes: int) -> int:
    """Threads for each process's tokenizer: the node's CPUs shared out between its processes."""
    return max(1, cpus // max(1, local_processes))


def limit_tokenizer_threads() -> int:
    """Size the tokenizers' Rust thread pool (rayon, as wide as the machine in every process) to this process's share
    of the node, before the first batch; a value the user set is kept. Returns the size in force."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes on this node
    threads = tokenizer_threads(len(os.sched_getaffinity(0)), local_processes)
    return int(os.environ.setdefault("RAYON_NUM_THREADS", str(threads)))


def on_main_process(accelerator: Accelerator, work: Callable[[], T]) -> T:
    """`work()` on the main process only, its result handed to every process (a barrier). A UserError or full disk
    there is raised on every process, so all exit with the one message instead of dying in gloo at a barrier."""
    if accelerator.num_processes == 1:
        return work()
    from accelerate.utils import broadcast_object_list

    outcome: list = [None, None]
    if accelerator.is_main_process:
        try:
            outcome = [work(), None]
        except (UserError, OSError) as error:
            outcome = [None, error]
    broadcast_object_list(outcome, from_process=0)
    if outcome[1] is not None:
        raise on_every_process(outcome[1])
    return outcome[0]


def run_guarded(work: Callable[[], None], accelerator: Accelerator, logger, kept: str) -> int:
    """A job's exit status: 0 done, 2 a problem the user can fix (one message, no traceback), 143 stopped on a
    signal with progress saved. `kept` says what a re-run will not redo ("finished chunks")."""
    together = True  # whether every process reached this exit at the same point, so can wait for the others
    try:
        work()
        code = 0
    except UserError as error:
        logger.error(str(error))
        code, together = 2, raised_on_every_process(error)
    except Preempted as error:
        logger.warning(f"{error}; {kept} are saved. Re-run the same command to resume.")
        code, together = EXIT_PREEMPTED, False
    except KeyboardInterrupt:  # Ctrl-C: at once, not at the next safe point; what was finished is on disk
        logger.warning(f"stopped (Ctrl-C); {kept} are saved. Re-run the same command to resume.")
        code, together = EXIT_INTERRUPTED, False
    except OSError as error:  # a disk that fills up or goes away mid-run: say so, not where in torch it happened
        message = storage_error_message(error, f"{kept} are kept")
        if message is None:
            raise
        logger.error(message)
        code, together = 2, raised_on_every_process(error)
    # Leave together where all can (a finished run; an error every process raised after the same collective): a
    # process that closes its gloo connections while another still works, merges or writes can abort either one.
    if together:
        accelerator.wait_for_everyone()
    # Close the process group on every way out: a process that exits with its gloo group open can abort in the
    # group's teardown ("terminate called without an active exception", SIGABRT) and turn status 2 into 134. Where
    # that teardown can deadlock instead, exit_job leaves without it.
    if not gloo_teardown_can_hang():
        accelerator.end_training()
    return code


def gloo_teardown_can_hang() -> bool:
    """Whether this process holds a gloo process group that torch tears down holding the GIL: before 2.8 the group's
    destructor can wait forever on a thread that needs it (pytorch#154976; seen once at the floors, torch 2.4)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return False
    from packaging.version import Version  # a transformers dependency

    return Version(str(torch.__version__)).release < (2, 8) and torch.distributed.get_backend() == "gloo"


def exit_job(code: int) -> None:
    """A distributed job's last step: sys.exit(code), or, where the gloo teardown can hang, leave at once without it
    (run_guarded has written every file and released the lock)."""
    if gloo_teardown_can_hang():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
