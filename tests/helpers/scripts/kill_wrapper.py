"""Run a job after patching one of its functions from outside to signal the process at an exact point (no test
hooks in the production code): `python kill_wrapper.py jobs/<job>.py ARGS...` runs the job as `python jobs/<job>.py
ARGS...` would. The point is WEIBOLABEL_TEST_KILL_AT, the signal WEIBOLABEL_TEST_SIGNAL (default SIGKILL):

    step:<where>       training, at StopSignal.check(where) (after that step's update)
    part_tmp:<chunk>   labeling, half of the chunk's part file written under its temporary name
    done_tmp:<chunk>   labeling, part renamed into place but its completion record not yet
    after:<chunk>      labeling, right after the chunk is complete
    slow:<seconds>     labeling, no signal, a pause after each chunk so the test can kill at a random moment
    merge:<n>          labeling, after n parts were copied into the merged file's temporary name
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from weibolabel.labeling import parts as parquet_io
from weibolabel.run import preemption

mode, _, arg = os.environ.get("WEIBOLABEL_TEST_KILL_AT", "").partition(":")
signum = getattr(signal, os.environ.get("WEIBOLABEL_TEST_SIGNAL", "SIGKILL"))
if signum == signal.SIGINT:
    # Ctrl-C at a terminal: a test run as a background job of a shell without job control (`pytest &` in a script)
    # starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the job would run on.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def die() -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.2)


if mode == "step":
    original_check = preemption.StopSignal.check

    def check(self, where):
        if where == arg:
            die()
        original_check(self, where)

    preemption.StopSignal.check = check
elif mode in ("after", "slow"):
    original_write = parquet_io.PartStore.write

    def write(self, chunk, frame, record):
        original_write(self, chunk, frame, record)
        if mode == "after" and chunk == int(arg):
            die()
        if mode == "slow":
            time.sleep(float(arg))

    parquet_io.PartStore.write = write
elif mode == "part_tmp":
    original_write_table = pq.write_table

    def write_table(table, where, *args, **kwargs):
        original_write_table(table, where, *args, **kwargs)
        if f"part-{int(arg):05d}" in str(where):
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
            die()

    pq.write_table = write_table
elif mode == "done_tmp":
    original_fsync = parquet_io._fsync

    def fsync(path):
        if path.name.startswith(f"part-{int(arg):05d}.") and path.name.endswith(".tmp"):
            die()
        original_fsync(path)

    parquet_io._fsync = fsync
elif mode == "merge":

    class Writer(pq.ParquetWriter):
        written = 0

        def write_table(self, table, *args, **kwargs):
            super().write_table(table, *args, **kwargs)
            Writer.written += 1
            if Writer.written == int(arg):
                die()

    pq.ParquetWriter = Writer

script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = str(Path(script).resolve().parent)  # as `python jobs/<job>.py` sets it, not this file's folder
runpy.run_path(script, run_name="__main__")
