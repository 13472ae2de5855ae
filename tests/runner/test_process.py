"""The runner's own timer: the test process is interrupted, then its whole tree killed."""

from __future__ import annotations

import sys
import textwrap
import threading
import time

import psutil
import pytest

from supercheck_runner.process import run_supervised

GRACEFUL = textwrap.dedent("""
    import signal, sys, time
    def stop(*_):
        open(sys.argv[1], "w").write("partial results")
        sys.exit(3)
    signal.signal(signal.SIGINT, stop)
    print("started", flush=True)
    time.sleep(300)
""")

# Ignores SIGINT and leaves a grandchild in a session of its own, as Playwright does with Chromium.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    open(sys.argv[1], "w").write(str(child.pid))
    print("started", flush=True)
    time.sleep(300)
""")


@pytest.mark.integration
def test_deadline_interrupts_first_so_partial_results_are_written(tmp_path):
    marker = tmp_path / "partial"
    started = time.monotonic()
    outcome = run_supervised([sys.executable, "-c", GRACEFUL, str(marker)], env={}, cwd=tmp_path,
                             log_path=tmp_path / "console.log", deadline_at=time.monotonic() + 1.5,
                             kill_grace_seconds=10, echo=lambda line: None)
    assert outcome.timed_out and outcome.exit_code == 3
    assert marker.read_text() == "partial results"
    assert time.monotonic() - started < 8  # it did not wait for the kill grace
    log = (tmp_path / "console.log").read_text()
    assert "started" in log and "SIGINT" in log


@pytest.mark.integration
def test_a_process_that_ignores_sigint_is_killed_with_its_whole_tree(tmp_path):
    pid_file = tmp_path / "grandchild"
    outcome = run_supervised([sys.executable, "-c", STUBBORN, str(pid_file)], env={}, cwd=tmp_path,
                             log_path=tmp_path / "console.log", deadline_at=time.monotonic() + 1.5,
                             kill_grace_seconds=1, echo=lambda line: None)
    assert outcome.timed_out and outcome.exit_code == -9
    grandchild = int(pid_file.read_text())
    # Gone, or a zombie waiting for its (killed) parent's reaper: either way, not running.
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert "SIGKILL" in (tmp_path / "console.log").read_text()


@pytest.mark.integration
def test_a_stop_request_ends_the_run_like_a_deadline(tmp_path):
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    outcome = run_supervised([sys.executable, "-c", GRACEFUL, str(tmp_path / "m")], env={}, cwd=tmp_path,
                             log_path=tmp_path / "console.log", deadline_at=time.monotonic() + 60,
                             stop_requested=stop, echo=lambda line: None)
    assert outcome.stopped == "signal" and not outcome.timed_out


@pytest.mark.integration
def test_output_is_teed_and_memory_sampled(tmp_path):
    lines = []
    script = "import time\nx = bytearray(50 * 1024 * 1024)\nprint('hello', flush=True)\ntime.sleep(1.2)\n"
    outcome = run_supervised([sys.executable, "-c", script], env={}, cwd=tmp_path, log_path=tmp_path / "c.log",
                             deadline_at=time.monotonic() + 30, echo=lines.append)
    assert outcome.exit_code == 0 and outcome.stopped is None
    assert lines == [b"hello\n"] and (tmp_path / "c.log").read_bytes() == b"hello\n"
    assert outcome.peak_rss_bytes > 50 * 1024 * 1024


def test_a_missing_program_is_reported_not_raised(tmp_path):
    outcome = run_supervised(["/nonexistent/program"], env={}, cwd=tmp_path, log_path=tmp_path / "c.log",
                             deadline_at=time.monotonic() + 5, echo=lambda line: None)
    assert outcome.exit_code is None and "could not start" in (tmp_path / "c.log").read_text()
