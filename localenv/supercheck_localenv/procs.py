"""Background processes of the local environment, tracked by pid file.

Each process runs in its own session (so it outlives `make dev-up` and can be
stopped as a tree), logs to `.dev/logs/<name>.log`, and is recorded in
`.dev/pids/<name>.pid` together with its start time, so a recycled pid is never
mistaken for ours and `make dev-down` stops exactly what `make dev-up` started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from supercheck_localenv.layout import Layout


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Proc:
    layout: Layout
    name: str

    @property
    def pid_file(self) -> Path:
        return self.layout.pids / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.layout.logs / f"{self.name}.log"

    def record(self) -> dict | None:
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        rec = self.record()
        if rec and _start_ticks(rec["pid"]) == rec["start"]:
            try:
                # A zombie has exited; only its parent's wait is missing.
                if Path(f"/proc/{rec['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return None
            except OSError:
                return None
            return rec["pid"]
        return None

    def running(self) -> bool:
        return self.pid is not None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              meta: dict | None = None) -> int:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        self.layout.pids.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(
            json.dumps({"pid": proc.pid, "start": _start_ticks(proc.pid), "argv": argv, "meta": meta or {}})
        )
        return proc.pid

    def signal(self, sig: int) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after `timeout`; forget the pid file."""
        pid = self.pid
        if pid is not None:
            self.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid is not None:
                _reap(pid)
                time.sleep(0.05)
            if self.pid is not None:
                self.signal(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and self.pid is not None:
                    _reap(pid)
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would (used by fault tests)."""
        pid = self.pid
        self.signal(signal.SIGKILL)
        if pid is not None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.pid is not None:
                _reap(pid)
                time.sleep(0.02)
        self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (e.g. started in this test session)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
