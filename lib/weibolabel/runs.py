"""The run directory: provenance (env.json), atomic writes, and the guard against mixing two runs in one place."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import torch
import transformers
from accelerate import Accelerator, InitProcessGroupKwargs
from accelerate.utils import broadcast_object_list

from weibolabel.errors import UserError
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


def make_accelerator() -> Accelerator:
    """The job's one Accelerator. On a machine without GPUs, processes started by `accelerate launch --multi_gpu
    --num_processes N` become N gloo CPU processes (accelerate's --cpu flag alone always starts one process).
    Folds and chunks finish at different times, so barriers wait far longer than the default timeout."""
    return Accelerator(
        cpu=not torch.cuda.is_available(), kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=24))]
    )


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


def ensure_writable(directory: Path, option: str = "--output_dir") -> None:
    """Fail before any model work if outputs cannot be written here."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"Cannot write to {directory}: {error.strerror or error}"
            + (f" ({error.filename})" if error.filename and str(error.filename) != str(directory) else "")
            + f". Pass a {option} in a directory you can write to, or fix its permissions."
        ) from None


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
