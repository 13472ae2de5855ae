"""The run engine on in-memory ports: admission (run, queue, reject, refuse) and the services it
waits for."""

from __future__ import annotations

from typing import Any

import pytest
from engine_kit import K6, result, run, world

from supercheck.engine import WAIT
from supercheck.engine.testrun import step
from supercheck.ports import ApiUnavailable
from supercheck_contract import (
    ExitCode,
    FailureClass,
)

# ---------------------------------------------------------------- admission


def test_admitted_run_gets_its_script_configmap_and_attempt_1_pod():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == WAIT
        st = w.status("a")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "a-a1")
        assert ("ConfigMap", "ns", "a-script") in w.kube.objects
        assert [n for (k, _, n) in w.kube.objects if k == "Secret"] == ["a-a1-upload"]  # its grant, no shared key
        assert w.pod_names() == ["a-a1"]
        assert "Dispatched" in w.events.reasons()
        assert set(w.ledger.running) == {w.kube.testrun("a")["metadata"]["uid"]}
    run(go)


def test_full_running_slots_queue_then_a_release_promotes_first_in_first_out():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        for name in ("a", "b", "c"):
            w.kube.add_testrun(name, K6)
            await w.settle(name)
        assert [w.status(n)["phase"] for n in "abc"] == ["Pending", "Queued", "Queued"]
        assert w.status("c")["message"] == "waiting for a running slot; position 2 in the queue"
        assert w.pod_names() == ["a-a1"]
        # a passes: its release promotes b (first in), not c
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") is None
        assert w.status("a")["phase"] == "Passed"
        assert await w.settle("b") == WAIT and await w.settle("c") == 30.0
        assert w.pod_names() == ["a-a1", "b-a1"]
        assert w.status("c")["phase"] == "Queued"
    run(go)


def test_higher_priority_overtakes_the_queue():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        w.kube.add_testrun("holder", K6)
        w.kube.add_testrun("low", K6)
        w.kube.add_testrun("high", {**K6, "priority": 10})
        for n in ("holder", "low", "high"):
            await w.settle(n)
        assert w.status("high")["message"].endswith("position 1 in the queue")
        w.kube.pod_terminated("holder-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("holder")
        await w.settle("low")
        await w.settle("high")
        assert w.pod_names() == ["high-a1", "holder-a1"]
    run(go)


def test_beyond_the_queue_a_run_is_rejected_with_a_retry_after_and_holds_nothing():
    async def go():
        w = world(running_capacity=1, queued_capacity=1)
        for name in ("a", "b", "c"):
            w.kube.add_testrun(name, K6)
            await w.settle(name)
        st = w.status("c")
        assert (st["phase"], st["reason"], st["slot"] if "slot" in st else None) == ("Rejected", "CapacityExceeded",
                                                                                     None)
        assert st["retryAfterSeconds"] >= 1
        assert "1/1 running and 1/1 queued" in st["message"] and "kubectl delete testrun " in st["message"]
        assert "CapacityExceeded" in w.events.reasons()
        assert w.metric("supercheck_rejections_total", type="k6", reason="CapacityExceeded") == 1
        assert len(w.ledger.running) == 1 and len(w.ledger.queue) == 1
    run(go)


def test_resources_above_the_operator_maximum_are_refused_before_any_pod():
    async def go():
        w = world()
        w.kube.add_testrun("big", {**K6, "resources": {"cpu": "64"}})
        assert await w.settle("big") is None
        st = w.status("big")
        assert (st["phase"], st["reason"]) == ("Error", "ResourcesOutOfBounds")
        assert "spec.resources.cpu=64 is above the operator's maximum 4 (RUNNER_MAX_CPU)" in st["message"]
        assert w.pod_names() == [] and not w.ledger.running
    run(go)


def test_a_missing_configmap_waits_out_its_grace_then_errors_with_the_keys_it_has():
    async def go():
        w = world()
        w.kube.add_testrun("cm", {"type": "k6", "script": {"configMapRef": {"name": "scripts", "key": "smoke.js"}}})
        delay = await w.settle("cm")
        assert 0 < delay <= 1.0
        st = w.status("cm")
        assert (st["phase"], st["reason"]) == ("Pending", "ConfigMapNotFound")
        assert {c["type"]: c["status"] for c in st["conditions"]}["ReferencesResolved"] == "False"
        # the ConfigMap appears, with the wrong key, and the grace period runs out
        w.kube.add({"kind": "ConfigMap", "metadata": {"name": "scripts", "namespace": "ns"},
                    "data": {"other.js": "x"}})
        w.clock.advance(11)
        assert await w.settle("cm") is None
        st = w.status("cm")
        assert (st["phase"], st["reason"]) == ("Error", "KeyNotFound")
        assert "has no key 'smoke.js' (it has: other.js)" in st["message"]
    run(go)


SUITE = {"type": "playwright", "script": {"configMapRef": {
    "name": "todo-suite", "key": "todo.spec.ts", "path": "tests/todo.spec.ts",
    "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}]}}}


def configmap(name: str, data: dict[str, str], binary: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": data,
            **({"binaryData": binary} if binary else {})}


def test_a_missing_helper_key_is_an_error_before_any_pod_naming_the_keys_there_are():
    async def go():
        w = world()
        w.kube.add(configmap("todo-suite", {"todo.spec.ts": "t", "fixture.ts": "typo"}))
        w.kube.add_testrun("todo", SUITE)
        assert 0 < await w.settle("todo") <= 1.0  # Pending within the grace period: it may come
        assert w.status("todo")["reason"] == "KeyNotFound"
        w.clock.advance(11)
        assert await w.settle("todo") is None
        st = w.status("todo")
        assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "KeyNotFound", 0)
        assert st["message"] == ("ConfigMap 'todo-suite' referenced by spec.script.configMapRef.files[0] has no key "
                                 "'fixtures.ts' (it has: fixture.ts, todo.spec.ts)")
        assert w.pod_names() == [] and ("ConfigMap", "ns", "todo-script") not in w.kube.objects
        assert not w.ledger.running
    run(go)


def test_a_script_with_its_files_is_snapshotted_whole_and_mounted_at_its_paths():
    async def go():
        w = world()
        w.kube.add(configmap("todo-suite", {"todo.spec.ts": "spec", "fixtures.ts": "fix", "other.ts": "not asked"}))
        w.kube.add_testrun("todo", SUITE)
        assert await w.settle("todo") == WAIT
        snapshot = w.kube.objects[("ConfigMap", "ns", "todo-script")]
        assert snapshot["data"] == {"todo.spec.ts": "spec", "fixtures.ts": "fix"}
        # a later edit of the source does not reach the run
        w.kube.objects[("ConfigMap", "ns", "todo-suite")]["data"]["fixtures.ts"] = "edited"
        pod = w.kube.pods()[0]
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "script")["configMap"]
        assert volume["items"] == [{"key": "todo.spec.ts", "path": "tests/todo.spec.ts"},
                                   {"key": "fixtures.ts", "path": "fixtures/index.ts"}]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["SUPERCHECK_SCRIPT_PATH"] == "/supercheck/script/tests/todo.spec.ts"
        assert env["SUPERCHECK_SCRIPT_NAME"] == "tests/todo.spec.ts"
    run(go)


WHOLE = {"type": "playwright", "script": {"configMapRef": {
    "name": "todo-suite", "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}]}}}


def test_a_whole_configmap_is_the_suite_and_every_key_is_mounted():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        w.kube.add(configmap("todo-suite", {"a.spec.ts": "a", "fixtures.ts": "f"}, {"logo.png": "iVBORw0K"}))
        w.kube.add_testrun("first", K6)
        await w.settle("first")
        w.kube.add_testrun("todo", WHOLE)
        assert await w.settle("todo") == 30.0  # queued: the snapshot is taken now
        w.kube.objects[("ConfigMap", "ns", "todo-suite")]["data"]["b.spec.ts"] = "added later"
        w.kube.pod_terminated("first-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("first")
        assert await w.settle("todo") == WAIT
        snapshot = w.kube.objects[("ConfigMap", "ns", "todo-script")]
        assert snapshot["data"] == {"a.spec.ts": "a", "fixtures.ts": "f"}
        assert snapshot["binaryData"] == {"logo.png": "iVBORw0K"}
        pod = next(p for p in w.kube.pods() if p["metadata"]["name"] == "todo-a1")
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "script")["configMap"]
        assert volume["items"] == [{"key": "a.spec.ts", "path": "a.spec.ts"},
                                   {"key": "fixtures.ts", "path": "fixtures/index.ts"},
                                   {"key": "logo.png", "path": "logo.png"}]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert (env["SUPERCHECK_SCRIPT_PATH"], env["SUPERCHECK_SCRIPT_NAME"]) == ("/supercheck/script", "")
    run(go)


@pytest.mark.parametrize("data, reason, words", [
    ({"fixtures.ts": "f", "README.md": "r"}, "KeyNotFound",
     "ConfigMap 'todo-suite' referenced by spec.script.configMapRef has no test file"),
    ({"fixtures.ts": "f", "a.spec.ts": "a", "fixtures": "a file where a folder must go"}, "InvalidSpec",
     "ConfigMap 'todo-suite': 'fixtures' is a file, but 'fixtures/index.ts' needs it to be a folder"),
])
def test_a_whole_configmap_that_cannot_run_is_an_error_before_any_pod(data, reason, words):
    async def go():
        w = world()
        w.kube.add(configmap("todo-suite", data))
        w.kube.add_testrun("todo", WHOLE)
        await w.settle("todo")
        w.clock.advance(11)
        assert await w.settle("todo") is None
        st = w.status("todo")
        assert (st["phase"], st["reason"]) == ("Error", reason)
        assert words in st["message"]
        assert w.pod_names() == []
    run(go)


def test_a_deleted_snapshot_of_a_whole_configmap_ends_the_run_before_its_pod():
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        w.kube.add(configmap("todo-suite", {"a.spec.ts": "a", "fixtures.ts": "f"}))
        w.kube.add_testrun("first", K6)
        await w.settle("first")
        w.kube.add_testrun("todo", WHOLE)
        await w.settle("todo")
        del w.kube.objects[("ConfigMap", "ns", "todo-script")]
        w.kube.pod_terminated("first-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("first")
        assert await w.settle("todo") is None
        st = w.status("todo")
        assert (st["phase"], st["reason"]) == ("Error", "ConfigMapNotFound")
        assert "script snapshot, ConfigMap 'todo-script', was deleted" in st["message"]
        assert "todo-a1" not in w.pod_names() and not w.ledger.running
    run(go)


def test_an_invalid_spec_is_an_error_before_any_pod():
    async def go():
        w = world()
        w.kube.add_testrun("bad", {"type": "k6", "script": {"inline": "x"}, "priority": 5000})
        assert await w.settle("bad") is None
        st = w.status("bad")
        assert (st["phase"], st["reason"]) == ("Error", "InvalidSpec")
        assert "priority" in st["message"]
    run(go)


def test_ledger_down_nothing_is_admitted_on_a_guess_and_the_run_says_why():
    async def go():
        w = world()
        w.ledger.down = True
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == 2.0
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Pending", "LedgerUnavailable")
        assert st["conditions"][0]["type"] == "Admitted" and st["conditions"][0]["status"] == "False"
        assert w.pod_names() == []
        assert w.metric("supercheck_service_errors_total", service="redis") >= 1
        w.ledger.down = False
        assert await w.settle("a") == WAIT
        assert w.pod_names() == ["a-a1"]
    run(go)


def test_ledger_wiped_is_rebuilt_from_the_cluster_before_anything_is_admitted():
    async def go():
        w = world(running_capacity=1)
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        uid_a = w.kube.testrun("a")["metadata"]["uid"]
        w.ledger.wiped = True
        w.ledger.running.clear()
        w.kube.add_testrun("b", K6)
        assert await w.settle("b") == 30.0  # rebuilt: a holds the one slot, so b queues
        assert set(w.ledger.running) == {uid_a}
        assert w.status("b")["phase"] == "Queued"
        assert w.metric("supercheck_ledger_rebuilds_total") == 1
    run(go)


def test_api_server_down_the_run_waits_and_retries():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        run_a = w.handle("a")
        w.kube.down = True
        assert await step(run_a) == 2.0
        assert w.metric("supercheck_service_errors_total", service="kubernetes") == 1
        w.kube.down = False
        assert await w.settle("a") == WAIT
    run(go)


def test_a_conflicting_status_write_is_not_applied_and_the_step_starts_over():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        run_a = w.handle("a")  # holds the version before the other writer
        w.kube.touch_testrun("a", message="written by another replica")
        assert await step(run_a) == 0.0  # Conflict: read again
        assert "slot" not in w.status("a")
        assert w.pod_names() == []
        assert await w.settle("a") == WAIT  # the fresh view admits it once
        assert w.pod_names() == ["a-a1"] and w.status("a")["attempts"] == 1
    run(go)


def test_a_refused_pod_is_retried_as_the_api_server_recovers_never_twice():
    async def go():
        w = world()
        w.kube.refuse_pods = ApiUnavailable("503 the admission webhook timed out")
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == 2.0
        st = w.status("a")
        assert (st["attempts"], st["slot"]) == (1, "running")  # the attempt is claimed, its pod not there
        w.kube.refuse_pods = None
        assert await w.settle("a") == WAIT
        assert w.pod_names() == ["a-a1"] and w.status("a")["attempts"] == 1
    run(go)
