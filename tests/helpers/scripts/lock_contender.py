"""`python lock_contender.py LOCK GO`: waits for the file GO, then tries to take the run lock LOCK; prints `held`
(and holds it for 3 s) or `refused: <the message>`. Several at once test the takeover of a stale lock."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from weibolabel.run.lock import RunLock
from weibolabel.util.errors import UserError

lock, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    with RunLock() as run_lock:
        run_lock.acquire(lock, "test run")
        print("held", flush=True)
        time.sleep(3)
except UserError as error:
    print("refused:", error, flush=True)
