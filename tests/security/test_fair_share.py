"""Issue 10, "No fair share": one namespace floods the cluster with `priority: 1000` and
`timeoutSeconds: 86400`. With the admin's per-namespace limits (SUPERCHECK_NAMESPACE_*), another
namespace's runs still get running slots — promoted past the flood's queued runs — the flood's runs
beyond its queued share are Rejected naming the limit, its priority is lowered to the maximum (a
Warning Event says so), its 86400 s timeout is refused, and the ledger is back to zero at the end.

Real parts: the local control plane, the operator, the real Lua scripts in the local Redis, the
runner with k6.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import scratch_namespace
from tests.operator.operator_kit import (
    GROUP,
    PLURAL,
    SLEEPY_K6,
    VERSION,
    create,
    event_reasons,
    get_run,
    ledger_counts,
    list_runs,
    make_run,
    phase,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster

NS_RUNNING = "supercheck:ledger:namespace-running"
NS_QUEUED = "supercheck:ledger:namespace-queued"


@pytest.fixture
def other_namespace(namespace, core_v1):
    """A second tenant's namespace (after `namespace`, whose fixture cleans the services first)."""
    with scratch_namespace(core_v1, f"t-fair-b-{uuid.uuid4().hex[:5]}") as name:
        yield name


def sleepy(name: str, seconds: int, priority: int = 0, **spec) -> dict:
    return make_run(name, SLEEPY_K6, priority, env=[{"name": "SLEEP", "value": str(seconds)}], **spec)


def ns_count(redis_client, key: str, namespace: str) -> int:
    return int(redis_client.hget(key, namespace) or 0)


def test_a_flooding_namespace_cannot_take_the_capacity_of_others(
        operator_ctl, namespace, other_namespace, core_v1, custom_objects, redis_client):
    flood, team_b = namespace, other_namespace
    operator_ctl.start(RUNNING_CAPACITY="3", QUEUED_CAPACITY="50",
                       SUPERCHECK_NAMESPACE_MAX_RUNNING="2", SUPERCHECK_NAMESPACE_MAX_QUEUED="3",
                       SUPERCHECK_NAMESPACE_MAX_PRIORITY="100", SUPERCHECK_NAMESPACE_MAX_TIMEOUT_SECONDS="600")

    # The attack: top priority, the longest timeout the CRD allows, more runs than the cluster holds.
    create(custom_objects, flood, sleepy("greedy", 60, 1000, timeoutSeconds=86400))
    st = wait_for(lambda: (r := get_run(custom_objects, flood, "greedy")) and phase(r) == "Error" and r["status"],
                  60, what="the 86400 s run refused")
    assert st["reason"] == "NamespaceLimitExceeded", st
    assert "86400" in st["message"] and "600" in st["message"] and flood in st["message"]

    for i in range(6):  # a slow runner start must not let a run end before the flood is complete
        create(custom_objects, flood, sleepy(f"flood-{i}", 90, 1000, timeoutSeconds=600))
    wait_for(lambda: sum(phase(r) in ("Pending", "Running", "Queued", "Rejected")
                         for r in list_runs(custom_objects, flood) if r["metadata"]["name"] != "greedy") == 6,
             90, what="every flood run admitted, queued or rejected")
    runs = {r["metadata"]["name"]: r for r in list_runs(custom_objects, flood)}
    phases = sorted(phase(runs[f"flood-{i}"]) for i in range(6))
    assert phases.count("Queued") == 3 and phases.count("Rejected") == 1, phases
    rejected = next(r["status"] for r in runs.values() if phase(r) == "Rejected")
    assert rejected["reason"] == "NamespaceLimitExceeded", rejected
    assert flood in rejected["message"] and "3/3 runs queued" in rejected["message"], rejected["message"]
    assert "queued limit" in rejected["message"] and rejected["retryAfterSeconds"] >= 1
    assert ns_count(redis_client, NS_RUNNING, flood) <= 2 and ns_count(redis_client, NS_QUEUED, flood) == 3
    assert "PriorityClamped" in event_reasons(core_v1, flood, "flood-0", "PriorityClamped")

    # Team B, priority 0, arriving after the flood: its runs get slots, one after another promoted
    # past the flood's queued runs (the flood holds its whole share of 2).
    for i in range(3):
        create(custom_objects, team_b, sleepy(f"b-{i}", 1))

    def b_done():
        assert ns_count(redis_client, NS_RUNNING, flood) <= 2, "the flood exceeded its running share"
        assert ledger_counts(redis_client)[0] <= 3
        return all(phase(get_run(custom_objects, team_b, f"b-{i}")) == "Passed" for i in range(3))
    # Without passing over a namespace at its share, b-1 and b-2 would wait behind the flood's queued
    # runs (priority 100 > 0) until the flood's 90 s runs ended, and those would then start.
    wait_for(b_done, 240, 0.5, what="team B's runs passed while the flood holds its share")
    still_queued = [r["metadata"]["name"] for r in list_runs(custom_objects, flood) if phase(r) == "Queued"]
    assert len(still_queued) == 3, f"the flood's queued runs waited for its own share: {still_queued}"
    queued_msg = get_run(custom_objects, flood, still_queued[0])["status"]["message"]
    assert "running limit" in queued_msg, queued_msg

    # Cancel the flood: every slot and queue place comes back, per namespace too.
    for r in list_runs(custom_objects, flood):
        custom_objects.delete_namespaced_custom_object(GROUP, VERSION, flood, PLURAL, r["metadata"]["name"])
    wait_for(lambda: not list_runs(custom_objects, flood), 120, what="the flood's runs deleted")
    wait_ledger_zero(redis_client, timeout=60)
    assert ledger_counts(redis_client) == (0, 0)
    assert redis_client.hgetall(NS_RUNNING) == {} and redis_client.hgetall(NS_QUEUED) == {}


def test_a_wiped_redis_comes_back_with_the_namespace_counts(
        operator_ctl, namespace, other_namespace, services, custom_objects, redis_client):
    """Crash safety: Redis restarted empty; the rebuilt ledger counts each namespace's runs again, and
    the shares hold for what is admitted next."""
    flood, team_b = namespace, other_namespace
    operator_ctl.start(RUNNING_CAPACITY="3", QUEUED_CAPACITY="50", SUPERCHECK_NAMESPACE_MAX_RUNNING="2",
                       SUPERCHECK_LEDGER_RECONCILE_SECONDS="2")
    for i in range(3):
        create(custom_objects, flood, sleepy(f"flood-{i}", 60, 1000))
    create(custom_objects, team_b, sleepy("b-0", 60))
    wait_for(lambda: ns_count(redis_client, NS_RUNNING, flood) == 2 and ns_count(redis_client, NS_QUEUED, flood) == 1
             and ns_count(redis_client, NS_RUNNING, team_b) == 1, 90, what="the flood at its share, b running")

    services.redis_restart_empty()
    wait_for(lambda: ns_count(redis_client, NS_RUNNING, flood) == 2 and ns_count(redis_client, NS_QUEUED, flood) == 1
             and ns_count(redis_client, NS_RUNNING, team_b) == 1, 90, what="the namespace counts rebuilt")
    assert ledger_counts(redis_client) == (3, 1)

    for ns in (flood, team_b):
        for r in list_runs(custom_objects, ns):
            custom_objects.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, r["metadata"]["name"])
    wait_ledger_zero(redis_client, timeout=90)
    assert redis_client.hgetall(NS_RUNNING) == {} and redis_client.hgetall(NS_QUEUED) == {}
