"""The progress reporter's events -> which tests were running, and the counts of what finished
(pure), and the reporter itself loaded by real Playwright (integration)."""

from __future__ import annotations

import json
import subprocess

import pytest

from supercheck_contract import TestSummary
from supercheck_runner.progress import CutOff, load, parse

from .conftest import NODE_MODULES, REPO


def event(kind: str, time: int, **fields) -> str:
    return json.dumps({"event": kind, "time": time, **fields})


def begin(test_id: str, title: str, time: int, retry: int = 0) -> str:
    return event("testBegin", time, id=test_id, title=title, location=f"test.spec.ts:{len(title)}", retry=retry)


def end(test_id: str, title: str, time: int, status: str, outcome: str, annotations=(), retry: int = 0) -> str:
    return event("testEnd", time, id=test_id, title=title, location=f"test.spec.ts:{len(title)}", retry=retry,
                 status=status, outcome=outcome, annotations=list(annotations), duration=time - 1000)


def test_running_tests_are_those_begun_and_not_ended_or_interrupted():
    progress = parse([
        event("begin", 1000, total=5),
        begin("a", "passes", 1000), end("a", "passes", 1500, "passed", "expected"),
        begin("b", "hangs", 1600),
        begin("c", "interrupted", 1700), end("c", "interrupted", 9000, "interrupted", "skipped"),
        begin("d", "skips itself", 1800), end("d", "skips itself", 1900, "skipped", "skipped", ["skip"]),
    ])
    progress.stopped_ms = 11_600
    assert progress.running() == [CutOff("hangs", "test.spec.ts:5", 10.0),
                                  CutOff("interrupted", "test.spec.ts:11", 8.0)]
    assert progress.not_started() == 1
    assert progress.summary() == TestSummary(total=5, passed=1, skipped=4)
    assert str(progress.running()[0]) == "'hangs' (test.spec.ts:5, ran 10.0 s)"


def test_a_retry_cut_off_keeps_the_outcome_of_the_attempt_that_ended():
    # Playwright's outcome() ignores interrupted attempts: failed once, then cut off, is failed.
    progress = parse([
        event("begin", 0, total=1),
        begin("a", "fails then hangs", 0), end("a", "fails then hangs", 1000, "failed", "unexpected"),
        begin("a", "fails then hangs", 1100, retry=1),
    ])
    assert progress.summary() == TestSummary(total=1, failed=1)
    assert [c.title for c in progress.running()] == ["fails then hangs"]


def test_a_line_cut_short_by_a_kill_and_noise_are_ignored():
    progress = parse([event("begin", 0, total=2), begin("a", "x", 10), '{"event":"testEnd","id":"a","sta', "[]", ""])
    assert progress.total == 2 and [c.title for c in progress.running()] == ["x"]


def test_no_file_means_no_progress(tmp_path):
    assert load(tmp_path / "missing.jsonl") is None


@pytest.mark.integration
def test_the_reporter_writes_as_playwright_runs(tmp_path):
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.spec.ts").write_text(
        "import { test, expect } from '@playwright/test';\n"
        "test('passes', async () => { expect(1).toBe(1); });\n"
        "test.describe('group', () => {\n"
        "  test('fails', async () => { expect(1).toBe(2); });\n"
        "  test.skip('skipped', async () => {});\n"
        "});\n")
    out_file = tmp_path / "progress.jsonl"
    config = {"testDir": str(tmp_path / "tests"), "outputDir": str(tmp_path / "out"), "workers": 1,
              "reporter": [[str(REPO / "runner-image" / "progress-reporter.mjs"), {"outputFile": str(out_file)}]]}
    (tmp_path / "playwright.config.mjs").write_text(f"export default {json.dumps(config)};\n")
    proc = subprocess.run(["node", str(NODE_MODULES / "@playwright" / "test" / "cli.js"), "test", "--config",
                           str(tmp_path / "playwright.config.mjs")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one test fails
    progress = load(out_file)
    assert progress is not None and progress.ended and progress.total == 3
    assert progress.summary() == TestSummary(total=3, passed=1, failed=1, skipped=1)
    assert progress.running() == []
    titles = sorted(t.title for t in progress.tests.values())
    assert titles == ["group › fails", "group › skipped", "passes"]
    # Relative to the test directory, as the JSON report's spec.file.
    assert {t.location for t in progress.tests.values()} == {"a.spec.ts:2", "a.spec.ts:4", "a.spec.ts:5"}
