"""The rows a JobRun owes PostgreSQL: one in ``jobs``, one per test in ``job_tests``.

Plain data, no I/O: the engine fills them from the JobRun's status, :meth:`supercheck.store.Store.upsert_job`
writes them, :func:`supercheck.notify.summary_payload` tells a webhook about them. Timestamps are RFC 3339
strings, as the CR status holds them (:func:`supercheck.clock.iso`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from supercheck.clock import parse_iso

# A test's outcome, as ``job_tests.outcome`` holds it (and the ``outcome`` label of the job metrics).
PASSED, FAILED, FLAKY, SKIPPED, NOT_RUN = "passed", "failed", "flaky", "skipped", "notRun"
TEST_OUTCOMES: tuple[str, ...] = (PASSED, FAILED, FLAKY, SKIPPED, NOT_RUN)


@dataclass
class JobRow:
    """One line of the ``jobs`` table: a JobRun (a suite of tests run as one job).

    ``final`` is False for a provisional row (the job is still queued or running); a final row is never
    overwritten by a provisional one. ``duration_ms`` None: computed from ``started_at``/``completed_at``
    when both are there.
    """

    uid: str
    namespace: str
    name: str
    type: str
    phase: str
    final: bool
    reason: str | None = None
    message: str | None = None
    priority: int = 0
    parallelism: int = 1
    total: int = 0
    completed: int = 0
    passed: int = 0
    failed: int = 0
    flaky: int = 0
    skipped: int = 0
    not_run: int = 0
    queued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    report_bucket: str | None = None
    report_prefix: str | None = None
    report_key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    schedule: str | None = None  # the RunSchedule that created the job (supercheck.rows.schedule_of)
    trace_id: str | None = None  # the job's OpenTelemetry trace (status.traceId; docs/tracing.md)


@dataclass
class JobTestRow:
    """One line of the ``job_tests`` table: one test of a job, unique by ``name`` within the job.

    The job's uid, namespace and name are not repeated here: :meth:`~supercheck.store.Store.upsert_job`
    takes them from the :class:`JobRow` it writes with (so they cannot disagree). ``completed_at`` None:
    the job's ``completed_at`` is stored.
    """

    name: str
    outcome: str  # one of TEST_OUTCOMES
    file: str | None = None
    duration_ms: int | None = None
    retries: int = 0
    shard: int | None = None
    failure: str | None = None
    completed_at: str | None = None


def check_tests(tests: Iterable[JobTestRow]) -> None:
    """Refuse what PostgreSQL would refuse, before it is sent: an unknown outcome, a name twice.

    A ValueError is the caller's bug (it would never land however often it is retried), unlike
    :class:`~supercheck.ports.StoreUnavailable`.
    """
    seen: set[str] = set()
    for t in tests:
        if t.outcome not in TEST_OUTCOMES:
            raise ValueError(f"test {t.name!r}: outcome {t.outcome!r} is not one of {', '.join(TEST_OUTCOMES)}")
        if t.name in seen:
            raise ValueError(f"test {t.name!r} is listed twice (a job's test names are unique)")
        seen.add(t.name)


def duration_ms(job: JobRow) -> int | None:
    """The job's ``duration_ms``, or else the time from its start to its end (None while unknown)."""
    if job.duration_ms is not None:
        return job.duration_ms
    started, completed = parse_iso(job.started_at), parse_iso(job.completed_at)
    return int((completed - started).total_seconds() * 1000) if started and completed else None
