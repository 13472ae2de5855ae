"""What the benchmarks share: the local environment's operator process, its peak memory, percentiles."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterable

import psutil

from supercheck_localenv.layout import default_layout
from supercheck_localenv.procs import Proc


def operator_process() -> psutil.Process:
    """The operator the local environment runs (exits with a hint when there is none)."""
    pid = Proc(default_layout(), "operator").pid
    if pid is None:
        sys.exit("the operator of the local environment is not running (make dev-up)")
    return psutil.Process(pid)


class PeakRss:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``stop()`` answers the peak (bytes)."""

    def __init__(self, proc: psutil.Process, interval: float = 2.0) -> None:
        self.proc, self.interval = proc, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def pct(values: Iterable[float], q: float) -> float:
    """The q-th percentile, nearest rank; NaN when there is no value."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]
