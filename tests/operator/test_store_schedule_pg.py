"""The ``schedule`` column of ``runs`` and ``jobs`` (migration 0003): filled from the run's RunSchedule, added to
a database the previous operator made without touching its rows, and a schedule's history in one query."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from operator_kit import throwaway_postgres

from supercheck import store as store_module
from supercheck.jobmodels import JobRunStatus
from supercheck.jobrows import JobRow
from supercheck.jobstate import rows as job_rows
from supercheck.models import AttemptRecord, Phase, TestRunStatus
from supercheck.rows import Row, rows_to_record, schedule_of, start_row
from supercheck.store import Store, migrations

OWNED = {"name": "nightly-1893499220", "namespace": "ns", "uid": "u1",
         "labels": {"supercheck.io/schedule": "nightly", "team": "qa"},
         "ownerReferences": [{"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule", "name": "nightly",
                              "uid": "s1", "controller": True}]}


def test_schedule_of_prefers_the_owner_then_the_label():
    assert schedule_of(OWNED) == "nightly"
    long_name = "x" * 80
    cut = {**OWNED, "labels": {"supercheck.io/schedule": "x" * 54 + "-0123abcd"},
           "ownerReferences": [{**OWNED["ownerReferences"][0], "name": long_name}]}
    assert schedule_of(cut) == long_name  # the whole name, not the label's cut one
    assert schedule_of({"labels": {"supercheck.io/schedule": "by-hand"}}) == "by-hand"
    assert schedule_of({"labels": {"team": "qa"}, "ownerReferences": [{"kind": "Job", "name": "j",
                                                                       "controller": True}]}) is None


def test_rows_carry_the_schedule():
    body = {"metadata": OWNED, "spec": {"type": "k6"}}
    status = TestRunStatus(phase=Phase.PASSED, attempts=1, completedAt="2030-01-01T00:00:05.000000Z",
                           attemptHistory=[AttemptRecord(attempt=1, podName="p", completedAt="2030-01-01T00:00:05Z")])
    assert [r.schedule for r in rows_to_record(body, status)] == ["nightly"]
    assert start_row(body, TestRunStatus(phase=Phase.RUNNING, attempts=1)).schedule == "nightly"
    job, _ = job_rows({"metadata": OWNED, "spec": {"type": "playwright"}}, JobRunStatus(phase=Phase.PASSED))
    assert job.schedule == "nightly"
    plain = {"metadata": {**OWNED, "labels": {}, "ownerReferences": []}, "spec": {"type": "k6"}}
    assert [r.schedule for r in rows_to_record(plain, status)] == [None]


@pytest.mark.integration
def test_migration_0003_adds_the_column_and_rows_fill_it(monkeypatch):
    with throwaway_postgres() as url:
        async def previous_operator():  # knew 0001 and 0002 (and wrote with their columns: below)
            monkeypatch.setattr(store_module, "migrations", lambda: migrations()[:2])
            store = Store(url)
            assert await store.ready()
            await store.close()
            monkeypatch.undo()

        async def this_operator():
            store = Store(url)
            assert await store.ready()
            for n, done in ((1, "2030-01-01T00:00:25Z"), (2, "2030-01-01T00:00:45Z")):
                await store.upsert([Row(namespace="ns", name=f"nightly-{n}", uid=f"u{n}", attempt=1, type="k6",
                                        phase="Passed", final=True, completed_at=done, schedule="nightly")])
            await store.upsert([Row(namespace="ns", name="other", uid="u9", attempt=1, type="k6", phase="Failed",
                                    final=True, completed_at="2030-01-01T00:00:50Z")])
            await store.upsert_job(JobRow(uid="j1", namespace="ns", name="suite-1", type="playwright",
                                          phase="Running", final=False, schedule="suite"), [])
            await store.close()

        asyncio.run(previous_operator())
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO runs (uid, attempt, namespace, name, type, phase, final)"
                         " VALUES ('u0', 1, 'ns', 'old', 'k6', 'Passed', true)")
            conn.execute("INSERT INTO jobs (uid, namespace, name, type, phase, final)"
                         " VALUES ('j0', 'ns', 'old', 'k6', 'Passed', true)")
        asyncio.run(this_operator())
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
            runs = conn.execute("SELECT name, schedule FROM runs ORDER BY name").fetchall()
            jobs = conn.execute("SELECT name, schedule FROM jobs ORDER BY name").fetchall()
            # a schedule's history, newest first: the documented query
            history = conn.execute(
                "SELECT name, phase, completed_at FROM runs WHERE namespace = %s AND schedule = %s"
                " ORDER BY completed_at DESC LIMIT 10", ("ns", "nightly")).fetchall()
            indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes"
                                                  " WHERE tablename IN ('runs', 'jobs')")}
        assert versions[:3] == ["0001", "0002", "0003"]
        assert runs == [("nightly-1", "nightly"), ("nightly-2", "nightly"), ("old", None), ("other", None)]
        assert jobs == [("old", None), ("suite-1", "suite")]
        assert [h[0] for h in history] == ["nightly-2", "nightly-1"]
        assert {"runs_namespace_schedule_idx", "jobs_namespace_schedule_idx"} <= indexes
