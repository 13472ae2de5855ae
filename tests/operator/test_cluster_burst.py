"""A burst of 30 TestRuns against RUNNING_CAPACITY=3 on the local control plane."""

from __future__ import annotations

import pytest
from operator_kit import (
    SLEEPY_K6,
    Sampler,
    create,
    ledger_counts,
    make_run,
    rows_for,
    wait_all_terminal,
    wait_for,
    wait_ledger_zero,
)

from supercheck.clock import parse_iso

pytestmark = pytest.mark.cluster


def test_burst_of_30_respects_capacity_priority_and_arrival(
        operator_ctl, namespace, core_v1, custom_objects, redis_client, db_conn):
    operator_ctl.start(RUNNING_CAPACITY="3", QUEUED_CAPACITY="50")
    priorities = [(i * 7) % 3 for i in range(30)]  # 0, 1, 2 mixed, in no particular order
    with Sampler(core_v1, namespace, redis_client) as sampler:
        for i, prio in enumerate(priorities):
            create(custom_objects, namespace,
                   make_run(f"burst-{i:02d}", SLEEPY_K6, prio, env=[{"name": "SLEEP", "value": "1"}]))
        runs = wait_all_terminal(custom_objects, namespace, 30, timeout=400)
        wait_ledger_zero(redis_client)

    assert sampler.samples > 20
    assert 1 <= sampler.max_running <= 3, f"saw {sampler.max_running} runner pods running at once"
    assert sampler.max_ledger_running <= 3
    assert sampler.max_running_per_run <= 1
    by_name = {r["metadata"]["name"]: r for r in runs}
    assert all(r["status"]["phase"] == "Passed" for r in runs), \
        {n: (r["status"]["phase"], r["status"].get("message")) for n, r in by_name.items()
         if r["status"]["phase"] != "Passed"}
    retried = {n: r["status"]["attemptHistory"] for n, r in by_name.items() if r["status"]["attempts"] != 1}
    assert not retried, retried
    assert ledger_counts(redis_client) == (0, 0)

    # Arrival: runs of one priority were queued in the order they were created.
    queued = [r for r in runs if r["status"].get("queueSeq")]
    assert len(queued) >= 20, "most of the burst should have waited in the queue"
    for prio in (0, 1, 2):
        names = sorted((r for r in queued if r["spec"]["priority"] == prio), key=lambda r: r["status"]["queueSeq"])
        assert [r["metadata"]["name"] for r in names] == sorted(r["metadata"]["name"] for r in names)

    # Starts follow priority, then arrival: when a queued run got its slot, no run still waiting
    # in the queue had a higher priority, or the same priority and an earlier arrival.
    for a in queued:
        a_start = parse_iso(a["status"]["startedAt"])
        a_key = (-a["spec"]["priority"], a["status"]["queueSeq"])
        for b in queued:
            if b is a:
                continue
            waiting = parse_iso(b["status"]["queuedAt"]) < a_start < parse_iso(b["status"]["startedAt"])
            if waiting:
                assert (-b["spec"]["priority"], b["status"]["queueSeq"]) > a_key, \
                    f"{a['metadata']['name']} started while {b['metadata']['name']} waited ahead of it"

    rows = wait_for(lambda: (r := rows_for(db_conn, namespace)) and len(r) == 30 and r, 60,
                    what="30 rows in runs")
    assert {row[0] for row in rows} == set(by_name) and all(row[2] == "Passed" and row[3] for row in rows)
