"""Two operator processes at once during a burst: peering keeps one active; the ledger's atomicity
and resourceVersion-checked status writes keep the invariants even when both are active."""

from __future__ import annotations

import pytest

from operator_kit import (
    SLEEPY_K6, Sampler, create, make_run, rows_for, wait_all_terminal, wait_for, wait_ledger_zero,
)

pytestmark = pytest.mark.cluster


def burst(custom_objects, namespace, n):
    for i in range(n):
        create(custom_objects, namespace, make_run(f"r-{i:02d}", SLEEPY_K6, i % 2,
                                                  env=[{"name": "SLEEP", "value": "1"}]))


def check(runs, sampler, capacity):
    bad = {r["metadata"]["name"]: r["status"].get("attemptHistory") for r in runs
           if r["status"]["phase"] != "Passed" or r["status"]["attempts"] != 1}
    assert not bad, bad
    assert 1 <= sampler.max_running <= capacity and sampler.max_ledger_running <= capacity
    assert sampler.max_running_per_run <= 1
    dupes = {run: pods for run, pods in sampler.pods_seen.items() if pods != {f"{run}-a1"}}
    assert not dupes


def test_two_replicas_with_peering(operator_ctl, namespace, core_v1, custom_objects, redis_client, db_conn):
    config = dict(RUNNING_CAPACITY="3")
    operator_ctl.start(**config)
    second = operator_ctl.start_second_replica(**config)

    def peers():
        obj = custom_objects.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "supercheck")
        return len(obj.get("status") or {}) >= 2
    wait_for(peers, 30, what="both replicas in the peering object")
    with Sampler(core_v1, namespace, redis_client) as sampler:
        burst(custom_objects, namespace, 15)
        runs = wait_all_terminal(custom_objects, namespace, 15, timeout=300)
        wait_ledger_zero(redis_client)
    assert second.running()
    check(runs, sampler, 3)
    wait_for(lambda: len(rows_for(db_conn, namespace)) == 15, 60, what="15 rows")


def test_two_active_replicas_without_peering(operator_ctl, namespace, core_v1, custom_objects, redis_client,
                                             db_conn):
    """Peering off: both replicas handle every TestRun at the same time. Only atomicity protects."""
    config = dict(RUNNING_CAPACITY="3", SUPERCHECK_PEERING="standalone")
    operator_ctl.start(**config)
    second = operator_ctl.start_second_replica(**config)
    with Sampler(core_v1, namespace, redis_client) as sampler:
        burst(custom_objects, namespace, 20)
        runs = wait_all_terminal(custom_objects, namespace, 20, timeout=300)
        wait_ledger_zero(redis_client)
    assert second.running()
    check(runs, sampler, 3)
    wait_for(lambda: len(rows_for(db_conn, namespace)) == 20, 60, what="20 rows")
