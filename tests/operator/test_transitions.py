"""The outcome table (docs/operator.md), retry policy and status transitions, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from supercheck import clock, pods, retry
from supercheck import rows as result_rows
from supercheck import transitions as tr
from supercheck.models import Phase, TestRunStatus
from supercheck_contract import (
    STORAGE_UNAVAILABLE,
    UPLOADING,
    ArtifactLocation,
    FailureClass,
    K6Summary,
    Progress,
    RunnerResult,
    TestSummary,
    encode_termination_message,
)

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


K6_BODY = {"metadata": {"namespace": "n", "name": "x", "uid": "u"}, "spec": {"type": "k6"}}


def pod(phase="Running", state="running", exit_code=None, reason=None, message=None, pod_reason=None,
        deleting=False) -> dict:
    s = {}
    if state == "terminated":
        s = {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}
    elif state == "running":
        s = {"running": {"startedAt": "2030-01-01T11:59:00Z"}}
    elif state == "waiting":
        s = {"waiting": {"reason": reason, "message": message}}
    meta = {"name": "r-a1", "uid": "p1", "labels": {"supercheck.io/attempt": "1"},
            "ownerReferences": [{"kind": "TestRun", "uid": "run-uid"}]}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T12:00:00Z"
    status = {"phase": phase, "containerStatuses": [{"name": "runner", "state": s}]}
    if pod_reason:
        status["reason"] = pod_reason
    return {"metadata": meta, "status": status}


def observe(p, seen_running=True):
    return pods.observe(pods.pod_view(p) if p is not None else None, seen_running=seen_running)


def result(fc: FailureClass, code: int, **kw) -> str:
    return encode_termination_message(RunnerResult(exitCode=code, failureClass=fc, **kw))


@pytest.mark.parametrize("phase,code,fc,expected", [
    ("Succeeded", 0, FailureClass.NONE, FailureClass.NONE),
    ("Failed", 10, FailureClass.TEST_FAILURE, FailureClass.TEST_FAILURE),
    ("Failed", 11, FailureClass.VALIDATION, FailureClass.VALIDATION),
    ("Failed", 12, FailureClass.TIMEOUT, FailureClass.TIMEOUT),
    ("Failed", 13, FailureClass.BROWSER_CRASH, FailureClass.BROWSER_CRASH),
    ("Failed", 14, FailureClass.INFRASTRUCTURE, FailureClass.INFRASTRUCTURE),
])
def test_runner_result_decides_the_outcome(phase, code, fc, expected):
    st = observe(pod(phase, "terminated", code, "Error", result(fc, code, message="m")))
    assert st.kind == "finished" and st.outcome.failure == expected and st.outcome.exit_code == code


def test_oom_is_recognised_from_the_container_status():
    st = observe(pod("Failed", "terminated", 137, "OOMKilled"))
    assert st.outcome.failure == FailureClass.OOM
    st = observe(pod("Failed", "terminated", 137, "Error"))
    assert st.outcome.failure == FailureClass.OOM


def test_deadline_exceeded_is_a_timeout():
    st = observe(pod("Failed", "terminated", 137, "Error", pod_reason="DeadlineExceeded"))
    assert st.outcome.failure == FailureClass.TIMEOUT


def test_lost_pods():
    assert observe(None, seen_running=True).outcome.failure == FailureClass.POD_LOST
    assert observe(None, seen_running=False).kind == "absent"
    assert observe(pod("Failed", "terminated", 143, "Error", "killed")).outcome.failure == FailureClass.POD_LOST
    assert observe(pod("Failed", None, pod_reason="Evicted")).outcome.failure == FailureClass.POD_LOST


def test_a_pod_deleted_mid_run_is_lost_even_when_its_runner_spoke_first():
    # The kubelet's SIGTERM makes the runner report "infrastructure"; the operator may read that
    # status before the pod is gone. The deletion is the cause: pod_lost, the runner's words kept.
    stopped = result(FailureClass.INFRASTRUCTURE, 14, message="the runner was stopped by a signal")
    st = observe(pod("Running", "terminated", 14, "Error", stopped, deleting=True))
    assert st.outcome.failure == FailureClass.POD_LOST and "stopped by a signal" in st.outcome.message
    assert st.outcome.result is not None and st.outcome.exit_code == 14
    # A verdict reached before the deletion stands; an infrastructure failure of a pod nobody deleted too.
    passed = result(FailureClass.NONE, 0, message="ok")
    assert observe(pod("Succeeded", "terminated", 0, "Completed", passed, deleting=True)).outcome.failure \
        == FailureClass.NONE
    assert observe(pod("Failed", "terminated", 14, "Error", stopped)).outcome.failure == FailureClass.INFRASTRUCTURE


def test_no_result_keeps_the_log_tail_in_the_message():
    st = observe(pod("Failed", "terminated", 1, "Error", "Traceback: boom"))
    assert st.outcome.failure == FailureClass.POD_LOST and "boom" in st.outcome.message


def test_waiting_states():
    assert observe(pod("Pending", "waiting", reason="ContainerCreating")).kind == "pending"
    st = observe(pod("Pending", "waiting", reason="CreateContainerConfigError", message='secret "x" not found'))
    assert st.outcome.failure == FailureClass.VALIDATION and 'secret "x"' in st.outcome.message
    assert observe(pod("Pending", "waiting", reason="ImagePullBackOff")).outcome.failure == FailureClass.INFRASTRUCTURE
    assert observe(pod()).kind == "running"
    assert observe(pod(deleting=True)).kind == "running"  # still running until the node confirms


@pytest.mark.parametrize("fc,phase", [
    (FailureClass.NONE, Phase.PASSED), (FailureClass.TEST_FAILURE, Phase.FAILED),
    (FailureClass.VALIDATION, Phase.ERROR), (FailureClass.TIMEOUT, Phase.TIMED_OUT),
])
def test_no_retry_outcomes(fc, phase):
    d = retry.decide(fc, [], 1, 2, 60)
    assert not d.retry and d.phase == phase


def test_oom_retries_exactly_once():
    first = retry.decide(FailureClass.OOM, [], 1, 2, 60)
    assert first.retry and first.delay_seconds == 2
    second = retry.decide(FailureClass.OOM, [FailureClass.OOM], 2, 2, 60)
    assert not second.retry and second.phase == Phase.ERROR and second.reason == "OOMKilled"


def test_browser_crash_twice_infrastructure_three_times_with_exponential_backoff():
    prev: list[FailureClass] = []
    delays = []
    for attempt in range(1, 10):
        d = retry.decide(FailureClass.INFRASTRUCTURE, prev, attempt, 2, 60)
        if not d.retry:
            break
        delays.append(d.delay_seconds)
        prev.append(FailureClass.INFRASTRUCTURE)
    assert delays == [2, 4, 8]
    assert retry.decide(FailureClass.BROWSER_CRASH, [FailureClass.BROWSER_CRASH], 2, 2, 60).retry
    assert not retry.decide(FailureClass.BROWSER_CRASH, [FailureClass.BROWSER_CRASH] * 2, 3, 2, 60).retry
    assert retry.decide(FailureClass.INFRASTRUCTURE, [], 1, 10, 15).delay_seconds == 10
    assert retry.decide(FailureClass.INFRASTRUCTURE, [FailureClass.INFRASTRUCTURE] * 2, 3, 10, 15).delay_seconds == 15


def test_pod_lost_retries_within_the_same_limits():
    assert retry.decide(FailureClass.POD_LOST, [FailureClass.POD_LOST] * 2, 3, 1, 60).retry
    assert not retry.decide(FailureClass.POD_LOST, [FailureClass.POD_LOST] * 3, 4, 1, 60).retry
    assert not retry.decide(FailureClass.POD_LOST, [], retry.MAX_ATTEMPTS, 1, 60).retry


def test_retry_after_estimate():
    assert retry.retry_after_seconds(3, 30.0) == 10
    assert retry.retry_after_seconds(3, None) == 10
    assert retry.retry_after_seconds(100, 1.0) == 1


def _status(**kw) -> TestRunStatus:
    return TestRunStatus.model_validate(kw)


def test_claim_then_retry_then_terminal_keeps_one_history_entry_per_attempt():
    st = _status(phase="Queued", slot="queued", queuedAt="2030-01-01T11:00:00Z")
    p = tr.claim_attempt_patch(st, 1, "r-a1", NOW, NOW)
    assert p["slot"] == "running" and p["attempts"] == 1 and p["podName"] == "r-a1" and p["startedAt"]
    st = _status(**{**st.model_dump(exclude_none=True), **p})
    oom = pods.AttemptOutcome(FailureClass.OOM, 137, "oom")
    d = retry.decide(FailureClass.OOM, tr.previous_failures(st), st.attempts, 2, 60)
    st = _status(**{**st.model_dump(exclude_none=True), **tr.retry_patch(st, oom, d, NOW)})
    assert st.phase == Phase.PENDING and st.nextAttemptAt and st.attemptHistory[0].failureClass == FailureClass.OOM
    st = _status(**{**st.model_dump(exclude_none=True), **tr.claim_attempt_patch(st, 2, "r-a2", None, NOW)})
    assert [h.attempt for h in st.attemptHistory] == [1, 2] and st.startedAt == clock.iso(NOW)
    assert tr.previous_failures(st) == [FailureClass.OOM]
    ok = pods.AttemptOutcome(FailureClass.NONE, 0, "", RunnerResult(
        exitCode=0, failureClass=FailureClass.NONE, summary=TestSummary(total=3, passed=3),
        artifacts=ArtifactLocation(bucket="b", prefix="p", report="p/index.html")))
    d = retry.decide(FailureClass.NONE, tr.previous_failures(st), 2, 2, 60)
    st = _status(**{**st.model_dump(exclude_none=True), **tr.terminal_patch(st, ok, d, NOW)})
    assert st.phase == Phase.PASSED and st.slot is None and st.summary.passed == 3
    assert st.artifacts.report == "p/index.html" and st.result == "3/3 passed"
    body = {"metadata": {"namespace": "ns", "name": "r", "uid": "u", "labels": {"a": "b"}},
            "spec": {"type": "playwright", "priority": 2}}
    rows = result_rows.rows_to_record(body, st)
    assert [(r.attempt, r.phase, r.failure_class) for r in rows] == [(1, "Error", "oom"), (2, "Passed", "none")]
    assert rows[1].artifacts["prefix"] == "p" and rows[1].summary["total"] == 3
    st.recorded = [1, 2]
    assert result_rows.rows_to_record(body, st) == []


def test_k6_result_line_and_rejected_row():
    r = RunnerResult(exitCode=10, failureClass=FailureClass.TEST_FAILURE,
                     k6=K6Summary(thresholdsPassed=False, checksPassed=8, checksFailed=2))
    assert tr.result_line(r, Phase.FAILED) == "thresholds failed, 8/10 checks"
    st = _status()
    st = _status(**tr.rejected_patch(st, 7, 3, 5, 3, 5, NOW))
    assert st.phase == Phase.REJECTED and st.retryAfterSeconds == 7 and st.reason == "CapacityExceeded"
    assert "create it again in about 7s" in st.message and "kubectl delete testrun" in st.message
    rows = result_rows.rows_to_record(K6_BODY, st)
    assert [(r.attempt, r.phase) for r in rows] == [(0, "Rejected")]


def test_cancelled_marks_the_current_attempt():
    st = _status(phase="Running", slot="running", attempts=1, startedAt=clock.iso(NOW), podName="r-a1",
                 attemptHistory=[{"attempt": 1, "podName": "r-a1", "phase": "Running", "startedAt": clock.iso(NOW)}])
    st = _status(**{**st.model_dump(exclude_none=True), **tr.cancelled_patch(st, NOW)})
    assert st.phase == Phase.CANCELLED and st.slot is None
    rows = result_rows.rows_to_record(K6_BODY, st)
    assert [(r.attempt, r.phase) for r in rows] == [(1, "Cancelled")]


def test_conditions_keep_transition_time_when_unchanged():
    c = tr.set_condition([], "ResultsRecorded", "False", "DatabaseUnavailable", "down", NOW)
    later = datetime(2030, 1, 1, 13, tzinfo=UTC)
    same = tr.set_condition(c, "ResultsRecorded", "False", "DatabaseUnavailable", "still down", later)
    assert same[0]["lastTransitionTime"] == c[0]["lastTransitionTime"]
    flipped = tr.set_condition(c, "ResultsRecorded", "True", "Recorded", "ok", later)
    assert flipped[0]["lastTransitionTime"] == clock.iso(later) and len(flipped) == 1


def test_human_duration():
    assert clock.human_duration(4.24) == "4.2s" and clock.human_duration(72) == "1m12s"
    assert clock.human_duration(3725) == "1h2m5s"


def test_the_runner_announcing_uploading_while_its_pod_runs():
    running = TestRunStatus.model_validate({"phase": "Running", "attempts": 2, "reason": "Running", "attemptHistory": [
        {"attempt": 1, "podName": "r-a1", "phase": "Error"}, {"attempt": 2, "podName": "r-a2", "phase": "Running"}]})
    waiting = Progress(phase=UPLOADING, reason=STORAGE_UNAVAILABLE, message="S3 at http://s3: connection refused")
    patch = tr.progress_patch(running, waiting)
    assert patch is not None
    assert (patch["phase"], patch["reason"]) == ("Uploading", "StorageUnavailable")
    assert patch["message"] == "attempt 2: S3 at http://s3: connection refused"
    assert [h["phase"] for h in patch["attemptHistory"]] == ["Error", "Uploading"]  # the current attempt only
    uploading = running.model_copy(update={"phase": Phase.UPLOADING, "reason": patch["reason"],
                                           "message": patch["message"]})
    assert tr.progress_patch(uploading, waiting) is None  # said already: no write
    back = tr.progress_patch(uploading, Progress(phase=UPLOADING, reason="StorageBack", message="answers again"))
    assert back is not None and back["reason"] == "StorageBack"
    newer = tr.progress_patch(running, Progress(phase=UPLOADING, reason="SomethingNew", message="m"))
    assert newer is not None and newer["reason"] == "Uploading"  # a newer runner's reason
    # Nothing to show: no announcement, a phase the operator does not take from a log, or the
    # attempt no longer runs (its end, or a retry, was decided from the pod already).
    assert tr.progress_patch(running, None) is None
    assert tr.progress_patch(running, Progress(phase="Passed", reason="TestsPassed", message="m")) is None
    for phase in ("Pending", "Passed", "Error"):
        assert tr.progress_patch(running.model_copy(update={"phase": Phase(phase)}), waiting) is None
