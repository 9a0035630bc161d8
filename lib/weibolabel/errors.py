"""The one exception type a user sees as a message, never as a traceback, and the exit status that goes with it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input or setup the user can fix; the jobs print the message and exit with status 2."""


def on_every_process(error: BaseException) -> BaseException:
    """Mark `error` as raised by every process of a run at the same point (after a collective that told them all),
    so that runs.run_guarded can have them leave together, as a finished run does; returns it, to raise."""
    error.on_every_process = True
    return error


def raised_on_every_process(error: BaseException) -> bool:
    return getattr(error, "on_every_process", False)


def exit_status(work: Callable[[], object]) -> int:
    """Run a single-process job: 0 when `work` finishes, 2 with the one-line message on stderr for a UserError.
    (The distributed jobs use runs.run_guarded, which also brings every process down together.)"""
    try:
        work()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
