"""The run engine on in-memory ports: attempts (launch, observe, Uploading, retry by failure class)."""

from __future__ import annotations

import pytest
from engine_kit import K6, PLAYWRIGHT, fail_attempt, result, run, running, running_without_progress, world

from supercheck.engine import WAIT
from supercheck.ports import ApiUnavailable
from supercheck_contract import (
    STORAGE_BACK,
    STORAGE_UNAVAILABLE,
    UPLOADING,
    ExitCode,
    FailureClass,
    K6Summary,
    Progress,
    TestSummary,
)

# ---------------------------------------------------------------- attempts and outcomes


def test_running_pod_marks_the_run_running_with_a_provisional_row():
    async def go():
        w = world()
        await running(w)
        st = w.status("a")
        assert st["phase"] == "Running" and st["attemptHistory"][0]["phase"] == "Running"
        assert "Running" in w.events.reasons()
    run(go)


def test_running_row_is_provisional_and_the_final_row_replaces_it():
    async def go():
        w = world(database_url="postgresql://fake")
        await running(w)
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
        await running(w, "a", PLAYWRIGHT)
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
        await running(w)
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
        await running(w, "a", PLAYWRIGHT)
        w.kube.pod_prints("a-a1", "Running 2 tests using 2 workers", "[supercheck] Playwright ended: exit code 0",
                          WAITING)
        # Seen running: the first read is one interval later (most runs end before and are never read).
        assert "pod_log_tail" not in w.kube.calls
        assert await w.settle("a") == 10.0
        assert w.status("a")["phase"] == "Running"  # not due, and nothing was read
        assert "pod_log_tail" not in w.kube.calls
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
        await running(w)
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
        await running(w)
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
        await running_without_progress(off)
        off.kube.pod_prints("a-a1", WAITING)
        off.clock.advance(60)
        assert await off.settle("a") == 60.0  # only the backstop re-check
        assert off.status("a")["phase"] == "Running" and "pod_log_tail" not in off.kube.calls
    run(go)


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
            delay = await fail_attempt(w, "a", attempt, how)
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
