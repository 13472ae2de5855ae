"""Two operator processes at once during a burst: peering keeps one active; the ledger's atomicity
and resourceVersion-checked status writes keep the invariants even when both are active."""

from __future__ import annotations

import urllib.request

import pytest
from operator_kit import (
    SLEEPY_K6,
    Sampler,
    create,
    make_run,
    rows_for,
    wait_all_terminal,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster


def dispatched(port: int) -> float:
    """Runner pods this replica created (its dispatch latency histogram counts one per pod)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("supercheck_dispatch_latency_seconds_count"))


def burst(custom_objects, namespace, n):
    for i in range(n):
        create(custom_objects, namespace, make_run(f"r-{i:02d}", SLEEPY_K6, i % 2,
                                                  env=[{"name": "SLEEP", "value": "1"}]))


def check(runs, sampler, capacity):
    """As in the fault tests: all passed, capacity held, one pod per attempt, never two at once;
    a retry only for a runner failure, never for a pod the operators lost between them."""
    assert all(r["status"]["phase"] == "Passed" for r in runs), [r["status"] for r in runs
                                                                  if r["status"]["phase"] != "Passed"]
    lost = [r["metadata"]["name"] for r in runs
            if any(h.get("failureClass") == "pod_lost" for h in r["status"]["attemptHistory"])]
    assert not lost
    assert 1 <= sampler.max_running <= capacity and sampler.max_ledger_running <= capacity
    assert sampler.max_running_per_run <= 1
    attempts = {r["metadata"]["name"]: r["status"]["attempts"] for r in runs}
    wrong = {run: pods for run, pods in sampler.pods_seen.items()
             if pods != {f"{run}-a{n}" for n in range(1, attempts.get(run, 1) + 1)}}
    assert not wrong


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
    wait_for(lambda: _up(18100), 60, what="the second replica serving /metrics")
    before = dispatched(18080), dispatched(18100)
    with Sampler(core_v1, namespace, redis_client) as sampler:
        burst(custom_objects, namespace, 20)
        runs = wait_all_terminal(custom_objects, namespace, 20, timeout=300)
        wait_ledger_zero(redis_client)
    assert second.running()
    check(runs, sampler, 3)
    wait_for(lambda: len(rows_for(db_conn, namespace)) == 20, 60, what="20 rows")
    first_n, second_n = dispatched(18080) - before[0], dispatched(18100) - before[1]
    pods = sum(r["status"]["attempts"] for r in runs)
    assert first_n + second_n == pods, (first_n, second_n, pods)  # one pod per attempt, whoever won the race
    print(f"pods created: first replica {first_n:g}, second replica {second_n:g}")


def _up(port: int) -> bool:
    try:
        dispatched(port)
        return True
    except OSError:
        return False
