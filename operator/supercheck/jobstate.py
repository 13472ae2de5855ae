"""A JobRun's status as pure functions: its tests and their tally, its shards' attempts, its verdict.

The engine (:mod:`supercheck.engine.jobrun`) reads the status, asks these functions what the next
status is, and writes it in one patch per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from supercheck.clock import human_duration, iso, parse_iso
from supercheck.jobmodels import JobProgress, JobRunStatus, ShardStatus, TestStatus
from supercheck.jobpods import Test
from supercheck.jobrows import JobRow, JobTestRow
from supercheck.models import AttemptRecord, Phase
from supercheck.pods import AttemptOutcome
from supercheck.retry import Decision
from supercheck.rows import schedule_of
from supercheck_contract import FailureClass, Progress, TestEnded, TestOutcome

DONE_STATES = ("Done", "Failed", "Error")


def initial_tests(tests: Sequence[Test], shards: int) -> list[TestStatus]:
    """Every test, with the shard that will run it (round robin over the sorted files, as the runner)."""
    order = sorted(tests, key=lambda t: t.file)
    return [TestStatus(name=t.name, file=t.file, shard=(i % shards) + 1 if shards else None)
            for i, t in enumerate(order)]


def initial_shards(tests: Sequence[TestStatus], shards: int) -> list[ShardStatus]:
    return [ShardStatus(index=i, tests=sum(1 for t in tests if t.shard == i)) for i in range(1, shards + 1)]


def tally(tests: Iterable[TestStatus]) -> JobProgress:
    p = JobProgress()
    for t in tests:
        p.total += 1
        if t.outcome is None:
            continue
        if t.outcome != TestOutcome.NOT_RUN:
            p.completed += 1
        if t.outcome == TestOutcome.PASSED:
            p.passed += 1
        elif t.outcome == TestOutcome.FAILED:
            p.failed += 1
        elif t.outcome == TestOutcome.FLAKY:
            p.flaky += 1
        elif t.outcome == TestOutcome.SKIPPED:
            p.skipped += 1
    return p


def progress_text(p: JobProgress) -> str:
    return f"{p.completed}/{p.total}"


def result_line(p: JobProgress) -> str:
    parts = [f"{p.passed}/{p.total} passed"]
    for n, word in ((p.failed, "failed"), (p.flaky, "flaky"), (p.skipped, "skipped")):
        if n:
            parts.append(f"{n} {word}")
    not_run = p.total - p.completed
    if not_run:
        parts.append(f"{not_run} not run")
    return ", ".join(parts)


def apply_ended(tests: Sequence[TestStatus], shard: int, ended: Iterable[TestEnded]) -> list[TestStatus]:
    """The tests with what shard ``shard`` announced; a file it announced that the job did not list
    (a git suite, whose files only the runner sees) is added."""
    out = [t.model_copy() for t in tests]
    by_file = {t.file: t for t in out}
    for e in ended:
        t = by_file.get(e.file)
        if t is None:
            t = TestStatus(name=e.file, file=e.file, shard=shard)
            out.append(t)
            by_file[e.file] = t
        t.shard = shard
        t.outcome = e.outcome
        t.durationMs = e.durationMs
        t.retries = e.retries
        t.failure = e.failure or None
    return sorted(out, key=lambda t: t.file)


def reset_shard(tests: Sequence[TestStatus], shard: int) -> list[TestStatus]:
    """A retried shard runs all its tests again: what its failed attempt announced is forgotten."""
    out = [t.model_copy() for t in tests]
    for t in out:
        if t.shard == shard:
            t.outcome = t.durationMs = t.retries = t.failure = None
    return out


def not_run(tests: Sequence[TestStatus]) -> list[TestStatus]:
    """At the end: every test that did not end is listed as not run."""
    out = [t.model_copy() for t in tests]
    for t in out:
        if t.outcome is None:
            t.outcome = TestOutcome.NOT_RUN
    return out


def claim_shard(shard: ShardStatus, pod: str) -> ShardStatus:
    s = shard.model_copy(deep=True)
    s.attempts += 1
    s.podName = pod
    s.state = "Pending"
    s.nextAttemptAt = None
    s.attemptHistory.append(AttemptRecord(attempt=s.attempts, podName=pod, phase="Pending"))
    return s


def shard_running(shard: ShardStatus, now: datetime) -> ShardStatus:
    s = shard.model_copy(deep=True)
    s.state = "Running"
    for h in s.attemptHistory:
        if h.attempt == s.attempts and not h.startedAt:
            h.phase, h.startedAt = "Running", iso(now)
    return s


def shard_phase(shard: ShardStatus, said: Progress | None) -> ShardStatus:
    """A running shard's state from its runner's last phase line: Uploading once it stores its files."""
    uploading = said is not None and said.phase == Phase.UPLOADING.value
    state = "Uploading" if uploading else "Running"
    message = said.message[:1024] if uploading and said is not None else shard.message
    if shard.state == state and shard.message == message:
        return shard
    return shard.model_copy(update={"state": state, "message": message})


def shard_seen_running(shard: ShardStatus) -> bool:
    return any(h.attempt == shard.attempts and h.startedAt for h in shard.attemptHistory)


def shard_ended(shard: ShardStatus, outcome: AttemptOutcome, decision: Decision, now: datetime) -> ShardStatus:
    """The attempt's pod ended: the shard is done (its tests ran), retries later, or failed for good."""
    s = shard.model_copy(deep=True)
    s.failureClass = outcome.failure
    s.message = (outcome.message or "")[:1024] or None
    artifacts = outcome.result.artifacts if outcome.result is not None else None
    s.report = artifacts.report if artifacts is not None else None
    s.summary = outcome.result.summary if outcome.result is not None else None
    for h in s.attemptHistory:
        if h.attempt == s.attempts:
            h.failureClass, h.exitCode, h.completedAt = outcome.failure, outcome.exit_code, iso(now)
            h.message = (outcome.message or "")[:1024] or None
            h.phase = "Passed" if outcome.failure == FailureClass.NONE else (
                "Failed" if outcome.failure == FailureClass.TEST_FAILURE else "Error")
    if outcome.failure in (FailureClass.NONE, FailureClass.TEST_FAILURE):
        s.state = "Done"
    elif decision.retry:
        s.state = "Retrying"
        s.nextAttemptAt = iso(datetime.fromtimestamp(now.timestamp() + decision.delay_seconds, UTC))
        s.message = (f"attempt {s.attempts} failed ({outcome.failure.value}): {outcome.message}; retry "
                     f"{decision.retry_number} of {decision.retry_limit} in {decision.delay_seconds:g}s")[:1024]
    else:
        s.state = "Error"
    return s


def previous_failures(shard: ShardStatus) -> list[FailureClass]:
    return [h.failureClass for h in shard.attemptHistory if h.attempt < shard.attempts and h.failureClass]


def progress_fields(tests: Sequence[TestStatus]) -> dict[str, Any]:
    p = tally(tests)
    return {"tests": [t.model_dump(mode="json", exclude_none=True) for t in tests],
            "progress": p.model_dump(mode="json"), "progressText": progress_text(p)}


def dump_shards(shards: Sequence[ShardStatus]) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json", exclude_none=True) for s in shards]


def verdict(tests: Sequence[TestStatus]) -> tuple[Phase, str]:
    """Passed when every test passed (flaky and skipped count as passing), Failed when one failed."""
    p = tally(tests)
    return (Phase.FAILED, "TestsFailed") if p.failed else (Phase.PASSED, "TestsPassed")


def terminal_patch(status: JobRunStatus, tests: Sequence[TestStatus], phase: Phase, reason: str, message: str,
                   now: datetime, failure: FailureClass | None = None) -> dict[str, Any]:
    final = not_run(tests)
    p = tally(final)
    started = parse_iso(status.startedAt)
    patch: dict[str, Any] = {
        "phase": phase.value, "slot": None, "reason": reason, "message": message[:2048],
        "completedAt": iso(now), "result": result_line(p) if p.total else phase.value.lower(),
        **progress_fields(final),
    }
    if failure is not None:
        patch["failureClass"] = failure.value
    if started:
        patch["duration"] = human_duration(max(0.0, (now - started).total_seconds()))
    return patch


def failed_tests(tests: Iterable[TestStatus]) -> list[str]:
    return [t.name for t in tests if t.outcome == TestOutcome.FAILED]


def rows(body: Mapping[str, Any], status: JobRunStatus) -> tuple[JobRow, list[JobTestRow]]:
    """The job's row (``jobs``) and its tests' rows (``job_tests``)."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    p = tally(status.tests)
    art = status.artifacts
    terminal = status.phase is not None and status.phase.terminal
    job = JobRow(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], type=spec.get("type", ""),
                 phase=status.phase.value if status.phase else Phase.PENDING.value, final=terminal,
                 reason=status.reason, message=status.message, priority=int(spec.get("priority") or 0),
                 parallelism=status.slots or int(spec.get("parallelism") or 1), total=p.total,
                 completed=p.completed, passed=p.passed, failed=p.failed, flaky=p.flaky, skipped=p.skipped,
                 not_run=sum(1 for t in status.tests if t.outcome in (None, TestOutcome.NOT_RUN)),
                 queued_at=status.queuedAt, started_at=status.startedAt, completed_at=status.completedAt,
                 report_bucket=art.bucket if art else None, report_prefix=art.prefix if art else None,
                 report_key=art.report if art else None, labels=dict(meta.get("labels") or {}),
                 schedule=schedule_of(meta), trace_id=status.traceId)
    tests = [JobTestRow(name=t.name, outcome=(t.outcome or TestOutcome.NOT_RUN).value, file=t.file,
                        duration_ms=t.durationMs, retries=t.retries or 0, shard=t.shard, failure=t.failure)
             for t in status.tests]
    return job, tests
