"""Run a job that waits at every safe point (after each training step, after each labeled chunk) while the file
WEIBOLABEL_TEST_GATE names exists, so that a test can act while it runs, whatever the machine's load; nothing else
changes. `python slow_wrapper.py jobs/<job>.py ARGS...` runs the
job as `python jobs/<job>.py ARGS...` would."""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

from weibolabel.run import preemption

gate = Path(os.environ["WEIBOLABEL_TEST_GATE"])
original_check = preemption.StopSignal.check


def check(self, where):
    while gate.exists() and not self.requested:  # a stop signal ends the wait, as a job's would
        time.sleep(0.05)
    original_check(self, where)


preemption.StopSignal.check = check

script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = str(Path(script).resolve().parent)  # as `python jobs/<job>.py` sets it, not this file's folder
runpy.run_path(script, run_name="__main__")
