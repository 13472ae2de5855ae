"""Admission: run now, queue, or reject with a retry-after; the admitted runs are undisturbed."""

from __future__ import annotations

import pytest
from operator_kit import (
    SLEEPY_K6,
    create,
    event_reasons,
    get_run,
    make_run,
    phase,
    rows_for,
    wait_all_terminal,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster


def test_queue_full_rejects_with_retry_after(operator_ctl, namespace, core_v1, custom_objects, redis_client, db_conn):
    operator_ctl.start(RUNNING_CAPACITY="1", QUEUED_CAPACITY="2")
    sleepy = [{"name": "SLEEP", "value": "3"}]
    create(custom_objects, namespace, make_run("first", SLEEPY_K6, env=sleepy))
    wait_for(lambda: ((get_run(custom_objects, namespace, "first") or {}).get("status") or {}).get("slot") == "running",
             60, what="first admitted")
    for name in ("q1", "q2", "over1", "over2"):
        create(custom_objects, namespace, make_run(name, SLEEPY_K6, env=[{"name": "SLEEP", "value": "0"}]))
    for name in ("over1", "over2"):
        run = wait_for(lambda n=name: phase(r := get_run(custom_objects, namespace, n)) == "Rejected" and r, 60,
                       what=f"{name} rejected")
        st = run["status"]
        assert st["reason"] == "CapacityExceeded" and st["retryAfterSeconds"] >= 1
        assert "capacity exceeded" in st["message"] and "again in about" in st["message"]
        assert "CapacityExceeded" in event_reasons(core_v1, namespace, name, "CapacityExceeded")
    assert phase(get_run(custom_objects, namespace, "q1")) == "Queued"
    runs = wait_all_terminal(custom_objects, namespace, 5, timeout=120)
    by = {r["metadata"]["name"]: r["status"] for r in runs}
    assert {n: by[n]["phase"] for n in ("first", "q1", "q2")} == dict.fromkeys(("first", "q1", "q2"), "Passed")
    assert all(by[n]["attempts"] == 1 for n in ("first", "q1", "q2"))
    assert by["q1"]["startedAt"] < by["q2"]["startedAt"]
    wait_ledger_zero(redis_client)
    rows = wait_for(lambda: len(r := rows_for(db_conn, namespace)) == 5 and r, 30, what="5 rows")
    assert {(r[0], r[1], r[2]) for r in rows if r[0].startswith("over")} == {("over1", 0, "Rejected"),
                                                                          ("over2", 0, "Rejected")}


def test_a_freed_slot_goes_to_the_highest_priority(operator_ctl, namespace, custom_objects, redis_client):
    operator_ctl.start(RUNNING_CAPACITY="1", QUEUED_CAPACITY="10")
    create(custom_objects, namespace, make_run("holder", SLEEPY_K6, env=[{"name": "SLEEP", "value": "3"}]))
    wait_for(lambda: phase(get_run(custom_objects, namespace, "holder")) in ("Pending", "Running"), 60,
             what="holder started")
    for name, prio in (("low", 0), ("mid", 5), ("high", 9), ("low2", 0)):
        create(custom_objects, namespace, make_run(name, SLEEPY_K6, prio, env=[{"name": "SLEEP", "value": "0"}]))
    runs = wait_all_terminal(custom_objects, namespace, 5, timeout=120)
    order = [r["metadata"]["name"] for r in sorted(runs, key=lambda r: r["status"]["startedAt"])]
    assert order == ["holder", "high", "mid", "low", "low2"], [
        (r["metadata"]["name"], r["metadata"]["creationTimestamp"], r["status"].get("queuedAt"),
         r["status"].get("queueSeq"), r["status"]["startedAt"]) for r in runs]
    wait_ledger_zero(redis_client)
