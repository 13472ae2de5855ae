"""The run engine on in-memory ports: a run's pods mount its own script snapshot, never a ConfigMap of
the snapshot's name that is someone else's (a user's own ``<run>-script``, or an earlier run's of the
same name the garbage collector has not removed yet)."""

from __future__ import annotations

from typing import Any

from engine_kit import K6, result, run, world
from test_engine_jobrun import handle, job_spec, settle, status, suite_cm

from supercheck.engine import WAIT, jobrun
from supercheck.engine.snapshot import EARLIER_SNAPSHOT_GRACE_SECONDS
from supercheck_contract import ExitCode, FailureClass

USERS_SCRIPT = "import http from 'k6/http'; export default function () { http.get('http://elsewhere') }"


def users_configmap(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a.js": USERS_SCRIPT}}


def test_a_users_configmap_named_like_the_snapshot_is_never_mounted_the_run_ends_error():
    async def go():
        w = world()
        w.kube.add(users_configmap("a-script"))
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert "ConfigMap 'a-script' already exists and is not this TestRun's" in st["message"]
        assert "rename or delete ConfigMap 'a-script'" in st["message"]
        assert w.pod_names() == [] and w.ledger.used() == 0
        assert w.kube.objects[("ConfigMap", "ns", "a-script")]["data"] == {"a.js": USERS_SCRIPT}  # left alone
        assert "SnapshotConflict" in w.events.reasons()
    run(go)


def test_a_queued_run_finds_the_users_configmap_and_ends_error_without_taking_a_slot():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        w.kube.add_testrun("holder", K6)
        await w.settle("holder")
        w.kube.add(users_configmap("q-script"))
        w.kube.add_testrun("q", K6)
        assert await w.settle("q") is None
        st = w.status("q")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert len(w.ledger.queue) == 0 and w.pod_names() == ["holder-a1"]
    run(go)


def test_an_earlier_runs_snapshot_is_waited_for_then_the_run_takes_its_own():
    async def go():
        w = world()
        w.kube.add_testrun("a", {"type": "k6", "script": {"inline": "export default function () { /* new */ }"}})
        earlier = {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "name": "a", "uid": "uid-earlier",
                   "controller": True}
        w.kube.add(users_configmap("a-script", earlier))
        assert await w.settle("a") == 2.0  # waiting for the garbage collector
        assert w.pod_names() == [] and w.status("a")["attempts"] == 1
        del w.kube.objects[("ConfigMap", "ns", "a-script")]  # collected
        w.clock.advance(2)
        assert await w.settle("a") == WAIT
        cm = w.kube.objects[("ConfigMap", "ns", "a-script")]
        assert cm["data"] == {"a.js": "export default function () { /* new */ }"}
        assert cm["metadata"]["ownerReferences"][0]["uid"] == w.kube.testrun("a")["metadata"]["uid"]
        assert w.pod_names() == ["a-a1"]
    run(go)


def test_an_earlier_runs_snapshot_that_stays_ends_the_run_after_the_grace():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        earlier = {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "name": "a", "uid": "uid-earlier"}
        w.kube.add(users_configmap("a-script", earlier))
        assert await w.settle("a") == 2.0
        w.clock.advance(EARLIER_SNAPSHOT_GRACE_SECONDS + 1)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert "earlier TestRun 'a' (uid uid-earlier)" in st["message"] and w.ledger.used() == 0
    run(go)


def test_a_snapshot_replaced_by_the_user_between_attempts_is_not_mounted_by_the_retry():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.pod_running("a-a1")
        await w.settle("a")
        w.kube.pod_terminated("a-a1", 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 refused"))
        assert await w.settle("a") == 2.0
        del w.kube.objects[("ConfigMap", "ns", "a-script")]
        w.kube.add(users_configmap("a-script"))
        w.clock.advance(2)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "SnapshotConflict", 2)
        assert "a-a2" not in w.pod_names() and w.ledger.used() == 0
    run(go)


def test_a_jobs_snapshot_name_taken_by_a_users_configmap_ends_the_job_error():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        suite_cm(w)
        w.kube.add(users_configmap("j-script"))
        w.kube.add_jobrun("j", job_spec())
        assert await jobrun.step(handle(w, "j")) is None
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert "not this JobRun's" in st["message"] and w.ledger.used() == 0 and w.pod_names() == []
    run(go)


def test_a_jobs_snapshot_replaced_while_it_runs_is_not_mounted_by_a_retried_shard():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec())
        await settle(w, "j")
        w.kube.pod_running("j-s2-a1")
        w.kube.pod_terminated("j-s1-a1", 137, reason="OOMKilled")
        assert await settle(w, "j") == 2.0
        del w.kube.objects[("ConfigMap", "ns", "j-script")]
        w.kube.add(users_configmap("j-script"))
        w.clock.advance(2)
        assert await settle(w, "j") == 1.0  # shard 2's pod is stopped first
        assert "j-s2-a1" not in w.pod_names()
        assert await settle(w, "j") is None
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert "j-s1-a2" not in w.pod_names() and w.ledger.used() == 0
    run(go)


def test_a_testrun_and_a_jobrun_of_one_name_never_share_a_snapshot():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        w.kube.add_testrun("same", K6)
        await w.settle("same")
        assert w.pod_names() == ["same-a1"]
        w.kube.add_jobrun("same", {"type": "k6", "tests": [{"name": "t", "script": {"inline": "export default "
                                                                                          "function () {}"}}]})
        assert await jobrun.step(handle(w, "same")) is None
        st = status(w, "same")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict")
        assert "is the snapshot of TestRun 'same'; give the JobRun another name" in st["message"]
        assert w.status("same")["phase"] == "Pending" and w.pod_names() == ["same-a1"]  # the TestRun runs on
    run(go)
