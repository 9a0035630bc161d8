"""What a job does before its heavy imports: torch, transformers and accelerate take some 5 s (bench/startup.py), so
the jobs check their options and inputs first, with this module, pandas and pyarrow only, and answer in a second."""

from __future__ import annotations

import logging
import os
import time

# Set by torchrun / `accelerate launch` (RANK) or mpirun in every process it starts; none of them in a plain run.
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def is_main_launch_process() -> bool:
    """Whether this is the launch's main process (rank 0, or a plain `python jobs/...`), before accelerate starts:
    only it prints, as accelerate's logger would."""
    for variable in RANK_VARIABLES:
        if variable in os.environ:
            return os.environ[variable].strip() == "0"
    return True


def refuse(error: Exception, name: str) -> int:
    """A job's exit status for a UserError, storage OSError or Ctrl-C met before its heavy imports: 2 (130), with the
    one-line message from the main process only; another OSError is re-raised. No process group exists yet: each
    process stops on its own (where only the main one checks, the launcher ends the others)."""
    from weibolabel.util.errors import EXIT_INTERRUPTED, storage_error_message

    if isinstance(error, KeyboardInterrupt):
        if is_main_launch_process():
            logging.getLogger(name).warning("stopped (Ctrl-C) while checking the inputs; nothing was started.")
        return EXIT_INTERRUPTED
    message = str(error)
    if isinstance(error, OSError):  # unreadable storage: the message the job gives for it later, not a traceback
        message = storage_error_message(error, "nothing was started")
        if message is None:
            raise error
    if is_main_launch_process():
        logging.getLogger(name).error(message)
    return 2


class JobLogger:
    """accelerate's `get_logger(name)` for a job, made at its first message: importing accelerate imports torch,
    which a job does only once its inputs are checked."""

    def __init__(self, name: str):
        self.name = name
        self._logger = None

    def __getattr__(self, attribute: str):
        if self._logger is None:
            from accelerate.logging import get_logger

            self._logger = get_logger(self.name)
        return getattr(self._logger, attribute)


def process_start() -> float:
    """This process's start as a `time.time()` value (a worker's, under a launcher): a job's "time to first batch"
    counts the interpreter and the imports too."""
    try:
        import psutil  # an accelerate dependency, so always installed with weibolabel

        return psutil.Process().create_time()
    except Exception:  # no psutil, or no access to the process table: when this module was imported, a little late
        return _IMPORTED


_IMPORTED = time.time()
