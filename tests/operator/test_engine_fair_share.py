"""Fair share on the in-memory ports: a namespace's running and queued shares, its maximum priority
(lowered, with a Warning Event) and maximum timeout (refused), for TestRuns and JobRuns; the fake
ledger follows the Lua (tests/operator/test_ledger_lua.py compares them)."""

from __future__ import annotations

import json

from engine_kit import K6, World, result, run, world
from test_engine_jobrun import job_spec, settle, status, suite_cm

from supercheck.engine import WAIT
from supercheck.engine.ledger_repair import rebuild_ledger, reconcile_ledger
from supercheck_contract import ExitCode, FailureClass

LIMITS = json.dumps({"flood": {"running": 1, "queued": 2, "maxPriority": 100}})


def fair_world(**overrides) -> World:
    return world(**{"running_capacity": 3, "queued_capacity": 10, "namespace_limits": LIMITS, **overrides})


async def add(w: World, name: str, namespace: str, **spec) -> float | None:
    w.kube.add_testrun(name, {**K6, **spec}, namespace=namespace)
    return await w.settle(name, namespace=namespace)


def test_a_flooding_namespace_gets_its_share_others_run_and_its_excess_is_rejected_naming_the_limit():
    async def go():
        w = fair_world()
        for i in range(4):
            await add(w, f"f{i}", "flood", priority=1000, timeoutSeconds=3600)
        assert await add(w, "other", "team-b") == WAIT  # a slot is free and flood is at its share
        phases = [w.status(f"f{i}", "flood")["phase"] for i in range(4)]
        assert phases == ["Pending", "Queued", "Queued", "Rejected"]
        assert w.status("other", "team-b")["phase"] == "Pending" and w.kube.pods("team-b")
        queued = w.status("f1", "flood")["message"]
        assert "namespace 'flood' holds 1/1 running slots" in queued
        st = w.status("f3", "flood")
        assert st["reason"] == "NamespaceLimitExceeded" and st["retryAfterSeconds"] >= 1
        assert "namespace 'flood'" in st["message"] and "2/2 runs queued" in st["message"]
        assert "SUPERCHECK_NAMESPACE_MAX_QUEUED" in st["message"]
        assert ("Warning", "NamespaceLimitExceeded", st["message"]) in w.events.posted
        assert w.metric("supercheck_rejections_total", type="k6", reason="NamespaceLimitExceeded") == 1
        # The priority above flood's maximum was lowered, said once per run in a Warning Event.
        clamped = [m for t, r, m in w.events.posted if r == "PriorityClamped"]
        assert len(clamped) == 4 and "maximum priority 100" in clamped[0]
        assert w.ledger.queue[w.kube.testrun("f1", "flood")["metadata"]["uid"]] // 2**40 == 1000 - 100
    run(go)


def test_a_run_of_another_namespace_queued_behind_the_flood_is_promoted_past_it():
    async def go():
        w = fair_world(running_capacity=2)
        await add(w, "f0", "flood", priority=100)
        await add(w, "b0", "team-b")  # 2/2 used
        await add(w, "f1", "flood", priority=100)  # over flood's share, at the head of the queue
        await add(w, "b1", "team-b")  # waits for a slot, behind f1
        w.kube.pod_terminated("b0-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed",
                              namespace="team-b")
        await w.settle("b0", namespace="team-b")
        assert await w.settle("b1", namespace="team-b") == WAIT
        assert w.status("b1", "team-b")["slot"] == "running"
        assert w.status("f1", "flood")["phase"] == "Queued"
        # flood's own run ends: its queued run gets the slot.
        w.kube.pod_terminated("f0-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed",
                              namespace="flood")
        await w.settle("f0", namespace="flood")
        assert await w.settle("f1", namespace="flood") == WAIT
        assert w.status("f1", "flood")["slot"] == "running"
    run(go)


def test_a_timeout_above_the_namespace_maximum_is_refused_before_any_pod():
    async def go():
        w = fair_world(namespace_max_timeout_seconds=600)
        assert await add(w, "long", "team-b", timeoutSeconds=86400) is None
        st = w.status("long", "team-b")
        assert (st["phase"], st["reason"]) == ("Error", "NamespaceLimitExceeded")
        assert "86400" in st["message"] and "maximum of 600s" in st["message"] and "team-b" in st["message"]
        assert not w.kube.pods("team-b") and not w.ledger.running
        assert await add(w, "short", "team-b", timeoutSeconds=600) == WAIT
        assert await add(w, "default", "team-b") == WAIT  # the operator's default timeout applies as it is
    run(go)


def test_without_limits_nothing_changes():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        await add(w, "a", "ns", priority=1000, timeoutSeconds=86400)
        await add(w, "b", "other", priority=1000)
        assert w.status("b", "other")["message"] == "waiting for a running slot; position 1 in the queue"
        assert "PriorityClamped" not in w.events.reasons()
    run(go)


def test_a_wiped_ledger_is_rebuilt_with_the_clamped_priorities():
    async def go():
        w = fair_world(running_capacity=1)
        await add(w, "b0", "team-b")
        await add(w, "f0", "flood", priority=1000)  # queued, clamped to 100
        await add(w, "b1", "team-b", priority=500)  # queued ahead of f0
        w.ledger.wiped = True
        await rebuild_ledger(w.eng)
        order = [w.ledger.refs[uid] for uid in sorted(w.ledger.queue, key=w.ledger.queue.__getitem__)]
        assert order == ["team-b/b1", "flood/f0"]  # not f0's spec.priority 1000
        snap = await w.ledger.snapshot()
        assert snap.namespace_running == {"team-b": 1} and snap.namespace_queued == {"team-b": 1, "flood": 1}
    run(go)


def test_a_jobrun_takes_at_most_its_namespace_share_of_slots():
    async def go():
        w = world(running_capacity=4, queued_capacity=5, namespace_max_running=1)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec(parallelism=3))
        await settle(w, "j")
        st = status(w)
        assert st["phase"] == "Running" and st["slots"] == 1 and len(st["shards"]) == 1
        w.kube.add_jobrun("k", job_spec(parallelism=2))
        await settle(w, "k")
        st = status(w, "k")
        assert st["phase"] == "Queued" and "namespace 'ns' holds 1/1 running slots" in st["message"]
    run(go)


def test_the_leak_repair_recounts_namespace_counts_that_drifted():
    """A ledger written before fair share (an upgrade) has no per-namespace counts: the repair redoes them."""
    async def go():
        w = fair_world()
        await add(w, "b0", "team-b")
        real, recounted = w.ledger.snapshot, []

        async def without_namespace_counts():
            snap = await real()
            snap.namespace_running = {}
            return snap

        async def recount():
            recounted.append(True)
        w.ledger.snapshot = without_namespace_counts  # type: ignore[method-assign]
        w.ledger.recount = recount  # type: ignore[method-assign]
        await reconcile_ledger(w.eng)
        assert recounted == [True]
        assert w.metric("supercheck_slots_repaired_total", kind="namespace_counts") == 1
        w.ledger.snapshot = real  # type: ignore[method-assign]
        await reconcile_ledger(w.eng)
        assert recounted == [True]  # counts that agree are left alone
    run(go)


def test_the_lowered_priority_is_announced_once_not_on_every_retry_while_redis_is_away():
    async def go():
        w = fair_world()
        w.ledger.down = True
        w.kube.add_testrun("f0", {**K6, "priority": 1000}, namespace="flood")
        for _ in range(3):
            await w.step("f0", "flood")
        assert "PriorityClamped" not in w.events.reasons()
        w.ledger.down = False
        assert await w.settle("f0", namespace="flood") == WAIT
        assert w.events.reasons().count("PriorityClamped") == 1
    run(go)


def test_a_jobrun_priority_is_lowered_too():
    async def go():
        w = world(running_capacity=2, queued_capacity=5, namespace_max_priority=7)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec(parallelism=2))
        await settle(w, "j")
        w.kube.add_jobrun("k", job_spec(parallelism=1, priority=1000))
        await settle(w, "k")
        uid = w.kube.jobrun("k")["metadata"]["uid"]
        assert w.ledger.queue[uid] // 2**40 == 1000 - 7
        assert [m for _, r, m in w.events.posted if r == "PriorityClamped"] == [
            "spec.priority 1000 is above the maximum priority 7 of namespace 'ns' (set by the cluster admin in "
            "SUPERCHECK_NAMESPACE_LIMITS or SUPERCHECK_NAMESPACE_MAX_PRIORITY); the run is queued with priority 7"]
    run(go)


def test_a_jobrun_beyond_its_namespace_queue_share_is_rejected_naming_it():
    async def go():
        w = world(running_capacity=2, queued_capacity=5, namespace_max_queued=0)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec(parallelism=2))
        await settle(w, "j")
        w.kube.add_jobrun("k", job_spec(parallelism=1))
        assert await settle(w, "k") is None
        st = status(w, "k")
        assert (st["phase"], st["reason"]) == ("Rejected", "NamespaceLimitExceeded")
        assert "namespace 'ns' already has 0/0 runs queued" in st["message"]
        assert "kubectl delete jobrun " in st["message"]
        assert st["retryAfterSeconds"] >= 1 and not w.ledger.queue
    run(go)
