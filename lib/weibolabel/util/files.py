"""Atomic writes (a reader never sees half a file; a failed write leaves nothing) and backups of users' files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False, tmp_name: str | None = None) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, for writers that go by it), renamed over `path` when the block
    succeeds, removed when it fails. `fsync`: a machine crash too leaves the old file or the new one; `tmp_name`:
    where a resume or a clean-up looks for it."""
    path = Path(path)
    tmp = path.with_name(tmp_name or f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a read-only disk refuses even this: the first error is the one to say
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and str(error.filename) in ("None", str(tmp)):
            error.filename = str(path)  # a full disk's error names no file, or the temporary one: name the output
        raise


def write_text(path: str | Path, text: str) -> None:
    """`text` into `path` as UTF-8, atomically: a full disk leaves the old file or none, never half a report."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def backup_copy(path: str | Path) -> Path:
    """A timestamped copy beside `path` (`train.backup-20240102-150405.xlsx`), never over an earlier one."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    backup, n = path.with_name(f"{path.stem}.backup-{stamp}{path.suffix}"), 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.stem}.backup-{stamp}-{n}{path.suffix}")
    with atomic_path(backup) as tmp:  # a full disk leaves no half a backup that looks whole
        shutil.copy2(path, tmp)
    return backup


def write_json(path: Path, payload) -> None:
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
