"""Running the test process: its own process group, its output teed, the whole tree killable.

Why a process *tree* and not just a child: Playwright's CLI starts worker processes, and each
worker launches Chromium *detached* (in a process group of its own), so killing our child's
group alone would leave browsers behind. The runner therefore

* makes itself a child subreaper (Linux), so orphans of the tree are re-parented to it and
  can still be found and reaped (the runner is often PID 1 of its container anyway);
* on the deadline, interrupts the group with SIGINT first (what Ctrl-C does in a terminal:
  Playwright and k6 both stop gracefully and write their reports), then, after a grace
  period, SIGKILLs the group and every descendant it can find.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from supercheck_contract import LOG_PREFIX

PR_SET_CHILD_SUBREAPER = 36
POLL_SECONDS = 0.2
RUNNER_LINE = LOG_PREFIX.encode()


def become_subreaper() -> bool:
    """Ask Linux to re-parent our orphaned descendants to us. Best effort."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        status: int = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return status == 0
    except (OSError, AttributeError):
        return False


@dataclass
class ProcessOutcome:
    exit_code: int | None  # None when it never started; negative: killed by that signal
    stopped: str | None  # why we stopped it: "deadline" or "signal"; None when it ended by itself
    duration_seconds: float
    peak_rss_bytes: int = 0  # the largest sum of RSS over the tree, sampled

    @property
    def timed_out(self) -> bool:
        return self.stopped == "deadline"


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_tree(pgid: int, known: list[psutil.Process]) -> None:
    """SIGKILL the group and every process we know of (those in other groups, like Chromium)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in known:
        try:
            p.kill()
        except psutil.Error:
            pass


def reap_orphans() -> None:
    """Kill and reap whatever descendants remain (re-parented to us as subreaper)."""
    me = psutil.Process()
    try:
        leftovers = me.children(recursive=True)
    except psutil.Error:
        leftovers = []
    for p in leftovers:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=3)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_supervised(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | Path,
    log_path: Path,
    deadline_at: float,
    stop_requested: threading.Event | None = None,
    kill_grace_seconds: float = 5.0,
    echo: Callable[[bytes], None] | None = None,
    ready: Callable[[], None] | None = None,
) -> ProcessOutcome:
    """Run ``cmd`` until it ends, the deadline (a monotonic time) passes, or a stop is requested.

    Its stdout and stderr go, line by line, to ``log_path`` (the console log artifact) and to
    ``echo`` (the runner's own stdout, i.e. ``kubectl logs``).

    ``ready``, when given, is called once the process has started, before it is supervised: work
    that overlaps the command's own start (validation, while Playwright loads; the command waits
    for it to say so). If it raises, the whole process tree is killed at once and the exception
    goes on to the caller.
    """
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    echo = echo or _echo_stdout
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(cmd),
                env=dict(env),
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group, so the group can be signalled
            )
        except OSError as exc:
            log.write(f"[supercheck] could not start {cmd[0]}: {exc}\n".encode())
            return ProcessOutcome(exit_code=None, stopped=None, duration_seconds=0.0)

        pump = threading.Thread(target=_pump, args=(proc.stdout, log, echo), daemon=True)
        pump.start()
        root = psutil.Process(proc.pid)
        if ready is not None:
            try:
                ready()
            except BaseException:
                kill_tree(proc.pid, _tree(root))
                proc.wait()
                pump.join(timeout=5)
                raise
        known: dict[int, psutil.Process] = {}
        peak = 0
        stopped: str | None = None
        interrupted_at: float | None = None
        last_sample = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if now - last_sample >= 0.5:
                tree = _tree(root)
                for p in tree:
                    known.setdefault(p.pid, p)
                peak = max(peak, _tree_rss(tree))
                last_sample = now
            if stopped is None:
                if now >= deadline_at:
                    stopped = "deadline"
                elif stop_requested is not None and stop_requested.is_set():
                    stopped = "signal"
                if stopped is not None:
                    for p in _tree(root):
                        known.setdefault(p.pid, p)
                    log.write(f"\n[supercheck] stopping the test ({stopped}): SIGINT to its process group\n".encode())
                    log.flush()
                    _signal_group(proc.pid, signal.SIGINT)
                    interrupted_at = now
            elif interrupted_at is not None and now - interrupted_at >= kill_grace_seconds:
                log.write(b"[supercheck] still running after the grace period: SIGKILL to the whole tree\n")
                log.flush()
                for p in _tree(root):
                    known.setdefault(p.pid, p)
                kill_tree(proc.pid, list(known.values()))
                interrupted_at = None
            # Waiting on the process, not sleeping: its end is seen at once (a sleep made every run
            # hold its slot up to POLL_SECONDS longer, 0.1 s on average, for nothing).
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_SECONDS)
        # The tree may outlive its root (Chromium in its own group): leave nothing behind.
        kill_tree(proc.pid, [p for p in known.values() if p.pid != proc.pid])
        pump.join(timeout=5)
        return ProcessOutcome(
            exit_code=proc.returncode,
            stopped=stopped,
            duration_seconds=time.monotonic() - started,
            peak_rss_bytes=peak,
        )


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pump(stream: IO[bytes], log: IO[bytes], echo: Callable[[bytes], None]) -> None:
    for line in iter(stream.readline, b""):
        log.write(line)
        log.flush()
        echo(line)
    stream.close()


def _echo_stdout(line: bytes) -> None:
    if line.startswith(RUNNER_LINE):
        # Only the runner speaks as "[supercheck] " on stdout: the operator reads its progress lines there.
        line = b"[test] " + line
    try:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    except (OSError, ValueError):
        pass
