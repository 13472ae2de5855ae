"""A JobRun's pods: which test files a shard runs, how a k6 shard's files add up to one verdict,
and what the merge of the Playwright shards' blob reports is given and says.

A JobRun runs a suite's test files split into ``shardCount`` shards, one runner pod each
(``RunnerConfig.shardIndex``, 1-based); the operator mounts the whole suite in every shard.
A shard validates every file of the suite, then runs
``shard_files(<the job's test files>, shardIndex, shardCount)`` and announces each test file as
it ends (a ``test-ended`` line, :class:`supercheck_contract.TestEnded`). A Playwright shard also
writes a blob report; the job's last pod (``mode`` "merge") merges them into one HTML report and
one JUnit XML.

Everything here is pure; the shell is :mod:`supercheck_runner.__main__`.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from supercheck_contract import (
    RESULT_JSON_NAME,
    FailureClass,
    K6Summary,
    RunnerConfig,
    TestEnded,
    TestOutcome,
    TestSummary,
    is_test_file,
    shard_files,
)
from supercheck_runner.outcome import EngineOutcome
from supercheck_runner.validate import Issue, ValidationError

RUN = "run"
MERGE = "merge"
MODES = (RUN, MERGE)
BLOB_DIR = "blob"  # under a shard's prefix: its blob report (a .zip), which the merge downloads
MERGED_JSON = "results.json"
MERGED_JUNIT = "junit.xml"
MERGED_REPORT_DIR = "report"
_TEST_NAMES = {"playwright": "*.spec.ts, *.test.ts (or .js, .mjs, .tsx ...)",
               "k6": "*.spec.js, *.test.js, *.k6.js (or .ts)"}


def is_shard(config: RunnerConfig) -> bool:
    return config.shardCount > 0 and config.mode == RUN


def label(config: RunnerConfig) -> str:
    return f"shard {config.shardIndex} of {config.shardCount}"


def shard_issues(config: RunnerConfig) -> list[Issue]:
    """What the operator got wrong in a shard's or a merge's configuration (never the user's doing)."""
    if config.mode not in MODES:
        return [Issue(None, None, f"unknown mode '{config.mode}' (run or merge)")]
    if config.mode == MERGE:
        if config.type != "playwright":
            return [Issue(None, None, f"merge mode merges Playwright blob reports; a {config.type} job has none")]
        return []
    if config.shardCount and not 1 <= config.shardIndex <= config.shardCount:
        return [Issue(None, None, f"shard index {config.shardIndex} is not between 1 and {config.shardCount}")]
    return []


def job_tests(files: Collection[str], tests: Sequence[str], test_type: str) -> list[str]:
    """The job's test files, sorted: ``tests`` when the operator gives them (each must be a file of the
    suite), else the suite's files named like tests (:func:`supercheck_contract.is_test_file`)."""
    if tests:
        named = sorted({posixpath.normpath(t.strip()).lstrip("/") for t in tests})
        missing = [t for t in named if t not in files]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                                              else "")
            _refuse(f"the job's tests name {shown}, which the suite does not have (it has "
                           f"{len(files)} files); add the file to the suite, or fix its path")
        return named
    found = sorted(f for f in files if is_test_file(f, test_type))
    if not found:
        _refuse(f"the suite has no test file: a {test_type} job runs the files named "
                       f"{_TEST_NAMES.get(test_type, 'like tests')}; the others are helpers they import")
    return found


def _refuse(message: str) -> NoReturn:
    raise ValidationError([Issue(None, None, message)])


def selection(config: RunnerConfig, files: Collection[str]) -> tuple[list[str], int]:
    """This shard's test files (:func:`supercheck_contract.shard_files`) and how many the job has."""
    tests = job_tests(files, config.tests, config.type)
    return shard_files(tests, config.shardIndex, config.shardCount), len(tests)


def named(files: Sequence[str], shown: int = 6) -> str:
    more = len(files) - shown
    return ", ".join(files[:shown]) + (f" and {more} more" if more > 0 else "")


def blob_name(config: RunnerConfig) -> str:
    """The shard's blob report; unique per shard, so the merge can hold them side by side."""
    return f"shard-{config.shardIndex}.zip"


def empty_shard(config: RunnerConfig, total: int) -> EngineOutcome:
    return EngineOutcome(FailureClass.NONE, f"{label(config)}: no test file to run (the job has {total} test "
                                            f"file{'s' if total != 1 else ''} for {config.shardCount} shards)",
                         summary=TestSummary())


# --- k6: one `k6 run` per test file -----------------------------------------------------------

# The runner's own files at the top of out/: a test file's folder must not take their names.
_TOP_NAMES = frozenset({"console.log", RESULT_JSON_NAME})


def k6_artifact_dirs(files: Sequence[str]) -> dict[str, str]:
    """Where each test file's artifacts go under out/: its path without its suffix
    (``load/checkout.k6.js`` -> ``load/checkout.k6``), or its whole path when that would collide."""
    stems = {f: posixpath.splitext(f)[0] for f in files}
    counts = Counter(stems.values())
    return {f: s if counts[s] == 1 and s not in _TOP_NAMES else f for f, s in stems.items()}


@dataclass(frozen=True)
class K6File:
    """One test file's k6 run in a shard."""

    file: str
    outcome: EngineOutcome
    seconds: float


def k6_test_ended(run: K6File) -> TestEnded | None:
    """The file's test-ended line: passed, or failed with the threshold/check text. None when the run
    says nothing of the test (infrastructure, network, validation, cut off by the deadline): it
    is not announced, the shard's verdict tells."""
    if run.outcome.failure == FailureClass.NONE:
        outcome, failure = TestOutcome.PASSED, ""
    elif run.outcome.failure == FailureClass.TEST_FAILURE:
        outcome, failure = TestOutcome.FAILED, run.outcome.message
    else:
        return None
    return TestEnded(file=run.file, outcome=outcome, durationMs=round(run.seconds * 1000), cases=1, failure=failure)


def k6_totals(runs: Sequence[K6File]) -> K6Summary | None:
    """The shard's status.k6: thresholds passed only when every file's did; checks and iterations
    summed; the worst file's p(95) of http_req_duration."""
    summaries = [r.outcome.k6 for r in runs if r.outcome.k6 is not None]
    if not summaries:
        return None
    p95s = [s.httpReqDurationP95Ms for s in summaries if s.httpReqDurationP95Ms is not None]
    return K6Summary(thresholdsPassed=all(s.thresholdsPassed for s in summaries),
                     checksPassed=sum(s.checksPassed for s in summaries),
                     checksFailed=sum(s.checksFailed for s in summaries),
                     iterations=sum(s.iterations for s in summaries),
                     httpReqDurationP95Ms=max(p95s) if p95s else None)


def k6_shard_outcome(config: RunnerConfig, selected: Sequence[str], runs: Sequence[K6File],
                     deadline_passed: bool) -> EngineOutcome:
    """One verdict for the shard's files: a file cut off by the deadline (or files the deadline left
    unstarted) is a timeout; any file's other trouble (infrastructure, network, validation) next, as
    for a single script; else a test failure when a file failed. ``summary`` counts the files."""
    passed = [r for r in runs if r.outcome.failure == FailureClass.NONE]
    failed = [r for r in runs if r.outcome.failure == FailureClass.TEST_FAILURE]
    not_run = len(selected) - len(runs)
    summary = TestSummary(total=len(selected), passed=len(passed), failed=len(failed),
                          skipped=len(selected) - len(passed) - len(failed))
    counts = (f"{len(passed)} of {len(selected)} test files passed, {len(failed)} failed"
              + (f", {not_run} not started" if not_run else ""))
    head = f"{label(config)}: "
    k6 = k6_totals(runs)
    cut = next((r for r in runs if r.outcome.failure == FailureClass.TIMEOUT), None)
    if cut is not None or (not_run and deadline_passed):
        where = f"; '{cut.file}' was running" if cut is not None else ""
        return EngineOutcome(FailureClass.TIMEOUT, f"{head}timed out: {counts}{where}", summary=summary, k6=k6)
    trouble = next((r for r in runs if r.outcome.failure not in (FailureClass.NONE, FailureClass.TEST_FAILURE)), None)
    if trouble is not None:
        return EngineOutcome(trouble.outcome.failure, f"{head}'{trouble.file}': {trouble.outcome.message} ({counts})",
                             summary=summary, k6=k6)
    if failed:
        shown = "; ".join(f"'{r.file}': {r.outcome.message}" for r in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        return EngineOutcome(FailureClass.TEST_FAILURE, f"{head}{counts}. {shown}{more}", summary=summary, k6=k6)
    return EngineOutcome(FailureClass.NONE, f"{head}{counts}", summary=summary, k6=k6)


# --- merge: the shards' blob reports into one report ----------------------------------------------


def blob_folder(prefix: str) -> str:
    """The S3 folder (a key prefix) of a shard's blob report."""
    return f"{prefix.strip('/')}/{BLOB_DIR}/"


def blob_keys(keys: Sequence[str]) -> list[str]:
    """The blob reports among a shard's objects under ``blob/`` (Playwright merges .zip files only)."""
    return sorted(k for k in keys if k.endswith(".zip"))


def local_blob_name(shard: int, key: str) -> str:
    """A downloaded blob's name: unique across shards (the listing's order first), still a .zip."""
    return f"{shard:04d}-{key.rsplit('/', 1)[-1]}"


def merge_config(test_dir: str, out_dir: str) -> dict[str, object]:
    """``playwright merge-reports -c``: the reporters and where they write; ``testDir`` makes it the
    root the shards' file names are relative to (the shards ran in work directories of their own)."""
    out = out_dir.rstrip("/")
    return {
        "testDir": test_dir,
        "reporter": [
            ["html", {"outputFolder": f"{out}/{MERGED_REPORT_DIR}", "open": "never"}],
            ["junit", {"outputFile": f"{out}/{MERGED_JUNIT}"}],
            ["json", {"outputFile": f"{out}/{MERGED_JSON}"}],
        ],
    }


def render_merge_config(config: Mapping[str, object]) -> str:
    return ("// Generated by supercheck-runner to merge a job's blob reports (runner-image/supercheck_runner/job.py).\n"
            f"export default {json.dumps(config, indent=2)};\n")


def merge_message(counts: str, merged: Sequence[str], missing: Sequence[str]) -> str:
    """What the merge did: how many shards' reports, the counts, and which prefixes had none."""
    total = len(merged) + len(missing)
    text = f"merged the blob reports of {len(merged)} of {total} shard{'s' if total != 1 else ''}: {counts}"
    if missing:
        text += f"; no blob report under {', '.join(missing)}"
    return text
