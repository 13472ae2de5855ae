"""The runner's fixed costs cut (issue 14) without changing what it checks: validate.mjs's code cache of
TypeScript, Playwright started behind a gate while validation runs, and a supervised process's end
seen at once. Real node, real processes; no mocks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supercheck_runner import playwright
from supercheck_runner.process import run_supervised
from supercheck_runner.settings import RunnerSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SETTINGS = RunnerSettings()
SPEC = """import { test, expect } from '@playwright/test';
import fs from 'fs';
test('t', async ({ page }) => { await page.goto('/'); fs.readFileSync('/etc/passwd'); });
"""


def facts(paths: list[Path], cache: Path) -> list[dict]:
    proc = subprocess.run(["node", str(SETTINGS.validate_script), *map(str, paths)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "SUPERCHECK_VALIDATOR_CACHE": str(cache)}, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_code_cache_changes_nothing_that_is_checked(tmp_path):
    spec = tmp_path / "a.spec.ts"
    spec.write_text(SPEC)
    cache = tmp_path / "cache" / "typescript.v8"
    without = facts([spec], cache)  # no cache yet: TypeScript compiled, then the cache written
    assert cache.stat().st_size > 100_000
    written = cache.stat().st_mtime_ns
    assert facts([spec], cache) == without  # with it
    assert cache.stat().st_mtime_ns == written, "a cache V8 accepted is not written again"
    cache.write_bytes(b"not V8's" * 1000)  # stale or damaged: V8 refuses it, TypeScript is compiled
    assert facts([spec], cache) == without
    assert cache.read_bytes()[:8] != b"not V8's", "a refused cache is replaced"
    assert any(i["specifier"] == "fs" for i in without[0]["imports"])  # the facts are the real ones


def test_a_read_only_cache_folder_is_no_failure(tmp_path):
    spec = tmp_path / "a.spec.ts"
    spec.write_text(SPEC)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("root writes anywhere: the read-only case cannot be made here")
        assert facts([spec], folder / "typescript.v8")[0]["imports"]
    finally:
        folder.chmod(0o700)


def test_the_config_waits_for_the_gate(tmp_path):
    (tmp_path / "node_modules").symlink_to(SETTINGS.node_modules_dir)
    gate = tmp_path / ".validated"
    options = playwright.PlaywrightOptions(out_dir=str(tmp_path / "out"), test_dir=str(tmp_path / "tests"))
    module = tmp_path / "playwright.config.mjs"
    module.write_text(playwright.render_config_module(playwright.build_config(options), "/usr/bin/chromium",
                                                      "/usr/bin/chromium", gate=str(gate)))
    loader = subprocess.Popen(["node", "--input-type=module", "-e",
                               f"const c = await import({json.dumps(module.as_uri())}); "
                               "console.log(c.default.testDir)"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            loader.wait(timeout=2)  # well past node's and Playwright's start: waiting for the gate
        gate.touch()
        out, _ = loader.communicate(timeout=10)
    finally:
        loader.kill()
    assert loader.returncode == 0 and out.strip() == str(tmp_path / "tests")


def test_a_config_without_a_gate_waits_for_nothing():
    text = playwright.render_config_module({"use": {"launchOptions": {}}}, None, "/usr/bin/chromium")
    assert "gate" not in text


def test_a_failed_ready_kills_the_started_process_and_says_why(tmp_path):
    marker = tmp_path / "ran"
    # The child starts a grandchild (as Playwright starts workers and Chromium), then would act after 3 s.
    # Both name the marker on their command lines: the test's own children (moto...) are not theirs.
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]]); "
              f"time.sleep(3); open({str(marker)!r}, 'w').close()")
    pids: list[int] = []

    def ready() -> None:
        time.sleep(0.5)
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if str(marker) in " ".join(p.cmdline()):
                    pids.append(p.pid)
        raise ValueError("the script is refused")

    started = time.monotonic()
    with pytest.raises(ValueError, match="refused"):
        run_supervised([sys.executable, "-c", script, str(marker)], env=dict(os.environ), cwd=tmp_path,
                       log_path=tmp_path / "console.log", deadline_at=time.monotonic() + 60, ready=ready)
    assert time.monotonic() - started < 2.5
    assert len(pids) >= 2
    time.sleep(3)
    assert not marker.exists()
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_a_process_that_ends_is_seen_at_once(tmp_path):
    for _ in range(5):
        outcome = run_supervised([sys.executable, "-c", "pass"], env=dict(os.environ), cwd=tmp_path,
                                 log_path=tmp_path / "console.log", deadline_at=time.monotonic() + 60)
        assert outcome.exit_code == 0
        # The interpreter's own start is most of it; a 0.2 s poll would show in every one of five runs.
        if outcome.duration_seconds < 0.15:
            return
    pytest.fail(f"the end of a process was seen {outcome.duration_seconds:.2f} s after it started")
