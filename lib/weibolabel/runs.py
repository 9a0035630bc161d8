"""The run directory: its layout (RunLayout), provenance (env.json), JSON written atomically, and the guard against
mixing two runs in one place. torch, transformers and accelerate are imported where they are used, so that modules
that only read a finished run (comparison, analysis, label_issues) stay light."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from weibolabel.errors import (
    EXIT_INTERRUPTED,
    UserError,
    on_every_process,
    raised_on_every_process,
    storage_error_message,
)
from weibolabel.files import atomic_path
from weibolabel.precision import PRECISIONS, choose_precision, device_capability
from weibolabel.preemption import EXIT_PREEMPTED, Preempted

if TYPE_CHECKING:
    from accelerate import Accelerator

T = TypeVar("T")

PACKAGES = ("weibolabel", "torch", "transformers", "accelerate", "tokenizers", "scikit-learn", "pandas", "pyarrow")
REPO_ROOT = Path(__file__).resolve().parents[2]


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # transformers' load reports ("not sharded", weight-loading bars) are noise for a job's log. The jobs import it
    # only after checking their inputs (weibolabel.startup): its variables quiet it then; if loaded, it is told now.
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
    import torch
    from accelerate import Accelerator, InitProcessGroupKwargs
    from accelerate.logging import get_logger

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
            "gpus": gpus,
            "cuda": torch.version.cuda,
            "num_processes": num_processes,
            "mixed_precision": mixed_precision,
        },
    }


# ------------------------------------------------------------------------------------------- the run directory
@dataclass(frozen=True)
class RunLayout:
    """Where a training run of jobs/train.py keeps each file: the one place their names are spelled (the README's
    "The run directory" table describes them). What reads a finished run goes through it as well."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # Written when the run starts: what it is, and what the folds are.
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def identity(self) -> Path:
        return self.root / "run_identity.json"

    @property
    def data_issues(self) -> Path:
        return self.root / "data_issues.csv"

    @property
    def folds_csv(self) -> Path:
        return self.root / "folds.csv"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def owner(self) -> Path:
        """The name of the job whose directory this is (every job's --output_dir has one: claim_output_directory)."""
        return self.root / ".weibolabel-job"

    # One directory per fold: its checkpoint, its test predictions, its record, and while it trains its resume state.
    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"

    def fold_result(self, fold: int) -> Path:
        return self.fold_dir(fold) / "fold_result.json"

    def test_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "test_predictions.parquet"

    def resume_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "resume"

    def resume_state(self, fold: int) -> Path:
        return self.resume_dir(fold) / "state.pt"

    # Gathered from the folds at the end; the report is written last, so a run with one has finished.
    @property
    def oof_predictions(self) -> Path:
        return self.root / "oof_predictions.parquet"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def require_finished(self) -> None:
        """A UserError naming the first missing file of those that a finished run has and its readers need."""
        for path in (self.metrics, self.folds_csv, self.oof_predictions):
            if not path.is_file():
                raise UserError(f"{path} not found: is {self.root} a finished run of jobs/train.py?")


def find_checkpoints(path: Path) -> list[Path]:
    """The fold checkpoints of a finished training run, or [path] for a single checkpoint directory. (Here, not in
    weibolabel.inference: the labeling job checks its --model before it imports torch.)"""
    import yaml

    if not path.is_dir():
        raise UserError(f"Model not found: {path} (pass a training run directory or a checkpoint directory).")
    if (path / "config.json").is_file():
        return [path]
    run = RunLayout(path)
    if not run.config.is_file():
        raise UserError(
            f"{path} is neither a training run directory (no config.yaml) nor a checkpoint (no config.json)."
        )
    settings = yaml.safe_load(run.config.read_text()) or {}
    if not isinstance(settings, dict) or "num_folds" not in settings:
        raise UserError(
            f"{run.config} has no num_folds: it is not the settings file of a training run (another job may have "
            f"written over it). Restore it from a copy of the run, or pass one fold directory (e.g. {path}/fold_0)."
        )
    num_folds = int(settings["num_folds"])
    finished = [run.fold_dir(k) for k in range(num_folds) if run.fold_result(k).is_file()]
    if len(finished) < num_folds:
        raise UserError(
            f"{path}: only {len(finished)} of {num_folds} folds have finished training. Re-run jobs/train.py with "
            f"the same --output_dir to finish them, or pass one finished fold directory (e.g. {path}/fold_0)."
        )
    return finished


def write_json(path: Path, payload) -> None:
    """Written under a temporary name, then renamed, so a reader never sees half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_jsonable))


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


def check_run_directory(directory: Path, identity: dict, what: str) -> bool:
    """Whether `directory` already holds a run with these settings (False: a new run); a run with other settings
    or other data is refused, naming what changed. Writes nothing."""
    record = RunLayout(directory).identity
    if not record.is_file():
        return False
    previous = json.loads(record.read_text())
    changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
    if changed:
        details = "; ".join(f"{k}: {previous.get(k)!r} -> {identity.get(k)!r}" for k in changed[:6])
        raise UserError(
            f"{directory} already holds a {what} with different settings or data ({details}). "
            "Resuming it would mix results: pass another --output_dir, or delete the directory to start over."
        )
    return True


def claim_run_directory(directory: Path, identity: dict, what: str) -> bool:
    """Record what a run directory holds; refuse to resume it with other settings or other data. Returns whether
    it was there already (a resume, or a re-run of a finished run)."""
    if check_run_directory(directory, identity, what):
        return True
    directory.mkdir(parents=True, exist_ok=True)
    write_json(RunLayout(directory).identity, identity)
    return False


# ------------------------------------------------------------------------------ a job's inputs and outputs
# The files each job writes into its --output_dir (train's are RunLayout's; a `*` is a pattern): the one list the
# check below compares, and the files that tell which job made a directory written before it recorded its owner.
JOB_FILES: dict[str, tuple[str, ...]] = {
    "train": (
        "run_identity.json", "metrics.json", "oof_predictions.parquet", "config.yaml", "env.json", "data_issues.csv",
        "folds.csv", "calibration.json", "report.md", "plots", "fold_*", ".lock",
    ),
    "analyze_labels": (
        "shares.csv", "class_shares.csv", "report.md", "shares.png", "class_shares.png", "confidence_histogram.csv",
        "confidence_histogram.png", "characteristic_ngrams.csv", "group_shares.csv", "group_shares.png",
        "shares.json", "share_differences.csv", "share_differences.png",
    ),
    "find_label_issues": (
        "label_issues.md", "label_issues.xlsx", "label_issues.csv", "noise_estimate.csv", "config.yaml",
    ),
    "simulate_active_learning": (
        "simulation.csv", "active_learning.md", "simulation_summary.csv", "active_learning.png", "config.yaml",
    ),
    "compare_runs": ("comparison.json", "comparison.md"),
    "learning_curve": ("learning_curve.csv", "learning_curve.md", "learning_curve.png", "learning_curve_parts"),
}  # fmt: skip
# How many of a job's first files tell it apart in a directory without an owner record (config.yaml or report.md
# alone could be either of two jobs').
_TELLING_FILES = {"train": 3, "analyze_labels": 2, "find_label_issues": 2, "simulate_active_learning": 2}
# A job whose files may go into another job's directory: a training run's own learning curve (names disjoint).
GUESTS = {"learning_curve": ("train",)}
# Where a job's output goes inside another job's directory, for the advice (e.g. runs/cv/analysis).
SUBDIRECTORY = {
    "analyze_labels": "analysis",
    "find_label_issues": "review",
    "simulate_active_learning": "active_learning",
    "compare_runs": "comparisons",
    "learning_curve": "learning_curve",
}


def directory_owner(directory: Path) -> str | None:
    """The job whose output `directory` holds: its owner record, else (a directory written before there was one)
    the job whose telling files are there; None for a new or unrelated directory."""
    marker = RunLayout(directory).owner
    if marker.is_file():
        return marker.read_text(encoding="utf-8").strip() or None
    for job, files in JOB_FILES.items():
        if any(_present(directory, name) for name in files[: _TELLING_FILES.get(job, 1)]):
            return job
    return None


def _present(directory: Path, name: str) -> list[Path]:
    return list(directory.glob(name)) if "*" in name else [directory / name] if (directory / name).exists() else []


def _same(a: Path, b: Path) -> bool:
    """One file or directory, however it is named (relative, through a symlink, a hard link)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _paths(value) -> list[Path]:
    if value is None or value == "":
        return []
    return [Path(v) for v in value] if isinstance(value, list | tuple) else [Path(value)]


def check_outputs(
    job: str,
    *,
    reads: dict[str, object],
    writes: dict[str, object] | None = None,
    output_dir: Path | None = None,
    replaceable: str | None = None,
) -> None:
    """Before a job writes anything: none of the files it `writes` (option -> path(s)) nor its `output_dir` is one of
    the paths it `reads` (option -> path(s); `replaceable` names the input its --output may replace, with its own
    backup), and it writes neither into a directory another job owns nor over another job's files. Writes nothing;
    the refusals never suggest --overwrite, which would not help."""
    outputs = [(option, path) for option, value in (writes or {}).items() for path in _paths(value)]
    for option, path in outputs:
        if path.is_dir():
            raise UserError(
                f"{option} {path} is a directory (as Spark and Dask write Parquet): jobs/{job}.py writes one file. "
                f"Pass the name of a file (e.g. {path.with_name(path.stem + '_' + job + path.suffix)})."
            )
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise UserError(f"--output_dir {output_dir} is a file; pass a directory (a new one is made).")
    if output_dir is not None:
        _check_directory_owner(job, Path(output_dir))
        outputs.append(("--output_dir", Path(output_dir)))
    for out_option, output in outputs:
        for in_option, source in [(option, path) for option, value in reads.items() for path in _paths(value)]:
            allowed = (out_option == "--output" and in_option == replaceable) or (
                out_option == "--output_dir" and directory_owner(source) in GUESTS.get(job, ())
            )
            if _same(output, source) and not allowed:
                raise UserError(
                    f"{out_option} {output} is the {in_option} {source} itself: jobs/{job}.py reads it, and writing "
                    f"its output there would destroy it. Pass a new {out_option}."
                )
        if out_option != "--output_dir":
            _check_not_anothers_file(job, out_option, output)


def _check_directory_owner(job: str, directory: Path) -> None:
    owner = directory_owner(directory) if directory.is_dir() else None
    if owner is None or owner == job or owner in GUESTS.get(job, ()):
        return
    theirs = [name for name in JOB_FILES.get(owner, ()) if "*" not in name and _present(directory, name)][:3]
    clash = sorted(set(JOB_FILES.get(job, ())) & {p.name for p in directory.iterdir()})
    replaced = f"; its {', '.join(clash)} would be replaced" if clash else ""
    inside = f" (e.g. {directory / SUBDIRECTORY[job]})" if job in SUBDIRECTORY else " (a new directory)"
    raise UserError(
        f"--output_dir {directory} holds the output of jobs/{owner}.py ({', '.join(theirs) or 'its files'}): "
        f"jobs/{job}.py does not write into another job's directory{replaced}. Pass another --output_dir{inside}."
    )


def _check_not_anothers_file(job: str, option: str, output: Path) -> None:
    owner = directory_owner(output.parent) if output.parent.is_dir() else None
    if owner is None or owner == job:
        return
    theirs = [path.resolve() for name in JOB_FILES.get(owner, ()) for path in _present(output.parent, name)]
    if output.resolve() in theirs:
        raise UserError(
            f"{option} {output} is a file of the jobs/{owner}.py output in {output.parent}: jobs/{job}.py does not "
            f"write over another job's files. Pass another {option}."
        )


def claim_output_directory(directory: Path, job: str) -> None:
    """Make the job's --output_dir and record that it is `job`'s (check_outputs has checked it is free); a guest
    writing into its host's directory records nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    if directory_owner(directory) in GUESTS.get(job, ()):
        return
    marker = RunLayout(directory).owner
    if not marker.is_file():
        with atomic_path(marker) as tmp:
            tmp.write_text(job + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------ one run at a time
LOCK_HEARTBEAT_S = 30.0  # how often the holder refreshes its lock's mtime
LOCK_STALE_HEARTBEATS = 4  # a lock of another host not refreshed for this many heartbeats (2 min) is stale
TAKEOVER_STALE_S = 60.0  # a takeover marker this old was left by a process killed in the middle of a takeover


def training_lock_path(run_directory: Path) -> Path:
    return RunLayout(run_directory).lock


def output_lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


class RunLock:
    """One run at a time per output: a lock file naming its holder (host, process id, SLURM job id). The job's
    main process takes it (`take`) once its inputs are checked and holds it until the job ends (`with`).

    Why a file made with O_CREAT | O_EXCL rather than flock: the outputs live on shared filesystems, where flock
    is either local to one client (older NFS clients) or released only when the server's lease on a dead node runs
    out, and a flock cannot tell the second run who holds it. An exclusive create is atomic on NFS v3 and later,
    the file says who holds it, and a holder that died is recognised: on this host, its process is gone; on
    another host, it stopped refreshing the file's mtime (the heartbeat) several heartbeats ago."""

    def __init__(self, heartbeat_s: float = LOCK_HEARTBEAT_S):
        self.heartbeat_s = heartbeat_s
        self.path: Path | None = None
        self._made: Path | None = None
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, accelerator: Accelerator | None, path: Path, what: str) -> None:
        """Main process only; a refusal (held by a live run) reaches every process as the same UserError."""
        if accelerator is None:
            self.acquire(path, what)
        else:
            on_main_process(accelerator, lambda: self.acquire(path, what))

    def acquire(self, path: Path, what: str) -> None:
        # Made for the lock only: removed again when the run ends with nothing written there (a refused run).
        self._made = None if path.parent.exists() else path.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "started": now_utc(),
            "token": self._token,
        }
        for _ in range(5):  # a few rounds: another run may be taking over the same stale lock right now
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raw, holder, age = _read_lock(path)
                if raw is None:
                    continue  # released between our attempt and the read
                if not _is_stale(holder, age, self.heartbeat_s):
                    raise UserError(held_message(path, holder, what, self.heartbeat_s)) from None
                logging.getLogger(__name__).warning(
                    f"taking over the lock {path} of a {what} that is gone ({describe_holder(holder)})"
                )
                _remove_stale(path, raw)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(record))
                handle.flush()
                os.fsync(handle.fileno())
            self.path = path
            self._thread = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
            self._thread.start()
            return
        raise UserError(f"Could not take the lock {path}: other runs keep taking it. Run one job per output.")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            # A storage hiccup: the next beat tries again; the job itself reports a filesystem that has gone.
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.path is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        raw, holder, _ = _read_lock(self.path)
        if raw is not None and holder.get("token") == self._token:  # never remove a lock another run took over
            self.path.unlink(missing_ok=True)
        if self._made is not None:
            with contextlib.suppress(OSError):  # not empty: the run wrote there
                self._made.rmdir()
        self.path = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_lock_free(path: Path, what: str, heartbeat_s: float = LOCK_HEARTBEAT_S) -> None:
    """Refuse, naming the holder, when a live run holds `path` (a stale lock is fine: the job takes it over)."""
    raw, holder, age = _read_lock(path)
    if raw is not None and not _is_stale(holder, age, heartbeat_s):
        raise UserError(held_message(path, holder, what, heartbeat_s))


def describe_holder(holder: dict) -> str:
    if not holder:
        return "a run that is starting (the lock has no content yet)"
    slurm = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"process {holder.get('pid')} on host {holder.get('host')}{slurm}, started {holder.get('started')}"


def held_message(path: Path, holder: dict, what: str, heartbeat_s: float) -> str:
    stale_after = heartbeat_s * LOCK_STALE_HEARTBEATS
    return (
        f"Another {what} is writing to {path.parent} ({describe_holder(holder)}): two runs on one output would "
        f"interleave. Wait for it to finish (or cancel it), or pass another output. If that run is gone, its lock "
        f"{path} is taken over by itself: at once on the same host, after {stale_after:.0f} s without its heartbeat "
        "from another host."
    )


def _read_lock(path: Path) -> tuple[bytes | None, dict, float]:
    """The lock's bytes (None: no lock), its holder ({} while the holder is still writing it) and its age in
    seconds by the filesystem's clock (the holder may be another machine, with another clock)."""
    try:
        raw = path.read_bytes()
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None, {}, 0.0
    try:
        holder = json.loads(raw)
        holder = holder if isinstance(holder, dict) else {}
    except ValueError:
        holder = {}
    return raw, holder, max(0.0, _filesystem_now(path.parent) - modified)


def _filesystem_now(directory: Path) -> float:
    probe = write_probe_path(directory)
    try:
        probe.write_bytes(b"")
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        probe.unlink(missing_ok=True)


def _is_stale(holder: dict, age_s: float, heartbeat_s: float) -> bool:
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job_id") == job:
        return True  # an earlier run of this very job (requeued, maybe on another node): SLURM runs one at a time
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        start = _process_start(holder["pid"])
        # The process is gone, or its id now belongs to another process (started at another time).
        return start is None or (holder.get("process_start") is not None and start != holder["process_start"])
    return age_s > heartbeat_s * LOCK_STALE_HEARTBEATS


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), "alive" elsewhere; None if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]  # a zombie has ended, only its exit status is left
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: alive
    return "alive"


def _remove_stale(path: Path, raw: bytes) -> None:
    """Remove the stale lock whose bytes are `raw`, unless another run took it over meanwhile. The takeover is
    itself guarded by an exclusive marker: two runs that both found the lock stale must not remove each other's
    new lock."""
    marker = path.with_name(path.name + ".takeover")
    try:
        descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - marker.stat().st_mtime > TAKEOVER_STALE_S:
                marker.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.1)
        return
    try:
        current, _, _ = _read_lock(path)
        if current == raw:
            path.unlink(missing_ok=True)
    finally:
        os.close(descriptor)
        marker.unlink(missing_ok=True)


# ------------------------------------------------------------------------- workers die with their launcher
LAUNCHER_GONE_GRACE_S = 60.0  # after the clean-stop signal, what a worker gets to finish its step or chunk


def exit_with_launcher(poll_s: float = 1.0, grace_s: float = LAUNCHER_GONE_GRACE_S) -> None:
    """A torchrun worker (accelerate launch --multi_gpu) stops when its launcher dies, even by SIGKILL (the OOM
    killer, kill -9): torchrun starts workers in sessions of their own, so nothing else would stop them, and they
    would go on writing next to a new run. Their parent is the launcher itself (torchrun's agent runs inside
    `accelerate launch`, under srun too), so the kernel's parent-death signal (Linux) reaches them: SIGTERM, the
    jobs' clean stop after the step or chunk in flight. A watchdog thread covers what that does not (other systems,
    a launcher gone before this runs) and kills the worker if it has not stopped `grace_s` later (a worker blocked
    at a barrier never reaches a safe point)."""
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
    from accelerate.utils import broadcast_object_list, gather_object

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
        raise on_every_process(UserError(f"{message[1]}. Pass a {option} in a directory you can write to."))
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
        raise on_every_process(
            UserError(
                f"{directory} is not shared by all nodes: a file that the main process wrote there on node {main_host} "
                f"is not visible on node(s) {', '.join(nodes)} (process(es) {ranks}) after {wait_seconds:.0f} s. A run "
                f"over several nodes writes its outputs on every node and reads them all on the main one, so {option} "
                "must be on a filesystem that every node mounts (a home, project or shared scratch directory), not on "
                "node-local storage such as /tmp or $TMPDIR."
            )
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


def on_main_process(accelerator: Accelerator, work: Callable[[], T]) -> T:
    """`work()` on the main process only, its result handed to every process (a barrier). A problem there that
    the user can fix (UserError, a full disk) is raised on every process, so all of them exit with the one message,
    instead of the others waiting at a barrier for a process that has gone and dying in gloo with a traceback."""
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
    # group's teardown ("terminate called without an active exception", SIGABRT) and turn status 2 into 134.
    accelerator.end_training()
    return code
