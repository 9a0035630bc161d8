"""What a job does before its heavy imports.

torch, transformers and accelerate take some 5 s to import on a 2-core machine (bench/startup.py). The jobs parse
their options and check their inputs first, with this module, pandas and pyarrow only, so that `--help` and a
bad input's message come in about a second; they import the rest once the inputs are known to be good. Nothing
here imports them.
"""

from __future__ import annotations

import logging
import os
import time

# Set by torchrun / `accelerate launch` (RANK) or mpirun in every process it starts; none of them in a plain run.
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def is_main_launch_process() -> bool:
    """Whether this is the launch's main process (rank 0, or a plain `python jobs/...`), known before accelerate
    has started: what accelerate's logger would print, only this process prints."""
    for variable in RANK_VARIABLES:
        if variable in os.environ:
            return os.environ[variable].strip() == "0"
    return True


def refuse(error: Exception, name: str) -> int:
    """A job's exit status for a UserError or OSError met before its heavy imports: 2, with the one-line message in
    the jobs' log format (from the main process only, as a job's later errors); any other OSError is re-raised.
    No process group exists yet, so each process checks for itself and stops on its own; where only the main
    process checks (the labeling job's input headers), the launcher ends the others once it has failed.

        try:
            output, files = check_inputs(config)
        except (UserError, OSError) as error:
            return refuse(error, "label_corpus")
    """
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
    """accelerate's logger for a job (`get_logger(name)`: each message from the main process only, unless
    `main_process_only=False`), made at its first message: importing accelerate imports torch, which a job does
    only once its inputs are checked."""

    def __init__(self, name: str):
        self.name = name
        self._logger = None

    def __getattr__(self, attribute: str):
        if self._logger is None:
            from accelerate.logging import get_logger

            self._logger = get_logger(self.name)
        return getattr(self._logger, attribute)


def process_start() -> float:
    """This process's start, as a `time.time()` value: a job's "time to first batch" counts the interpreter and the
    imports too. (Under `accelerate launch`, the worker's start; the launcher's own start-up comes before it.)"""
    try:
        import psutil  # an accelerate dependency, so always installed with weibolabel

        return psutil.Process().create_time()
    except Exception:  # no psutil, or no access to the process table: when this module was imported, a little late
        return _IMPORTED


_IMPORTED = time.time()
