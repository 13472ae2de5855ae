"""PostgreSQL: versioned migrations at start-up, one idempotent upsert per (uid, attempt).

The CR status is the truth while PostgreSQL is away: the operator keeps ``status.recorded``
(the attempts whose final row landed) and retries the rest until they land. A provisional
row (an attempt that started) never overwrites a final one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import asdict
from importlib import resources
from typing import Any

import psycopg

from supercheck.clock import parse_iso
from supercheck.ports import StoreUnavailable
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
                  k6_http_req_duration_p95_ms, artifacts_bucket, artifacts_prefix, artifacts_report, labels)
VALUES (%(uid)s, %(attempt)s, %(namespace)s, %(name)s, %(type)s, %(phase)s, %(final)s, %(priority)s,
        %(reason)s, %(message)s, %(failure_class)s, %(exit_code)s, %(pod_name)s, %(queued_at)s,
        %(started_at)s, %(completed_at)s, %(duration_ms)s, %(total)s, %(passed)s, %(failed)s, %(flaky)s,
        %(skipped)s, %(k6_thresholds_passed)s, %(k6_checks_passed)s, %(k6_checks_failed)s,
        %(k6_iterations)s, %(k6_p95)s, %(bucket)s, %(prefix)s, %(report)s, %(labels)s)
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
    artifacts_report = EXCLUDED.artifacts_report, labels = EXCLUDED.labels, updated_at = now()
WHERE NOT runs.final OR EXCLUDED.final
"""


def row_params(row: Row) -> dict[str, Any]:
    started, completed = parse_iso(row.started_at), parse_iso(row.completed_at)
    duration = int((completed - started).total_seconds() * 1000) if started and completed else None
    s, k, a = row.summary or {}, row.k6 or {}, row.artifacts or {}
    d = asdict(row)
    return {
        **{key: d[key] for key in ("uid", "attempt", "namespace", "name", "type", "phase", "final", "priority",
                                   "reason", "message", "failure_class", "exit_code", "pod_name")},
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
        return (self.url or "").split("@")[-1]

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
        async with self._lock:
            try:
                conn = await asyncio.wait_for(self._connection(), self.connect_timeout + 2)
                async with conn.transaction():
                    async with conn.cursor() as cur:
                        for row in rows:
                            await cur.execute(UPSERT, row_params(row))
            except (TimeoutError, psycopg.Error, OSError) as exc:
                await self._drop()
                raise StoreUnavailable(f"PostgreSQL at {self.where()} is unavailable: {exc}".strip()) from exc

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
