"""Check a job's inputs in one light process before a launch starts many:

    python -m weibolabel.run.preflight jobs/train.py --data comments.xlsx --output_dir runs/cv ...

scripts/launch.sh and slurm/launch.sh run this first, so a problem the user can fix ends the launch with the job's
own one-line message (exit status 2) before `accelerate launch` or `srun` start anything, not with a launcher's
traceback after a GPU allocation. It runs the job's `preflight(argv)` (the checks the job makes at its start,
without accelerate or model weights; it writes nothing); a script without one passes unchecked.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from weibolabel.run.launch import setup_logging
from weibolabel.run.startup import refuse
from weibolabel.util.errors import UserError


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
    except (UserError, OSError) as error:  # unreadable storage: the job's message for it; another OSError is raised
        return refuse(error, "preflight")
    return 0


if __name__ == "__main__":
    sys.exit(main())
