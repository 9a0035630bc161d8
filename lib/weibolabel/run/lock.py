"""One run at a time on a directory or an output: a lock file with a heartbeat, taken over when its holder is gone."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from weibolabel.run.launch import now_utc, on_main_process
from weibolabel.run.layout import RunLayout, write_probe_path
from weibolabel.util.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator

# ------------------------------------------------------------------------------------ one run at a time
LOCK_HEARTBEAT_S = 30.0  # how often the holder refreshes its lock's mtime
LOCK_STALE_HEARTBEATS = 4  # a lock of another host not refreshed for this many heartbeats (2 min) is stale
TAKEOVER_STALE_S = 60.0  # a takeover marker this old was left by a process killed in the middle of a takeover


def training_lock_path(run_directory: Path) -> Path:
    return RunLayout(run_directory).lock


def output_lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


class RunLock:
    """One run at a time per output: a lock file naming its holder (host, process id, SLURM job id), taken by the
    job's main process once its inputs are checked (`take`) and held until the job ends (`with`).

    An O_EXCL create, not flock: on shared filesystems flock is local to one client or outlives a dead node until
    the server's lease runs out, and cannot say who holds it. A dead holder is recognised: on this host, its process
    is gone; on another, it stopped refreshing the file's mtime (the heartbeat)."""

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
    """The lock's bytes (None: no lock), its holder ({} while still being written) and its age by the filesystem's
    clock (the holder may be another machine, with another clock)."""
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
    """Remove the stale lock whose bytes are `raw`, unless another run took it over meanwhile; an exclusive marker
    keeps two runs that both found it stale from removing each other's new lock."""
    marker = path.with_name(path.name + ".takeover")
    try:
        descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            if time.time() - marker.stat().st_mtime > TAKEOVER_STALE_S:
                marker.unlink(missing_ok=True)
        time.sleep(0.1)
        return
    try:
        current, _, _ = _read_lock(path)
        if current == raw:
            path.unlink(missing_ok=True)
    finally:
        os.close(descriptor)
        marker.unlink(missing_ok=True)
