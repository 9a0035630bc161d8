"""Check a job's inputs in one light process before a launch starts many:

    python -m weibolabel.run.preflight jobs/train.py --data comments.xlsx --output_dir runs/cv ...

scripts/launch.sh and slurm/launch.sh run this first. A problem the user can fix then ends the launch with the
job's own one-line message and exit status 2, before `accelerate launch` or `srun` start anything, so the last
line a user reads is that message and not a launcher's traceback, and a wrong path costs seconds, not a GPU
allocation. The checks are the job's own: its `preflight(argv)` function runs the validation that the job runs
at its start (config, input files, columns and labels, the model's files, the output and its lock), without
accelerate or model weights, and writes nothing. A script without a `preflight` function passes unchecked.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from weibolabel.run.launch import setup_logging
from weibolabel.util.errors import UserError, storage_error_message

logger = logging.getLogger("preflight")


def load_script(script: Path):
    """The job's module, imported from its file without running it (its `if __name__ == "__main__"` stays off)."""
    name = f"preflight_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m weibolabel.run.preflight JOB_SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    script, args = Path(argv[0]), argv[1:]
    if not script.is_file():
        print(f"error: no such job script: {script}", file=sys.stderr)
        return 2
    check = getattr(load_script(script), "preflight", None)
    if check is None:
        return 0
    setup_logging()  # the jobs' own log format: the message reads as the job would print it
    sys.argv = [str(script), *args]  # --help and argparse's errors name the job, not this module
    try:
        check(args)  # a bad option or config file exits 2 itself, with argparse's message
    except UserError as error:
        logger.error(str(error))
        return 2
    except OSError as error:  # unreadable storage: the same message as the job's
        message = storage_error_message(error, "nothing was started")
        if message is None:
            raise
        logger.error(message)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
