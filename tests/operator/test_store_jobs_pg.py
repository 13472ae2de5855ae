"""The JobRun tables (``jobs``, ``job_tests``) against a real, throwaway PostgreSQL: the migration
from a database the previous operator made, idempotent upserts, final rows kept, a 500-test job,
and the documented "which tests failed most this week" query."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from operator_kit import free_port, throwaway_postgres

from supercheck import store as store_module
from supercheck.clock import iso
from supercheck.jobrows import JobRow, JobTestRow
from supercheck.store import FAILURE_MAX_CHARS, Store, StoreUnavailable, migrations

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"


@pytest.fixture(scope="module")
def server():
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def pg_url(server, request):
    """A database of its own on the module's server, for each test."""
    db = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.execute(f"CREATE DATABASE {db}")
    return server.rsplit("/", 1)[0] + "/" + db


def job(**kw) -> JobRow:
    base = dict(uid="j1", namespace="ns", name="nightly", type="playwright", phase="Running", final=False,
                priority=3, parallelism=2, total=3, queued_at="2030-01-01T00:00:00.000000Z",
                started_at="2030-01-01T00:00:01.000000Z", labels={"team": "qa"})
    base.update(kw)
    return JobRow(**base)


def listed(*outcomes: str, completed_at: str | None = None) -> list[JobTestRow]:
    return [JobTestRow(name=f"t{i}", outcome=o, file=f"specs/f{i % 2}.spec.ts", duration_ms=100 * i,
                       shard=i % 2, completed_at=completed_at) for i, o in enumerate(outcomes)]


def run(coro):
    return asyncio.run(coro)


async def write(url: str, *calls: tuple[JobRow, list[JobTestRow]]) -> None:
    store = Store(url)
    try:
        for j, t in calls:
            await store.upsert_job(j, t)
    finally:
        await store.close()


def select(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_migration_0002_is_applied_to_a_database_of_the_previous_operator(pg_url, monkeypatch):
    async def previous_operator():  # knew 0001 only, and wrote a run (with its own statement: 0001's columns)
        monkeypatch.setattr(store_module, "migrations", lambda: migrations()[:1])
        store = Store(pg_url)
        assert await store.ready()
        await store.close()
        monkeypatch.undo()
        with psycopg.connect(pg_url) as conn:
            conn.execute("INSERT INTO runs (uid, attempt, namespace, name, type, phase, final)"
                         " VALUES ('u1', 1, 'ns', 'r', 'k6', 'Passed', true)")

    run(previous_operator())
    assert select(pg_url, "SELECT version FROM schema_migrations ORDER BY version") == [("0001",)]
    assert select(pg_url, "SELECT to_regclass('jobs')") == [(None,)]

    async def this_operator():
        store = Store(pg_url)
        assert await store.ready()
        await store.upsert_job(job(), listed("notRun"))
        await store.close()
        conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            assert await store_module.migrate(conn) == []  # a second start applies nothing
        finally:
            await conn.close()

    run(this_operator())
    assert select(pg_url, "SELECT version FROM schema_migrations ORDER BY version") == [(v,) for v, _ in migrations()]
    assert select(pg_url, "SELECT uid, phase FROM runs") == [("u1", "Passed")]  # the old rows are untouched
    assert select(pg_url, "SELECT count(*) FROM jobs") == [(1,)]
    indexes = {r[0] for r in select(pg_url, "SELECT indexname FROM pg_indexes"
                                            " WHERE tablename IN ('jobs', 'job_tests')")}
    assert {"jobs_pkey", "job_tests_pkey", "job_tests_outcome_completed_at_idx", "job_tests_namespace_file_idx",
            "jobs_namespace_name_idx", "jobs_completed_at_idx"} <= indexes


JOB_SQL = ("SELECT phase, final, reason, total, completed, passed, failed, flaky, skipped, not_run, duration_ms,"
           " report_key, labels->>'team', queued_at IS NOT NULL, started_at IS NOT NULL FROM jobs")
TESTS_SQL = ("SELECT job_uid, name, file, outcome, duration_ms, retries, shard, failure, namespace, job_name,"
             " completed_at IS NOT NULL FROM job_tests ORDER BY name")


def test_upsert_job_is_idempotent(pg_url):
    provisional = job()
    final = job(phase="Failed", final=True, reason="TestsFailed", completed=3, passed=1, failed=1, flaky=1,
                completed_at="2030-01-01T00:00:31.500000Z", report_bucket="b", report_prefix="ns/nightly/j1",
                report_key="ns/nightly/j1/report/index.html")
    done = [JobTestRow(name="t0", outcome="passed", file="specs/f0.spec.ts", duration_ms=10),
            JobTestRow(name="t1", outcome="failed", file="specs/f1.spec.ts", duration_ms=20, retries=1, shard=1,
                       failure="expect(received).toBe(expected)", completed_at="2030-01-01T00:00:20.000000Z"),
            JobTestRow(name="t2", outcome="flaky", file="specs/f0.spec.ts", duration_ms=30, retries=1)]
    run(write(pg_url, (provisional, listed("notRun", "notRun", "notRun")),
              (provisional, listed("notRun", "notRun", "notRun"))))
    assert select(pg_url, "SELECT count(*), min(phase) FROM jobs") == [(1, "Running")]
    assert select(pg_url, "SELECT count(*), min(outcome) FROM job_tests") == [(3, "notRun")]
    first = select(pg_url, "SELECT recorded_at, updated_at FROM jobs")[0]

    run(write(pg_url, (final, done)))
    once_job, once_tests = select(pg_url, JOB_SQL), select(pg_url, TESTS_SQL)
    run(write(pg_url, (final, done), (final, done)))  # the operator retried (or restarted) and wrote it again
    assert select(pg_url, JOB_SQL) == once_job == [
        ("Failed", True, "TestsFailed", 3, 3, 1, 1, 1, 0, 0, 30500, "ns/nightly/j1/report/index.html", "qa",
         True, True)]
    assert select(pg_url, TESTS_SQL) == once_tests == [
        ("j1", "t0", "specs/f0.spec.ts", "passed", 10, 0, None, None, "ns", "nightly", True),
        ("j1", "t1", "specs/f1.spec.ts", "failed", 20, 1, 1, "expect(received).toBe(expected)", "ns", "nightly",
         True),
        ("j1", "t2", "specs/f0.spec.ts", "flaky", 30, 1, None, None, "ns", "nightly", True)]
    # a test without its own completion time has the job's; one with its own keeps it
    assert select(pg_url, "SELECT name, completed_at FROM job_tests ORDER BY name") == [
        ("t0", datetime(2030, 1, 1, 0, 0, 31, 500000, tzinfo=UTC)),
        ("t1", datetime(2030, 1, 1, 0, 0, 20, tzinfo=UTC)),
        ("t2", datetime(2030, 1, 1, 0, 0, 31, 500000, tzinfo=UTC))]
    recorded_at, updated_at = select(pg_url, "SELECT recorded_at, updated_at FROM jobs")[0]
    assert recorded_at == first[0] and updated_at > first[1]


def test_a_final_job_is_never_overwritten_by_a_provisional_one(pg_url):
    final = job(phase="Passed", final=True, completed=2, passed=2, completed_at="2030-01-01T00:00:11.000000Z")
    run(write(pg_url, (final, listed("passed", "passed"))))
    before_job, before_tests = select(pg_url, JOB_SQL), select(pg_url, TESTS_SQL)
    # a late provisional write (a replica that was slow, a retried write from before the end)
    run(write(pg_url, (job(phase="Running", completed=0, passed=0), listed("notRun", "notRun", "notRun"))))
    assert select(pg_url, JOB_SQL) == before_job and before_job[0][:2] == ("Passed", True)
    assert select(pg_url, TESTS_SQL) == before_tests and [r[3] for r in before_tests] == ["passed", "passed"]
    # the job and its tests go together
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM jobs WHERE uid = 'j1'")
    assert select(pg_url, "SELECT count(*) FROM job_tests") == [(0,)]


def test_a_jobs_trace_id_is_kept_once_written(pg_url):
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    run(write(pg_url, (job(trace_id=trace), [])))
    run(write(pg_url, (job(), [])))  # a writer that did not trace (tracing turned off) leaves it
    assert select(pg_url, "SELECT trace_id FROM jobs WHERE trace_id = %s", trace) == [(trace,)]
    run(write(pg_url, (job(phase="Passed", final=True, trace_id=trace), [])))
    assert select(pg_url, "SELECT final, trace_id FROM jobs") == [(True, trace)]


def test_a_job_of_500_tests_is_written_at_once(pg_url):
    names = [f"suite {i // 50} › test {i}" for i in range(500)]
    provisional = [JobTestRow(name=n, outcome="notRun", file=f"specs/s{i // 50}.spec.ts", shard=i % 4)
                   for i, n in enumerate(names)]
    outcomes = ["passed"] * 470 + ["failed"] * 20 + ["flaky"] * 5 + ["skipped"] * 5
    final = [JobTestRow(name=n, outcome=o, file=f"specs/s{i // 50}.spec.ts", shard=i % 4, duration_ms=1000 + i,
                        retries=1 if o in ("failed", "flaky") else 0,
                        failure=("Error: expected 200, got 500\n" * 40) if o == "failed" else None)
             for i, (n, o) in enumerate(zip(names, outcomes, strict=True))]
    timings: dict[str, float] = {}

    async def go():
        store = Store(pg_url)
        assert await store.ready()
        for label, j, tests in (("provisional", job(total=500), provisional),
                                ("final", job(phase="Failed", final=True, total=500, completed=500, passed=470,
                                              failed=20, flaky=5, skipped=5,
                                              completed_at="2030-01-01T00:10:00.000000Z"), final),
                                ("final again", job(phase="Failed", final=True, total=500), final)):
            t0 = time.perf_counter()
            await store.upsert_job(j, tests)
            timings[label] = time.perf_counter() - t0
        await store.close()

    run(go())
    print("upsert_job, 500 tests: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items()))
    assert select(pg_url, "SELECT outcome, count(*) FROM job_tests GROUP BY outcome ORDER BY outcome") == [
        ("failed", 20), ("flaky", 5), ("passed", 470), ("skipped", 5)]
    assert max(timings.values()) < 2.0, timings  # one round trip for the tests: tens of milliseconds


def docs_query() -> str:
    """The "which tests failed most this week" query, as docs/operator.md shows it."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)
    found = [b for b in blocks if "FROM job_tests" in b and "interval '7 days'" in b]
    assert len(found) == 1, "docs/operator.md shows the query once"
    return found[0]


def test_which_tests_failed_most_this_week(pg_url):
    now = datetime.now(UTC)

    def day(n: float) -> str:
        return iso(now - timedelta(days=n))

    def failing(uid: str, days_ago: float, failed: list[str], namespace: str = "ns") -> tuple[JobRow, list]:
        everyone = ["login works", "checkout works", "search works"]
        rows = [JobTestRow(name=n, file=f"specs/{n.split()[0]}.spec.ts",
                           outcome="failed" if n in failed else "passed") for n in everyone]
        return job(uid=uid, namespace=namespace, name=f"nightly-{uid}", phase="Failed", final=True,
                   completed_at=day(days_ago)), rows

    run(write(pg_url,
              failing("a", 1, ["checkout works"]),
              failing("b", 2, ["checkout works", "search works"]),
              failing("c", 3, ["checkout works"]),
              failing("d", 6.5, ["search works"]),
              failing("e", 9, ["login works"]),   # last week: not counted
              failing("f", 10, ["login works"]),
              failing("g", 10, ["login works"]),
              failing("h", 1, ["login works"], namespace="other")))
    rows = select(pg_url, docs_query())
    assert [r[:4] for r in rows] == [
        ("ns", "specs/checkout.spec.ts", "checkout works", 3),
        ("ns", "specs/search.spec.ts", "search works", 2),
        ("other", "specs/login.spec.ts", "login works", 1)]
    # the (outcome, completed_at) index serves it
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + docs_query()).fetchall())
    assert "job_tests_outcome_completed_at_idx" in plan, plan


def test_failure_texts_postgresql_would_refuse_are_cleaned_and_cut(pg_url):
    tests = [JobTestRow(name="nul", outcome="failed", failure="before\x00after"),
             JobTestRow(name="long", outcome="failed", failure="x" * (FAILURE_MAX_CHARS * 2))]
    run(write(pg_url, (job(message="a\x00b"), tests)))
    assert select(pg_url, "SELECT message FROM jobs") == [("ab",)]
    assert select(pg_url, "SELECT name, length(failure), left(failure, 6) FROM job_tests ORDER BY name") == [
        ("long", FAILURE_MAX_CHARS, "xxxxxx"), ("nul", 11, "before")]


def test_bad_tests_are_refused_before_anything_is_written(pg_url):
    async def go():
        store = Store(pg_url)
        with pytest.raises(ValueError, match="outcome 'broken'"):
            await store.upsert_job(job(), [JobTestRow(name="a", outcome="broken")])
        with pytest.raises(ValueError, match="listed twice"):
            await store.upsert_job(job(), [JobTestRow(name="a", outcome="passed")] * 2)
        await store.close()

    run(go())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('jobs')").fetchone() == (None,)  # not even connected


def test_unreachable_database_raises_store_unavailable():
    async def go():
        store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)
        with pytest.raises(StoreUnavailable, match="PostgreSQL at 127.0.0.1"):
            await store.upsert_job(job(), listed("notRun"))
        await Store(None).upsert_job(job(), listed("notRun"))  # no DATABASE_URL: nothing to do

    run(go())
