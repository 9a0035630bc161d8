"""The one exception type a user sees as a message, never as a traceback, and the exit status that goes with it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input or setup the user can fix; the jobs print the message and exit with status 2."""


def exit_status(work: Callable[[], object]) -> int:
    """Run a single-process job: 0 when `work` finishes, 2 with the one-line message on stderr for a UserError.
    (The distributed jobs use runs.run_guarded, which also brings every process down together.)"""
    try:
        work()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
