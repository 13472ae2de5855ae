"""What the benchmarks share: the local environment's operator process, its peak memory, percentiles."""

from __future__ import annotations

import contextlib
import math
import os
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


# The local environment's long-lived processes, by pid file; "pods" are the node agent's children
# (every container's process tree is reaped into its CPU times), "other" the rest of the machine
# (this script, anything else running; a benchmark's own processes are passed as ``extra``).
ENV_COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "node-agent", "operator",
                  "postgres", "redis", "s3")


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (every core), from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(extra: dict[str, int] | None = None) -> dict[str, float]:
    """CPU seconds so far: the machine's busy time and each environment component's (itself, and the
    children it has reaped: PostgreSQL's backends; for the node agent apart, as "pods"), and those of
    the ``extra`` processes (name: pid) a benchmark started."""
    layout = default_layout()
    snap = {"machine": _busy_seconds()}
    for name, pid in (extra or {}).items():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            snap[name] = t.user + t.system + t.children_user + t.children_system
    for name in ENV_COMPONENTS:
        pid = Proc(layout, name).pid
        if pid is None:
            continue
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        if name == "node-agent":
            snap[name] = t.user + t.system
            snap["pods"] = t.children_user + t.children_system
        else:
            snap[name] = t.user + t.system + t.children_user + t.children_system
    return snap


def cpu_profile(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds between two snapshots per component, with "other" = machine less the components."""
    spent = {k: after[k] - before[k] for k in after if k in before}
    spent["other"] = spent["machine"] - sum(v for k, v in spent.items() if k != "machine")
    return spent
