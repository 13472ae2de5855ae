"""The run engine on in-memory ports (tests/operator/fakes.py): every transition of a TestRun,
without a cluster. The same engine runs on the real services in tests/operator/test_cluster_*.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import FakeClock, FakeKube, FakeLedger, FakeStore, RecordingEvents
from prometheus_client import CollectorRegistry

from supercheck.config import Settings
from supercheck.engine import WAIT
from supercheck.engine.context import Engine
from supercheck.engine.ledger_repair import reconcile_ledger
from supercheck.engine.run import RunHandle
from supercheck.engine.testrun import StillStopping, cancel, step
from supercheck.metrics import Metrics
from supercheck.pods import pod_view
from supercheck.ports import ApiUnavailable, StoreUnavailable
from supercheck_contract import (
    STORAGE_BACK,
    STORAGE_UNAVAILABLE,
    UPLOADING,
    ExitCode,
    FailureClass,
    K6Summary,
    Progress,
    RunnerResult,
    TestSummary,
    encode_termination_message,
)

K6 = {"type": "k6", "script": {"inline": "export default function () {}"}}
PLAYWRIGHT = {"type": "playwright", "script": {"inline": "import { test } from '@playwright/test';"}}


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = dict(running_capacity=2, queued_capacity=1, redis_url="redis://fake", database_url=None,
                                aws_access_key_id="AK", aws_secret_access_key="SK", s3_endpoint_url="http://s3",
                                retry_backoff_base_seconds=2.0, retry_backoff_max_seconds=60.0,
                                script_ref_grace_seconds=10.0, service_retry_seconds=2.0, metrics_port=0)
    return Settings(**{**base, **overrides})


@dataclass
class World:
    eng: Engine
    clock: FakeClock
    kube: FakeKube
    ledger: FakeLedger
    store: FakeStore
    events: RecordingEvents
    runs: dict[str, RunHandle] = field(default_factory=dict)

    def handle(self, name: str) -> RunHandle:
        """The run as a Kopf daemon holds it: Kopf's latest view, and the pods index."""
        body = self.kube.testrun(name)
        run = self.runs.get(name)
        if run is None or run.uid != body["metadata"]["uid"]:
            uid = body["metadata"]["uid"]
            run = self.runs[name] = RunHandle(self.eng, body, lambda: [
                v for v in (pod_view(p) for p in self.kube.pods()) if v.owner_uid == uid])
        run.live = body  # the watch delivered the newest version
        return run

    async def step(self, name: str) -> float | None:
        return await step(self.handle(name))

    async def settle(self, name: str, limit: int = 10) -> float | None:
        """Step until the run waits for something outside (an event, time) or is done."""
        delay: float | None = 0.0
        for _ in range(limit):
            delay = await self.step(name)
            if delay != 0.0:
                return delay
        raise AssertionError(f"{name} did not settle in {limit} steps")

    def status(self, name: str) -> dict[str, Any]:
        return self.kube.testrun(name).get("status") or {}

    def pod_names(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.kube.pods()]

    def metric(self, name: str, **labels: str) -> float:
        value = self.eng.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def world(**overrides: Any) -> World:
    clock = FakeClock()
    cfg = settings(**overrides)
    kube, store, events = FakeKube(clock), FakeStore(), RecordingEvents()
    ledger = FakeLedger(cfg.running_capacity, cfg.queued_capacity, clock)
    eng = Engine(settings=cfg, kube=kube, ledger=ledger, store=store,
                 metrics=Metrics(cfg, registry=CollectorRegistry()), events=events, clock=clock)
    return World(eng, clock, kube, ledger, store, events)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())


def result(failure: FailureClass, code: ExitCode, message: str = "", **extra: Any) -> str:
    return encode_termination_message(RunnerResult(exitCode=int(code), failureClass=failure, message=message,
                                                   **extra))


# ---------------------------------------------------------------- admission


def test_admitted_run_gets_its_script_configmap_and_attempt_1_pod():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == WAIT
        st = w.status("a")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "a-a1")
        assert ("ConfigMap", "ns", "a-script") in w.kube.objects
        assert ("Secret", "ns", "supercheck-runner-s3") in w.kube.objects
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
        assert "1/1 running and 1/1 queued" in st["message"] and "apply the TestRun again" in st["message"]
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
        assert [c["type"] for c in st["conditions"]] == ["ReferencesResolved"]
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


# ---------------------------------------------------------------- attempts and outcomes


async def _running(w: World, name: str = "a", spec: dict[str, Any] = K6) -> None:
    w.kube.add_testrun(name, spec)
    await w.settle(name)
    w.kube.pod_running(f"{name}-a1")
    assert await w.settle(name) == 10.0  # the runner's log is read again in SUPERCHECK_PROGRESS_POLL_SECONDS


def test_running_pod_marks_the_run_running_with_a_provisional_row():
    async def go():
        w = world()
        await _running(w)
        st = w.status("a")
        assert st["phase"] == "Running" and st["attemptHistory"][0]["phase"] == "Running"
        assert "Running" in w.events.reasons()
    run(go)


def test_running_row_is_provisional_and_the_final_row_replaces_it():
    async def go():
        w = world(database_url="postgresql://fake")
        await _running(w)
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert (w.store.rows[(uid, 1)].phase, w.store.rows[(uid, 1)].final) == ("Running", False)
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") is None
        assert (w.store.rows[(uid, 1)].phase, w.store.rows[(uid, 1)].final) == ("Passed", True)
        assert w.status("a")["recorded"] == [1]
    run(go)


@pytest.mark.parametrize("failure,code,phase,reason", [
    (FailureClass.NONE, ExitCode.PASSED, "Passed", "TestsPassed"),
    (FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "Failed", "TestsFailed"),
    (FailureClass.VALIDATION, ExitCode.VALIDATION, "Error", "InvalidScript"),
    (FailureClass.TIMEOUT, ExitCode.TIMEOUT, "TimedOut", "DeadlineExceeded"),
])
def test_outcomes_that_are_not_retried(failure, code, phase, reason):
    async def go():
        w = world()
        await _running(w, "a", PLAYWRIGHT)
        summary = TestSummary(total=3, passed=2, failed=1)
        w.kube.pod_terminated("a-a1", int(code), result(failure, code, "what the runner said", summary=summary))
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"]) == (phase, reason, 1)
        assert st["summary"]["total"] == 3 and st["message"] == "what the runner said"
        assert st.get("slot") is None and not w.ledger.running
        assert w.pod_names() == ["a-a1"]  # kept for kubectl logs until the clean-up sweep
        assert w.metric("supercheck_testruns_total", type="playwright", phase=phase) == 1
        assert reason in w.events.reasons()
    run(go)


def test_k6_verdict_lands_in_status():
    async def go():
        w = world()
        await _running(w)
        k6 = K6Summary(thresholdsPassed=False, checksPassed=9, checksFailed=1, iterations=10,
                       httpReqDurationP95Ms=12.5)
        w.kube.pod_terminated("a-a1", 10, result(FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "thresholds", k6=k6))
        await w.settle("a")
        st = w.status("a")
        assert st["phase"] == "Failed" and st["k6"]["checksFailed"] == 1 and st["k6"]["httpReqDurationP95Ms"] == 12.5
        assert st["result"] == "thresholds failed, 9/10 checks"
    run(go)


# ---------------------------------------------------------------- progress: the runner waits for S3

WAITING = Progress(phase=UPLOADING, reason=STORAGE_UNAVAILABLE,
                   message="S3 at http://s3: connection refused; 4 of 4 files not uploaded yet, "
                           "retrying until 2030-01-01T12:05:10Z").line()
BACK = Progress(phase=UPLOADING, reason=STORAGE_BACK, message="S3 at http://s3 answers again; uploading the "
                                                              "other 3 of 4 files").line()


def test_a_runner_waiting_for_s3_shows_uploading_then_the_pods_end_replaces_it():
    async def go():
        w = world()
        await _running(w, "a", PLAYWRIGHT)
        w.kube.pod_prints("a-a1", "Running 2 tests using 2 workers", "[supercheck] Playwright ended: exit code 0",
                          WAITING)
        reads = w.kube.calls.count("pod_log_tail")
        assert await w.settle("a") == 10.0
        assert w.status("a")["phase"] == "Running"  # read 0 s ago: not due, and nothing was read
        assert w.kube.calls.count("pod_log_tail") == reads
        w.clock.advance(10)
        assert await w.settle("a") == 10.0
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Uploading", "StorageUnavailable")
        assert st["message"] == ("attempt 1: S3 at http://s3: connection refused; 4 of 4 files not uploaded yet, "
                                 "retrying until 2030-01-01T12:05:10Z")
        assert st["attemptHistory"][0]["phase"] == "Uploading"
        assert ("Warning", "StorageUnavailable", st["message"]) in w.events.posted
        # The runner says it again at every retry: no new write, no new Event.
        version = w.kube.testrun("a")["metadata"]["resourceVersion"]
        w.kube.pod_prints("a-a1", WAITING, WAITING)
        w.clock.advance(10)
        assert await w.settle("a") == 10.0
        assert w.kube.testrun("a")["metadata"]["resourceVersion"] == version
        assert w.events.reasons().count("StorageUnavailable") == 1
        w.kube.pod_prints("a-a1", BACK)
        w.clock.advance(10)
        await w.settle("a")
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Uploading", "StorageBack") and "answers again" in st["message"]
        # The upload ends, and so does the pod: its outcome replaces Uploading as usual.
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED, "2 passed"), reason="Completed")
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"], st["message"]) == ("Passed", "TestsPassed", "2 passed")
        assert st["attemptHistory"][0]["phase"] == "Passed" and not w.ledger.running
    run(go)


def test_uploading_then_a_failed_attempt_is_retried_and_the_next_attempt_shows_running():
    async def go():
        w = world()
        await _running(w)
        w.kube.pod_prints("a-a1", WAITING)
        w.clock.advance(10)
        await w.settle("a")
        assert w.status("a")["phase"] == "Uploading"
        w.kube.pod_terminated("a-a1", 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "signal"))
        delay = await w.settle("a")
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attemptHistory"][0]["phase"]) == ("Pending", "RetryBackoff", "Error")
        w.clock.advance(delay)
        await w.settle("a")
        w.kube.pod_running("a-a2")
        assert await w.settle("a") == 10.0 - delay  # every 10 s per run: the backoff's 2 s count
        st = w.status("a")
        assert (st["phase"], st["podName"]) == ("Running", "a-a2")  # a fresh log: nothing announced yet
    run(go)


def test_a_log_that_cannot_be_read_changes_nothing_and_following_can_be_turned_off():
    async def go():
        w = world()
        await _running(w)
        w.kube.pod_prints("a-a1", WAITING)
        w.kube.logs_error = ApiUnavailable("the kubelet does not answer")
        w.clock.advance(10)
        assert await w.settle("a") == 10.0  # tried again at the next interval, not sooner
        assert w.status("a")["phase"] == "Running"
        w.kube.logs_error = None
        w.clock.advance(10)
        await w.settle("a")
        assert w.status("a")["phase"] == "Uploading"

        off = world(progress_poll_seconds=0)
        await _running_without_progress(off)
        off.kube.pod_prints("a-a1", WAITING)
        off.clock.advance(60)
        assert await off.settle("a") == 60.0  # only the backstop re-check
        assert off.status("a")["phase"] == "Running" and "pod_log_tail" not in off.kube.calls
    run(go)


async def _running_without_progress(w: World) -> None:
    w.kube.add_testrun("a", K6)
    await w.settle("a")
    w.kube.pod_running("a-a1")
    assert await w.settle("a") == 60.0


async def _fail_attempt(w: World, name: str, attempt: int, how: str) -> float | None:
    pod = f"{name}-a{attempt}"
    w.kube.pod_running(pod)
    await w.settle(name)
    if how == "oom":
        w.kube.pod_terminated(pod, 137, reason="OOMKilled")
    elif how == "browser":
        w.kube.pod_terminated(pod, 13, result(FailureClass.BROWSER_CRASH, ExitCode.BROWSER_CRASH, "chromium died"))
    elif how == "network":
        w.kube.pod_terminated(pod, 15, result(FailureClass.NETWORK, ExitCode.NETWORK, "jslib.k6.io: no such host"))
    elif how == "infra":
        w.kube.pod_terminated(pod, 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 refused"))
    elif how == "lost":
        w.kube.remove_pod(pod)
    return await w.settle(name)


@pytest.mark.parametrize("how,retries,reason", [
    ("oom", 1, "OOMKilled"),
    ("browser", 2, "BrowserCrashed"),
    ("infra", 3, "InfrastructureError"),
    ("network", 3, "NetworkError"),
    ("lost", 3, "PodLost"),
])
def test_failure_classes_are_retried_with_backoff_up_to_their_limit(how, retries, reason):
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        delays = []
        for attempt in range(1, retries + 2):
            delay = await _fail_attempt(w, "a", attempt, how)
            if attempt <= retries:
                st = w.status("a")
                assert (st["phase"], st["reason"]) == ("Pending", "RetryBackoff")
                assert f"retry {attempt} of {retries}" in st["message"]
                delays.append(delay)
                assert await w.settle("a") == delay  # not before its time
                w.clock.advance(delay)
                assert await w.settle("a") == WAIT
                assert w.status("a")["podName"] == f"a-a{attempt + 1}"  # a new pod name per attempt
            else:
                assert delay is None
        assert delays == [2.0 * 2 ** i for i in range(retries)]
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"]) == ("Error", reason, retries + 1)
        assert f"(gave up after {retries + 1} attempts)" in st["message"]
        assert [h["attempt"] for h in st["attemptHistory"]] == list(range(1, retries + 2))
        assert not w.ledger.running
        failure_class = {"oom": "oom", "browser": "browser_crash", "infra": "infrastructure", "network": "network",
                         "lost": "pod_lost"}[how]
        assert w.metric("supercheck_retries_total", type="k6", failure_class=failure_class) == retries
    run(go)


def test_a_retry_waits_for_the_previous_pod_to_be_gone():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.pod_running("a-a1")
        await w.settle("a")
        w.kube.pod_terminated("a-a1", 137, reason="OOMKilled")
        await w.settle("a")
        pod = w.kube.objects[("Pod", "ns", "a-a1")]
        pod["status"]["containerStatuses"][0]["state"] = {"running": {}}  # still holding a process (say)
        pod["status"]["phase"] = "Running"
        w.clock.advance(2)
        assert await w.settle("a") == WAIT
        assert w.pod_names() == []  # deleted; a2 comes on the next step
        assert await w.settle("a") == WAIT
        assert w.pod_names() == ["a-a2"]
    run(go)


def test_a_pod_that_never_ran_and_vanished_is_created_again_not_counted_lost():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.remove_pod("a-a1")
        assert await w.settle("a") == WAIT
        assert w.pod_names() == ["a-a1"] and w.status("a")["attempts"] == 1
    run(go)


def test_an_unpullable_image_is_an_infrastructure_failure_and_its_pod_is_removed():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        pod = w.kube.objects[("Pod", "ns", "a-a1")]
        pod["status"] = {"phase": "Pending", "containerStatuses": [
            {"name": "runner", "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}
        assert await w.settle("a") == 2.0
        assert w.status("a")["failureClass"] == "infrastructure" and w.pod_names() == []
    run(go)


# ---------------------------------------------------------------- results


def test_store_down_the_status_holds_the_truth_and_the_rows_land_when_it_returns():
    async def go():
        w = world(database_url="postgresql://fake")
        await _running(w)
        w.store.down = True
        w.kube.pod_terminated("a-a1", 10, result(FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "1 failed"))
        assert await w.settle("a") == 2.0
        st = w.status("a")
        assert st["phase"] == "Failed" and "recorded" not in st
        cond = {c["type"]: c for c in st["conditions"]}["ResultsRecorded"]
        assert (cond["status"], cond["reason"]) == ("False", "DatabaseUnavailable")
        assert w.metric("supercheck_results_pending") == 1
        assert not w.ledger.running  # the slot is not held hostage by the database
        w.store.down = False
        assert await w.settle("a") is None
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Failed" and w.status("a")["recorded"] == [1]
        assert w.metric("supercheck_results_pending") == 0
    run(go)


def test_ttl_deletes_the_run_after_it_ends():
    async def go():
        w = world()
        await _running(w, "a", {**K6, "ttlSecondsAfterFinished": 60})
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") == 60.0
        w.clock.advance(60)
        assert await w.settle("a") is None
        assert ("TestRun", "ns", "a") not in w.kube.objects
    run(go)


# ---------------------------------------------------------------- cancellation


def test_cancel_stops_the_pod_then_records_cancelled_and_promotes_the_next():
    async def go():
        w = world(running_capacity=1, database_url="postgresql://fake")
        await _running(w)
        w.kube.add_testrun("b", K6)
        assert await w.settle("b") == 30.0
        handle = w.handle("a")
        with pytest.raises(StillStopping, match="a-a1"):
            await cancel(handle)
        assert w.pod_names() == []
        assert await step(handle) is None  # the daemon stops: the run is being cancelled
        await cancel(w.handle("a"))
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Cancelled", "Cancelled")
        assert st["message"] == "the TestRun was deleted while Running"
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Cancelled"
        assert await w.settle("b") == WAIT and w.pod_names() == ["b-a1"]
    run(go)


def test_cancel_of_a_queued_run_frees_its_place():
    async def go():
        w = world(running_capacity=1, queued_capacity=1)
        await _running(w)
        w.kube.add_testrun("b", K6)
        await w.settle("b")
        await cancel(w.handle("b"))
        assert w.status("b")["phase"] == "Cancelled" and not w.ledger.queue
        w.kube.add_testrun("c", K6)
        assert await w.settle("c") == 30.0  # the freed place is usable
    run(go)


def test_cancel_with_the_store_down_raises_for_a_retry_after_the_status_is_written():
    async def go():
        w = world(database_url="postgresql://fake")
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.remove_pod("a-a1")
        w.store.down = True
        with pytest.raises(StoreUnavailable):
            await cancel(w.handle("a"))
        assert w.status("a")["phase"] == "Cancelled" and not w.ledger.running
        w.store.down = False
        await cancel(w.handle("a"))  # the finalizer's retry writes the row
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Cancelled"
    run(go)


# ---------------------------------------------------------------- repair


def test_reconcile_frees_a_leaked_slot_and_restores_a_missing_one():
    async def go():
        w = world(running_capacity=2)
        await _running(w)
        uid_a = w.kube.testrun("a")["metadata"]["uid"]
        w.ledger.running.clear()  # lost behind our back
        w.ledger.running["ghost"] = 0  # a run nobody knows
        await reconcile_ledger(w.eng)
        assert set(w.ledger.running) == {uid_a}
        assert w.metric("supercheck_slots_repaired_total", kind="stale_running") == 1
        assert w.metric("supercheck_slots_repaired_total", kind="missing_running") == 1
    run(go)
