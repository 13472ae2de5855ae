"""dev-down stops exactly what dev-up started: by recorded pid and start time, the whole tree."""

from __future__ import annotations

import json
import os
import time

from supercheck_localenv.layout import Layout
from supercheck_localenv.procs import Proc


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stop_ends_the_whole_process_tree_and_forgets_it(tmp_path):
    proc = Proc(Layout(tmp_path), "demo")
    pid = proc.start(["sh", "-c", "sleep 300 & echo $!; wait"])
    # The shell prints its child's pid after the log's header line (slow on a loaded machine).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not proc.log_file.read_text().strip().splitlines()[-1].isdigit():
        time.sleep(0.05)
    child = int(proc.log_file.read_text().strip().splitlines()[-1])
    assert proc.running() and _alive(child)
    proc.stop(timeout=5)
    assert not _alive(pid) and not _alive(child)
    assert not proc.pid_file.exists() and not proc.running()


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path):
    proc = Proc(Layout(tmp_path), "stale")
    proc.layout.pids.mkdir(parents=True)
    # Our own pid, but with another start time: what a pid file left from an earlier boot looks like.
    proc.pid_file.write_text(json.dumps({"pid": os.getpid(), "start": "1", "argv": [], "meta": {}}))
    assert proc.pid is None and not proc.running()
    proc.stop()  # must not signal this test process
    assert _alive(os.getpid())
