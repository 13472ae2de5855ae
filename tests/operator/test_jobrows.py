"""The JobRun rows without a database: the checks before a write, and the fake store's rules."""

from __future__ import annotations

import asyncio

import pytest
from fakes import FakeStore

from supercheck.jobrows import TEST_OUTCOMES, JobRow, JobTestRow, check_tests
from supercheck.ports import StoreUnavailable
from supercheck.store import Store


def job(**kw) -> JobRow:
    return JobRow(**{"uid": "j1", "namespace": "ns", "name": "nightly", "type": "playwright", "phase": "Running",
                     "final": False, **kw})


def test_outcomes_are_the_tables():
    assert TEST_OUTCOMES == ("passed", "failed", "flaky", "skipped", "notRun")
    check_tests([JobTestRow(name=o, outcome=o) for o in TEST_OUTCOMES])
    check_tests([])


@pytest.mark.parametrize("tests, match", [
    ([JobTestRow(name="a", outcome="Passed")], "outcome 'Passed' is not one of passed, failed"),
    ([JobTestRow(name="a", outcome="passed"), JobTestRow(name="a", outcome="failed")], "'a' is listed twice"),
])
def test_bad_tests_are_the_callers_bug(tests, match):
    with pytest.raises(ValueError, match=match):
        check_tests(tests)
    with pytest.raises(ValueError, match=match):  # before the store looks for PostgreSQL
        asyncio.run(Store(None).upsert_job(job(), tests))
    with pytest.raises(ValueError, match=match):
        asyncio.run(FakeStore().upsert_job(job(), tests))


def test_fake_store_keeps_final_jobs_as_postgresql_does():
    async def go():
        store = FakeStore()
        await store.upsert_job(job(), [JobTestRow(name="a", outcome="notRun")])
        await store.upsert_job(job(phase="Passed", final=True), [JobTestRow(name="a", outcome="passed")])
        await store.upsert_job(job(), [JobTestRow(name="a", outcome="notRun"), JobTestRow(name="b", outcome="notRun")])
        assert store.jobs["j1"].phase == "Passed"
        assert {n: t.outcome for n, t in store.job_tests["j1"].items()} == {"a": "passed"}
        store.down = True
        with pytest.raises(StoreUnavailable):
            await store.upsert_job(job(phase="Passed", final=True), [])

    asyncio.run(go())
