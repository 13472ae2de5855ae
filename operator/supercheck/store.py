"""PostgreSQL: versioned migrations at start-up, one idempotent upsert per (uid, attempt) of a
TestRun (``runs``), one per JobRun with its tests (``jobs``, ``job_tests``), batches of Monitor
checks (``monitor_results``, written by :mod:`supercheck.monitorresults`).

The CR status is the truth while PostgreSQL is away: the operator keeps ``status.recorded``
(the attempts whose final row landed) and retries the rest until they land. A provisional
row (an attempt that started, a job still running) never overwrites a final one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg

from supercheck.clock import parse_iso
from supercheck.jobrows import JobRow, JobTestRow, check_tests, duration_ms
from supercheck.monitorresults import MonitorResultRow
from supercheck.ports import StoreUnavailable
from supercheck.redact import location, redact
from supercheck.rows import Row

log = logging.getLogger(__name__)

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_ID = 0x5C5C_0001  # advisory lock: replicas migrate one at a time


__all__ = ["Store", "StoreUnavailable", "migrate", "migrations"]


def migrations() -> list[tuple[str, str]]:
    """(version, sql) in order, from ``supercheck/migrations/NNNN_name.sql``."""
    folder = resources.files("supercheck").joinpath("migrations")
    found = sorted((m.group(1), m.group(0)) for p in folder.iterdir() if (m := MIGRATION_NAME.match(p.name)))
    return [(version, folder.joinpath(name).read_text()) for version, name in found]


UPSERT = """
INSERT INTO runs (uid, attempt, namespace, name, type, phase, final, priority, reason, message,
                  failure_class, exit_code, pod_name, queued_at, started_at, completed_at, duration_ms,
                  total, passed, failed, flaky, skipped,
                  k6_thresholds_passed, k6_checks_passed, k6_checks_failed, k6_iterations,
                  k6_http_req_duration_p95_ms, artifacts_bucket, artifacts_prefix, artifacts_report, labels,
                  schedule, trace_id)
VALUES (%(uid)s, %(attempt)s, %(namespace)s, %(name)s, %(type)s, %(phase)s, %(final)s, %(priority)s,
        %(reason)s, %(message)s, %(failure_class)s, %(exit_code)s, %(pod_name)s, %(queued_at)s,
        %(started_at)s, %(completed_at)s, %(duration_ms)s, %(total)s, %(passed)s, %(failed)s, %(flaky)s,
        %(skipped)s, %(k6_thresholds_passed)s, %(k6_checks_passed)s, %(k6_checks_failed)s,
        %(k6_iterations)s, %(k6_p95)s, %(bucket)s, %(prefix)s, %(report)s, %(labels)s, %(schedule)s,
        %(trace_id)s)
ON CONFLICT (uid, attempt) DO UPDATE SET
    namespace = EXCLUDED.namespace, name = EXCLUDED.name, type = EXCLUDED.type,
    phase = EXCLUDED.phase, final = EXCLUDED.final, priority = EXCLUDED.priority,
    reason = EXCLUDED.reason, message = EXCLUDED.message, failure_class = EXCLUDED.failure_class,
    exit_code = EXCLUDED.exit_code, pod_name = EXCLUDED.pod_name, queued_at = EXCLUDED.queued_at,
    started_at = COALESCE(EXCLUDED.started_at, runs.started_at), completed_at = EXCLUDED.completed_at,
    duration_ms = EXCLUDED.duration_ms, total = EXCLUDED.total, passed = EXCLUDED.passed,
    failed = EXCLUDED.failed, flaky = EXCLUDED.flaky, skipped = EXCLUDED.skipped,
    k6_thresholds_passed = EXCLUDED.k6_thresholds_passed, k6_checks_passed = EXCLUDED.k6_checks_passed,
    k6_checks_failed = EXCLUDED.k6_checks_failed, k6_iterations = EXCLUDED.k6_iterations,
    k6_http_req_duration_p95_ms = EXCLUDED.k6_http_req_duration_p95_ms,
    artifacts_bucket = EXCLUDED.artifacts_bucket, artifacts_prefix = EXCLUDED.artifacts_prefix,
    artifacts_report = EXCLUDED.artifacts_report, labels = EXCLUDED.labels, schedule = EXCLUDED.schedule,
    trace_id = COALESCE(EXCLUDED.trace_id, runs.trace_id), updated_at = now()
WHERE NOT runs.final OR EXCLUDED.final
"""


def row_params(row: Row) -> dict[str, Any]:
    started, completed = parse_iso(row.started_at), parse_iso(row.completed_at)
    duration = int((completed - started).total_seconds() * 1000) if started and completed else None
    s, k, a = row.summary or {}, row.k6 or {}, row.artifacts or {}
    d = asdict(row)
    d["message"] = redact(d["message"]) if d["message"] else d["message"]
    return {
        **{key: d[key] for key in ("uid", "attempt", "namespace", "name", "type", "phase", "final", "priority",
                                   "reason", "message", "failure_class", "exit_code", "pod_name",
                                   "schedule", "trace_id")},
        "queued_at": parse_iso(row.queued_at),
        "started_at": started,
        "completed_at": completed,
        "duration_ms": duration,
        "total": s.get("total"),
        "passed": s.get("passed"),
        "failed": s.get("failed"),
        "flaky": s.get("flaky"),
        "skipped": s.get("skipped"),
        "k6_thresholds_passed": k.get("thresholdsPassed"),
        "k6_checks_passed": k.get("checksPassed"),
        "k6_checks_failed": k.get("checksFailed"),
        "k6_iterations": k.get("iterations"),
        "k6_p95": k.get("httpReqDurationP95Ms"),
        "bucket": a.get("bucket"),
        "prefix": a.get("prefix"),
        "report": a.get("report"),
        "labels": json.dumps(row.labels or {}),
    }


UPSERT_JOB = """
INSERT INTO jobs (uid, namespace, name, type, phase, final, reason, message, priority, parallelism,
                  total, completed, passed, failed, flaky, skipped, not_run, queued_at, started_at,
                  completed_at, duration_ms, report_bucket, report_prefix, report_key, labels, schedule,
                  trace_id)
VALUES (%(uid)s, %(namespace)s, %(name)s, %(type)s, %(phase)s, %(final)s, %(reason)s, %(message)s,
        %(priority)s, %(parallelism)s, %(total)s, %(completed)s, %(passed)s, %(failed)s, %(flaky)s,
        %(skipped)s, %(not_run)s, %(queued_at)s, %(started_at)s, %(completed_at)s, %(duration_ms)s,
        %(report_bucket)s, %(report_prefix)s, %(report_key)s, %(labels)s, %(schedule)s, %(trace_id)s)
ON CONFLICT (uid) DO UPDATE SET
    namespace = EXCLUDED.namespace, name = EXCLUDED.name, type = EXCLUDED.type, phase = EXCLUDED.phase,
    final = EXCLUDED.final, reason = EXCLUDED.reason, message = EXCLUDED.message,
    priority = EXCLUDED.priority, parallelism = EXCLUDED.parallelism, total = EXCLUDED.total,
    completed = EXCLUDED.completed, passed = EXCLUDED.passed, failed = EXCLUDED.failed,
    flaky = EXCLUDED.flaky, skipped = EXCLUDED.skipped, not_run = EXCLUDED.not_run,
    queued_at = COALESCE(EXCLUDED.queued_at, jobs.queued_at),
    started_at = COALESCE(EXCLUDED.started_at, jobs.started_at), completed_at = EXCLUDED.completed_at,
    duration_ms = EXCLUDED.duration_ms, report_bucket = EXCLUDED.report_bucket,
    report_prefix = EXCLUDED.report_prefix, report_key = EXCLUDED.report_key, labels = EXCLUDED.labels,
    schedule = EXCLUDED.schedule, trace_id = COALESCE(EXCLUDED.trace_id, jobs.trace_id), updated_at = now()
WHERE NOT jobs.final OR EXCLUDED.final
RETURNING uid
"""

# Every test of the job in one statement (one round trip however many tests): the rows travel as one
# JSON array. A test's completed_at defaults to the job's.
UPSERT_JOB_TESTS = """
INSERT INTO job_tests (job_uid, name, file, outcome, duration_ms, retries, shard, failure, namespace, job_name,
                       completed_at)
SELECT %(uid)s, t.name, t.file, t.outcome, t.duration_ms, t.retries, t.shard, t.failure, %(namespace)s,
       %(name)s, COALESCE(t.completed_at, %(completed_at)s)
FROM jsonb_to_recordset(%(tests)s::jsonb) AS t(name text, file text, outcome text, duration_ms bigint,
                                               retries integer, shard integer, failure text,
                                               completed_at timestamptz)
ON CONFLICT (job_uid, name) DO UPDATE SET
    file = EXCLUDED.file, outcome = EXCLUDED.outcome, duration_ms = EXCLUDED.duration_ms,
    retries = EXCLUDED.retries, shard = EXCLUDED.shard, failure = EXCLUDED.failure,
    namespace = EXCLUDED.namespace, job_name = EXCLUDED.job_name, completed_at = EXCLUDED.completed_at
"""

FAILURE_MAX_CHARS = 8192  # a test's failure text beyond this is cut (the report in S3 has all of it)


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Free text PostgreSQL accepts: no NUL character, no lone surrogate, no password
    (:func:`supercheck.redact.redact`); at most ``limit`` characters."""
    if value is None:
        return None
    value = redact(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def job_params(job: JobRow) -> dict[str, Any]:
    return {
        **asdict(job),
        "reason": _text(job.reason),
        "message": _text(job.message),
        "queued_at": parse_iso(job.queued_at),
        "started_at": parse_iso(job.started_at),
        "completed_at": parse_iso(job.completed_at),
        "duration_ms": duration_ms(job),
        "labels": json.dumps(job.labels or {}),
    }


def job_tests_params(job: JobRow, tests: list[JobTestRow]) -> dict[str, Any]:
    rows = [{"name": t.name, "file": t.file, "outcome": t.outcome, "duration_ms": t.duration_ms,
             "retries": t.retries, "shard": t.shard, "failure": _text(t.failure, FAILURE_MAX_CHARS),
             "completed_at": t.completed_at} for t in tests]
    return {"uid": job.uid, "namespace": job.namespace, "name": job.name,
            "completed_at": parse_iso(job.completed_at), "tests": json.dumps(rows)}


INSERT_MONITOR_RESULT = """
INSERT INTO monitor_results (uid, due_at, namespace, name, type, checked_at, ok, latency_ms, message)
VALUES (%(uid)s, %(due_at)s, %(namespace)s, %(name)s, %(type)s, %(checked_at)s, %(ok)s, %(latency_ms)s,
        %(message)s)
ON CONFLICT (uid, due_at) DO NOTHING
"""
DELETE_OLD_MONITOR_RESULTS = """
DELETE FROM monitor_results WHERE ctid IN (
    SELECT ctid FROM monitor_results WHERE checked_at < %(cutoff)s LIMIT %(batch)s)
"""
MONITOR_MESSAGE_MAX_CHARS = 1024


def monitor_result_params(row: MonitorResultRow) -> dict[str, Any]:
    return {**asdict(row), "message": _text(row.message, MONITOR_MESSAGE_MAX_CHARS)}


class Store:
    def __init__(self, url: str | None, *, connect_timeout: float = 3.0):
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._migrated = False

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def where(self) -> str:
        return location(self.url)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            assert self.url is not None  # only called when enabled
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
            self._migrated = False
        if not self._migrated:
            await migrate(self._conn)
            self._migrated = True
        return self._conn

    async def upsert(self, rows: list[Row]) -> None:
        if not rows or not self.enabled:
            return

        async def write(cur: psycopg.AsyncCursor[Any]) -> None:
            for row in rows:
                await cur.execute(UPSERT, row_params(row))

        await self._transaction(write)

    async def upsert_job(self, job: JobRow, tests: list[JobTestRow]) -> None:
        """The job's row and its tests' rows, in one transaction; idempotent.

        A provisional job (``final`` False) never overwrites a final one: then nothing is written,
        its tests neither. Tests already stored and not in ``tests`` are left as they are (an empty
        list writes the job's row alone). ValueError (before any write) for an unknown outcome or a
        test name given twice; StoreUnavailable when PostgreSQL cannot be reached.
        """
        check_tests(tests)
        if not self.enabled:
            return
        params = job_params(job)
        tests_params = job_tests_params(job, tests) if tests else None

        async def write(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.execute(UPSERT_JOB, params)
            if await cur.fetchone() is not None and tests_params is not None:  # None: a final row stays
                await cur.execute(UPSERT_JOB_TESTS, tests_params)

        await self._transaction(write)

    # --- Monitor checks (monitor_results; supercheck.monitorresults batches them)
    async def insert_monitor_results(self, rows: Sequence[MonitorResultRow]) -> None:
        """Rows of checks, in one transaction and one pipelined statement; a row already there (same
        monitor, same due time) is left as it is. StoreUnavailable when PostgreSQL cannot be reached."""
        if not rows or not self.enabled:
            return
        params = [monitor_result_params(r) for r in rows]

        async def write(cur: psycopg.AsyncCursor[Any]) -> None:
            await cur.executemany(INSERT_MONITOR_RESULT, params)

        await self._transaction(write)

    async def delete_monitor_results_before(self, cutoff: datetime, batch: int = 10_000) -> int:
        """Delete the rows of checks made before ``cutoff``, ``batch`` rows per transaction (a long
        history goes without one long lock); the number deleted."""
        if not self.enabled:
            return 0
        deleted = 0
        while True:
            count = 0

            async def work(cur: psycopg.AsyncCursor[Any]) -> None:
                nonlocal count
                await cur.execute(DELETE_OLD_MONITOR_RESULTS, {"cutoff": cutoff, "batch": batch})
                count = cur.rowcount

            await self._transaction(work)
            deleted += count
            if count < batch:
                return deleted

    async def _transaction(self, work: Callable[[psycopg.AsyncCursor[Any]], Awaitable[None]]) -> None:
        """Run ``work`` in one transaction; any trouble with PostgreSQL is StoreUnavailable (the
        connection is dropped and made again on the next call)."""
        async with self._lock:
            try:
                conn = await asyncio.wait_for(self._connection(), self.connect_timeout + 2)
                async with conn.transaction():
                    async with conn.cursor() as cur:
                        await work(cur)
            except (TimeoutError, psycopg.Error, OSError) as exc:
                await self._drop()
                raise StoreUnavailable(redact(f"PostgreSQL at {self.where()} is unavailable: {exc}".strip())) from exc

    async def ready(self) -> bool:
        """Migrate now if possible (start-up); False when PostgreSQL is not there yet."""
        if not self.enabled:
            return False
        async with self._lock:
            try:
                await asyncio.wait_for(self._connection(), self.connect_timeout + 2)
                return True
            except (TimeoutError, psycopg.Error, OSError) as exc:
                log.warning("PostgreSQL at %s not ready: %s", self.where(), exc)
                await self._drop()
                return False

    async def _drop(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone anyway
                pass
        self._conn = None

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


async def migrate(conn: psycopg.AsyncConnection) -> list[str]:
    """Apply the migrations not yet in ``schema_migrations``, each in its own transaction."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {r[0] for r in await cur.fetchall()}
        for version, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
            log.info("applied migration %s", version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now
