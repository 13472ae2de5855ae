"""The progress reporter's events -> which tests were running, the counts of what finished, and (a
job's shard) each test file as it ends, followed line by line (pure); and the reporter itself loaded by
real Playwright (integration)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from supercheck_contract import TestEnded, TestOutcome, TestSummary
from supercheck_runner.progress import CutOff, FileTracker, Follower, load, parse

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
    # A job's shard reads the same file as test files: this one failed, its first failing case named.
    tracker = FileTracker(["a.spec.ts"])
    lines = [e for line in out_file.read_text().splitlines() for e in tracker.feed(line)]
    assert len(lines) == 1 and (lines[0].outcome, lines[0].cases, lines[0].retries) == (TestOutcome.FAILED, 3, 0)
    assert lines[0].failure.startswith("group › fails: Error: expect(received).toBe(expected)"), lines[0]


# --- a job's shard: each test file's end ------------------------------------------------------------


def begin_files(files: dict[str, int]) -> str:
    return json.dumps({"event": "begin", "total": sum(files.values()), "files": files, "time": 0})


def file_case(test_id: str, file: str, outcome: str, status: str, *, line: int = 1, retry: int = 0, final: bool = True,
          duration: int = 100, error: str = "", title: str | None = None, annotations=()) -> str:
    event = {"event": "testEnd", "id": test_id, "file": file, "line": line, "title": title or test_id,
             "outcome": outcome, "status": status, "retry": retry, "final": final, "duration": duration,
             "annotations": list(annotations), "time": 0}
    if error:
        event["error"] = error
    return json.dumps(event)


def feed(tracker: FileTracker, *lines: str) -> list[TestEnded]:
    return [e for line in lines for e in tracker.feed(line)]


def test_a_file_ends_with_its_last_cases_final_result():
    tracker = FileTracker(["a.spec.ts", "b.spec.ts"])
    assert feed(tracker, begin_files({"a.spec.ts": 2, "b.spec.ts": 1})) == []
    assert feed(tracker, file_case("a1", "a.spec.ts", "expected", "passed", duration=300)) == []
    # a failed attempt with a retry to come is not final; its error is the one reported
    assert feed(tracker, file_case("a2", "a.spec.ts", "unexpected", "failed", final=False, line=7,
                               error="\x1b[31mError: expect(received).toBe(expected)\x1b[39m\n\nExpected: 2\n"
                                     "Received: 1\n    at a.spec.ts:8")) == []
    assert feed(tracker, file_case("b1", "b.spec.ts", "skipped", "skipped", annotations=["skip"], duration=0)) == [
        TestEnded(file="b.spec.ts", outcome=TestOutcome.SKIPPED, cases=1)]
    [a] = feed(tracker, file_case("a2", "a.spec.ts", "flaky", "passed", retry=1, line=7, duration=50))
    assert a == TestEnded(file="a.spec.ts", outcome=TestOutcome.FLAKY, durationMs=350, retries=1, cases=2,
                          failure="a2: Error: expect(received).toBe(expected) — Expected: 2 — Received: 1")
    assert list(tracker.ended) == ["b.spec.ts", "a.spec.ts"]


def test_failed_outranks_flaky_and_the_first_failing_case_by_its_line_is_named():
    tracker = FileTracker(["a.spec.ts"])
    lines = feed(tracker, begin_files({"a.spec.ts": 3}),
                 file_case("late", "a.spec.ts", "unexpected", "timedOut", line=20,
                       error="Test timeout of 30000ms exceeded."),
                 file_case("flaky", "a.spec.ts", "flaky", "passed", line=2, retry=1),
                 file_case("early", "a.spec.ts", "unexpected", "failed", line=10, retry=1, error="Error: early"))
    assert [(e.outcome, e.retries, e.failure) for e in lines] == [(TestOutcome.FAILED, 1, "early: Error: early")]


def test_a_file_with_a_case_cut_off_is_never_announced():
    tracker = FileTracker(["a.spec.ts"])
    assert feed(tracker, begin_files({"a.spec.ts": 2}),
                file_case("a1", "a.spec.ts", "unexpected", "interrupted"),
                file_case("a2", "a.spec.ts", "expected", "passed"),
                json.dumps({"event": "end", "status": "interrupted"})) == []


def test_a_case_skipped_by_others_holds_its_file_until_the_run_ends_well():
    # a serial group: its first test failed for good, the next was skipped (no test.skip())
    serial = [begin_files({"s.spec.ts": 2}),
              file_case("s1", "s.spec.ts", "unexpected", "failed", error="Error: first"),
              file_case("s2", "s.spec.ts", "skipped", "skipped", line=5)]
    tracker = FileTracker(["s.spec.ts"])
    assert feed(tracker, *serial) == []
    [line] = feed(tracker, json.dumps({"event": "end", "status": "failed"}))
    assert (line.outcome, line.cases, line.failure) == (TestOutcome.FAILED, 2, "s1: Error: first")
    # the same when the run was interrupted: cut off, not announced
    tracker = FileTracker(["s.spec.ts"])
    assert feed(tracker, *serial, json.dumps({"event": "end", "status": "interrupted"})) == []


def test_a_shard_file_without_any_test_ends_skipped_when_the_run_begins():
    tracker = FileTracker(["a.spec.ts", "empty.spec.ts"])
    assert feed(tracker, begin_files({"a.spec.ts": 1})) == [
        TestEnded(file="empty.spec.ts", outcome=TestOutcome.SKIPPED)]
    # nothing collected at all (a file did not load): no line; the verdict says why
    assert feed(FileTracker(["a.spec.ts"]), begin_files({})) == []


def test_a_retried_file_printed_again_replaces_its_line_and_noise_is_ignored():
    tracker = FileTracker(["a.spec.ts"])
    feed(tracker, begin_files({"a.spec.ts": 1}), "not json", "[1]", '{"event":"testEnd","id":"a1","fi')
    feed(tracker, file_case("a1", "a.spec.ts", "skipped", "skipped", annotations=["skip"]))
    feed(tracker, file_case("a1", "a.spec.ts", "expected", "passed"))
    assert [(e.file, e.outcome) for e in tracker.ended.values()] == [("a.spec.ts", TestOutcome.PASSED)]


def test_the_follower_announces_as_the_file_grows_and_reads_the_rest_when_stopped(tmp_path):
    path = tmp_path / "progress.jsonl"
    seen: list[tuple[float, TestEnded]] = []
    follower = Follower(path, FileTracker(["a.spec.ts", "b.spec.ts"]), lambda e: seen.append((time.monotonic(), e)),
                        interval=0.02).start()
    try:
        time.sleep(0.05)  # the file does not exist yet
        with open(path, "a") as f:
            f.write(begin_files({"a.spec.ts": 1, "b.spec.ts": 1}) + "\n")
            f.write(file_case("a1", "a.spec.ts", "expected", "passed") + "\n")
            f.flush()
            written = time.monotonic()
            deadline = written + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [e.file for _, e in seen] == ["a.spec.ts"] and seen[0][0] - written < 1.0
            f.write(file_case("b1", "b.spec.ts", "unexpected", "failed", error="Error: x") + "\n")
            f.write(file_case("b1", "b.spec.ts", "unexpected", "fail")[:20])  # half a line, the writer killed
    finally:
        follower.stop()
    assert [(e.file, e.outcome) for _, e in seen] == [("a.spec.ts", TestOutcome.PASSED),
                                                     ("b.spec.ts", TestOutcome.FAILED)]
