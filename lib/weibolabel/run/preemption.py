"""Clean stops on SIGTERM (SLURM's time limit, `scontrol requeue`) and SIGUSR1 (`--signal=USR1@...`)."""

from __future__ import annotations

import signal

EXIT_PREEMPTED = 143  # 128 + SIGTERM: what schedulers expect from a job that stopped on their signal


class Preempted(Exception):
    """Raised at a safe point after a stop signal; progress up to that point is on disk."""


class StopSignal:
    """Remembers that a stop signal arrived; long loops call `check()` at safe points."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGUSR1)):
        self.received: int | None = None
        for signum in signals:
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None

    def check(self, where: str) -> None:
        if self.received is not None:
            raise Preempted(f"stopped on {signal.Signals(self.received).name} {where}")
