"""The run directory: provenance (env.json), atomic writes, and the guard against mixing two runs in one place."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import torch
import transformers
from accelerate import Accelerator, InitProcessGroupKwargs
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, gather_object

from weibolabel.errors import UserError
from weibolabel.precision import PRECISIONS, choose_precision, device_capability
from weibolabel.preemption import EXIT_PREEMPTED, Preempted

T = TypeVar("T")

PACKAGES = ("weibolabel", "torch", "transformers", "accelerate", "tokenizers", "scikit-learn", "pandas", "pyarrow")
REPO_ROOT = Path(__file__).resolve().parents[2]


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # transformers' load reports ("not sharded", weight-loading bars) are noise for a job's log
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# Folds and chunks finish at different times, so a process may wait at a barrier for another one's fold (a rank
# with fewer folds waits a whole fold) plus the report or the merge. A hung process makes the others wait this
# long, holding their GPUs: 2 h covers a fold of some 50,000 comments on a T4; CPU folds run 20-50x slower.
COLLECTIVE_TIMEOUT_MINUTES = {"gpu": 120.0, "cpu": 24 * 60.0}


def collective_timeout(minutes: float | None, *, on_gpu: bool) -> timedelta:
    """How long a process waits for the others at a barrier before the job fails: `minutes` if given (the jobs'
    --collective_timeout_minutes), else the default for the device."""
    if minutes is not None and minutes <= 0:
        raise UserError(f"--collective_timeout_minutes must be positive, got {minutes}.")
    return timedelta(minutes=minutes or COLLECTIVE_TIMEOUT_MINUTES["gpu" if on_gpu else "cpu"])


def make_accelerator(collective_timeout_minutes: float | None = None) -> Accelerator:
    """The job's one Accelerator. On a machine without GPUs, processes started by `accelerate launch --multi_gpu
    --num_processes N` become N gloo CPU processes (accelerate's --cpu flag alone always starts one process).

    Mixed precision: the launch's `--mixed_precision` is kept (fp16 on a CPU becomes fp32, said so); without one
    (a plain `python jobs/...`) weibolabel.precision chooses: bf16 on GPUs of compute capability 8.0 or newer, fp16
    on older GPUs, fp32 on CPUs. accelerate's own check lets bf16 through on V100/T4, where it is emulated."""
    on_gpu = torch.cuda.is_available()
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
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
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


def environment(num_processes: int, mixed_precision: str) -> dict:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "time": now_utc(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_revision": git_revision(),
        "versions": versions(),
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "gpus": gpus,
            "cuda": torch.version.cuda,
            "num_processes": num_processes,
            "mixed_precision": mixed_precision,
        },
    }


def write_json(path: Path, payload) -> None:
    """Write under a temporary name, then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_jsonable))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half-written files lying about
        raise


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim_run_directory(directory: Path, identity: dict, what: str) -> None:
    """Record what a run directory holds; refuse to resume it with other settings or other data."""
    record = directory / "run_identity.json"
    if record.is_file():
        previous = json.loads(record.read_text())
        changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
        if changed:
            details = "; ".join(f"{k}: {previous.get(k)!r} -> {identity.get(k)!r}" for k in changed[:6])
            raise UserError(
                f"{directory} already holds a {what} with different settings or data ({details}). "
                "Resuming it would mix results: pass another --output_dir, or delete the directory to start over."
            )
        return
    directory.mkdir(parents=True, exist_ok=True)
    write_json(record, identity)


def write_probe_path(directory: Path) -> Path:
    """A probe file no other process writes at the same time: process ids repeat across the nodes that share a
    directory, so the host name is part of the name."""
    return directory / f".write-test-{socket.gethostname()}-{os.getpid()}"


def ensure_writable(directory: Path, option: str = "--output_dir", create: bool = True) -> None:
    """Fail before any model work if outputs cannot be written here. With `create=False` nothing is made: the
    nearest existing folder is probed instead, so a run refused by a later check leaves no empty directory behind
    (the job's first write creates it)."""
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        probe = write_probe_path(directory if create else _nearest_existing(directory))
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"Cannot write to {directory}: {error.strerror or error}"
            + (f" ({error.filename})" if error.filename and str(error.filename) != str(directory) else "")
            + f". Pass a {option} in a directory you can write to, or fix its permissions."
        ) from None


def _nearest_existing(directory: Path) -> Path:
    """`directory` or its closest existing parent, where creating it would start; an OSError if that is a file."""
    folder = directory
    while not folder.exists():  # stops at '/' or '.' at the latest
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    return folder


SHARED_CHECK_WAIT_S = 10.0  # NFS may cache a directory's listing for some seconds after another client changed it


def check_shared_directory(
    accelerator: Accelerator, directory: Path, option: str, wait_seconds: float = SHARED_CHECK_WAIT_S
) -> None:
    """Every process must see what the main process writes in `directory`. With several nodes, parts and folds are
    written on every node and read on the main one; on node-local scratch that fails only at the end (a merge with
    missing chunks, a report without folds). Called by every process: the main one writes a token file, the others
    read it after a barrier, and all stop with one message naming the nodes that do not see it."""
    if accelerator.num_processes == 1:
        return
    host = socket.gethostname()
    message: list = [None, None]  # the token's name, or the main process's write error
    created = False
    if accelerator.is_main_process:
        token = directory / f".shared-check-{uuid.uuid4().hex}"
        try:
            created = not directory.exists()
            directory.mkdir(parents=True, exist_ok=True)  # ensure_writable(create=False) left it to the first write
            token.write_text(host)
            message = [token.name, None]
        except OSError as error:
            message = [None, f"Cannot write to {directory}: {error.strerror or error}"]
    broadcast_object_list(message, from_process=0)  # also the barrier: the token exists once this returns
    if message[1] is not None:
        raise UserError(f"{message[1]}. Pass a {option} in a directory you can write to.")
    token = directory / message[0]
    seen = accelerator.is_main_process or _appears(token, wait_seconds)
    seen_by = gather_object([(accelerator.process_index, host, seen)])
    if accelerator.is_main_process:
        token.unlink(missing_ok=True)
        if created:  # made only for the check: a run refused later leaves no empty directory either
            directory.rmdir()
    blind = [(rank, node) for rank, node, ok in seen_by if not ok]
    if blind:
        nodes = sorted({node for _, node in blind})
        ranks = ", ".join(str(rank) for rank, _ in blind)
        main_host = next(node for rank, node, _ in seen_by if rank == 0)
        raise UserError(
            f"{directory} is not shared by all nodes: a file that the main process wrote there on node {main_host} "
            f"is not visible on node(s) {', '.join(nodes)} (process(es) {ranks}) after {wait_seconds:.0f} s. A run "
            f"over several nodes writes its outputs on every node and reads them all on the main one, so {option} "
            "must be on a filesystem that every node mounts (a home, project or shared scratch directory), not on "
            "node-local storage such as /tmp or $TMPDIR."
        )


def _appears(path: Path, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            path.read_text()
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def tokenizer_threads(cpus: int, local_processes: int) -> int:
    """Threads for each process's tokenizer: the node's CPUs shared out between its processes."""
    return max(1, cpus // max(1, local_processes))


def limit_tokenizer_threads() -> int:
    """The tokenizers library runs batches on a Rust thread pool (rayon) as wide as the machine, in every process:
    8 processes on a node would start 8 pools of all its cores. RAYON_NUM_THREADS sizes the pool when the first
    batch is tokenized, so this runs before; a value the user set is kept. Returns the size in force."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes on this node
    threads = tokenizer_threads(len(os.sched_getaffinity(0)), local_processes)
    return int(os.environ.setdefault("RAYON_NUM_THREADS", str(threads)))


# Errors of the storage, not of the code: a full disk or quota, a read-only or failing mount, lost permissions.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def storage_error_message(error: OSError, kept: str, path: Path | None = None) -> str | None:
    """The user's message for an OSError of the storage, or None if it is something else (a bug: let it show).
    `kept` says what a re-run will not have to redo; `path` names the file when the error does not."""
    # Arrow reports some I/O failures without an errno; its message still says what happened.
    if error.errno not in STORAGE_ERRNOS and "No space left on device" not in str(error):
        return None
    where = f" ({error.filename or path})" if (error.filename or path) else ""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)
    fix = "Free space" if full else "Fix the storage or its permissions"
    return f"{error.strerror or error}{where}. {fix} and re-run the same command; {kept}."


def on_main_process(accelerator: Accelerator, work: Callable[[], T]) -> T:
    """`work()` on the main process only, its result handed to every process (a barrier). A problem there that
    the user can fix (UserError, a full disk) is raised on every process, so all of them exit with the one message,
    instead of the others waiting at a barrier for a process that has gone and dying in gloo with a traceback."""
    if accelerator.num_processes == 1:
        return work()
    outcome: list = [None, None]
    if accelerator.is_main_process:
        try:
            outcome = [work(), None]
        except (UserError, OSError) as error:
            outcome = [None, error]
    broadcast_object_list(outcome, from_process=0)
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


def run_guarded(work: Callable[[], None], accelerator: Accelerator, logger, kept: str) -> int:
    """A job's exit status: 0 done, 2 a problem the user can fix (one message, no traceback), 143 stopped on a
    signal with progress saved. `kept` says what a re-run will not redo ("finished chunks")."""
    try:
        work()
        # Leave together: a rank that exits while the main process still merges or writes the report can abort.
        accelerator.wait_for_everyone()
        code = 0
    except UserError as error:
        logger.error(str(error))
        code = 2
    except Preempted as error:
        logger.warning(f"{error}; {kept} are saved. Re-run the same command to resume.")
        code = EXIT_PREEMPTED
    except OSError as error:  # a disk that fills up or goes away mid-run: say so, not where in torch it happened
        message = storage_error_message(error, f"{kept} are kept")
        if message is None:
            raise
        logger.error(message)
        code = 2
    # Close the process group on every way out: a process that exits with its gloo group open can abort in the
    # group's teardown ("terminate called without an active exception", SIGABRT) and turn status 2 into 134.
    accelerator.end_training()
    return code
