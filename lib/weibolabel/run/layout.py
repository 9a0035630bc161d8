"""The run directory, owned here: its files (RunLayout), the one reader of its out-of-fold predictions, a resume's
checks, which job owns a directory, and whether an output location is writable and shared by every node."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weibolabel.util.errors import UserError, on_every_process
from weibolabel.util.files import atomic_path, write_json

if TYPE_CHECKING:
    import pandas as pd
    from accelerate import Accelerator


# ------------------------------------------------------------------------------------------- the run directory
class _RunFile:
    """A file or folder of the run directory, by name: `RunLayout(root).config` is `root / "config.yaml"`."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, layout: RunLayout, owner: type | None = None) -> Path:
        return layout.root / self.name


@dataclass(frozen=True)
class RunLayout:
    """Where a training run of jobs/train.py keeps each file: the one place their names are spelled (the README's
    "The run directory" table describes them). What reads a finished run goes through it as well."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # Written when the run starts: what it is, and what the folds are.
    config = _RunFile("config.yaml")
    env = _RunFile("env.json")
    identity = _RunFile("run_identity.json")
    data_issues = _RunFile("data_issues.csv")
    folds_csv = _RunFile("folds.csv")
    lock = _RunFile(".lock")
    owner = _RunFile(".weibolabel-job")  # the job whose directory it is (every job's: claim_output_directory)
    # Gathered from the folds at the end; the report is written last, so a run with one has finished.
    oof_predictions = _RunFile("oof_predictions.parquet")
    calibration = _RunFile("calibration.json")
    metrics = _RunFile("metrics.json")
    plots = _RunFile("plots")
    report = _RunFile("report.md")

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

    def require_finished(self) -> None:
        """A UserError naming the first missing file of those that a finished run has and its readers need."""
        for path in (self.metrics, self.folds_csv, self.oof_predictions):
            if not path.is_file():
                raise UserError(f"{path} not found: {self.root} is not a finished training run of jobs/train.py.")


def read_out_of_fold(run: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The one reader of a finished run's out-of-fold predictions: its rows in `row_id` order (row_id, text, gold,
    fold, prob_<class>, ...) and the class names in id order; a run of an older format is refused."""
    import pandas as pd  # not on the jobs' --help path

    layout = RunLayout(Path(run))
    path = layout.oof_predictions
    if not path.is_file():
        raise UserError(f"{path} not found: {layout.root} is not a finished training run of jobs/train.py.")
    try:
        oof = pd.read_parquet(path)
    except Exception as error:
        raise UserError(f"{path} is not a readable Parquet file ({type(error).__name__}: {error}).") from None
    probs = [str(c).removeprefix("prob_") for c in oof.columns if str(c).startswith("prob_")]
    metrics = json.loads(layout.metrics.read_text()) if layout.metrics.is_file() else {}
    names = metrics.get("label_names") or probs
    missing = {"row_id", "text", "gold", "fold", *(f"prob_{name}" for name in names)} - set(oof.columns)
    if missing:
        raise UserError(
            f"{path} lacks the columns {sorted(missing)}: it is not an output of jobs/train.py, or one of an older "
            "version. Train the run again with this version (same --data and --seed give the same folds)."
        )
    return oof.sort_values("row_id", kind="stable").reset_index(drop=True), list(names)


def find_checkpoints(path: Path) -> list[Path]:
    """The fold checkpoints of a finished training run, or [path] for a checkpoint (here: checked before torch)."""
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


def check_run_directory(directory: Path, identity: dict, what: str) -> bool:
    """Whether `directory` already holds a run with these settings (False: a new run); one with other settings or
    data is refused, naming what changed."""
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
    """Record what a run directory holds (refusing other settings or data); whether it was there already."""
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
    """The job whose output `directory` holds: its owner record, else the job whose telling files are there (a
    directory from before owner records); None for a new or unrelated directory."""
    marker = RunLayout(directory).owner
    if marker.is_file():
        return marker.read_text(encoding="utf-8").strip() or None
    for job, files in JOB_FILES.items():
        if any(_present(directory, name) for name in files[: _TELLING_FILES.get(job, 1)]):
            return job
    return None


def _present(directory: Path, name: str) -> list[Path]:
    return list(directory.glob(name))  # a plain name too: [directory / name] if it exists


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
    """Before a job writes anything: no file it `writes` (option -> path(s)) nor its `output_dir` is a path it `reads`
    (but --output may replace the input `replaceable` names), another job's directory or another job's file. The
    refusals never suggest --overwrite, which would not help."""
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
    """Make the job's --output_dir and record it as `job`'s (a guest in its host's directory records nothing)."""
    directory.mkdir(parents=True, exist_ok=True)
    if directory_owner(directory) in GUESTS.get(job, ()):
        return
    marker = RunLayout(directory).owner
    if not marker.is_file():
        with atomic_path(marker) as tmp:
            tmp.write_text(job + "\n", encoding="utf-8")


def write_probe_path(directory: Path) -> Path:
    """A probe file no other process writes at the same time (process ids repeat across nodes: the host is named)."""
    return directory / f".write-test-{socket.gethostname()}-{os.getpid()}"


def ensure_writable(directory: Path, option: str = "--output_dir", create: bool = True) -> None:
    """Fail before any model work if outputs cannot be written here. `create=False` probes the nearest existing
    folder instead, so a run refused by a later check leaves no empty directory behind."""
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        probe = write_probe_path(directory if create else nearest_existing(directory))
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"Cannot write to {directory}: {error.strerror or error}"
            + (f" ({error.filename})" if error.filename and str(error.filename) != str(directory) else "")
            + f". Pass a {option} in a directory you can write to, or fix its permissions."
        ) from None


def nearest_existing(directory: Path) -> Path:
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
    """Every process must see what the main process writes in `directory` (parts and folds written on every node are
    read on the main one: on node-local scratch a run would fail only at the end). Called by every process."""
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
