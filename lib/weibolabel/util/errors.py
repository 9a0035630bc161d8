"""The one exception type a user sees as a message, never as a traceback, and the exit status that goes with it."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """Bad input or setup the user can fix; the jobs print the message and exit with status 2."""


def on_every_process(error: BaseException) -> BaseException:
    """Mark `error` as raised by every process at the same point (after a collective), so that run_guarded has them
    leave together; returns it, to raise."""
    error.on_every_process = True
    return error


def raised_on_every_process(error: BaseException) -> bool:
    return getattr(error, "on_every_process", False)


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


EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C


def exit_status(work: Callable[[], object]) -> int:
    """A single-process job's exit status: 0 done, 2 with the one-line message on stderr for a UserError or a full,
    read-only or failing disk, 130 on Ctrl-C (the distributed jobs use run_guarded)."""
    try:
        work()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        message = storage_error_message(error, "no file was left half-written")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped (Ctrl-C); no file was left half-written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
