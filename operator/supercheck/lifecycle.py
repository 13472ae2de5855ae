"""The run's lifecycle as pure functions: what a pod says, what happens next, the status it yields.

DESIGN.md's outcome table lives here, and only here:

========================  ==================================================  ===========================
outcome                   recognised from                                     next
========================  ==================================================  ===========================
passed / failed           runner result (termination message)                 Passed / Failed, no retry
invalid script            runner result (exit 11) or the operator's checks    Error, no retry
timeout                   pod ``DeadlineExceeded`` or runner exit 12           TimedOut, no retry
out of memory             container ``OOMKilled`` / exit 137                   retry once
browser crash             runner result (exit 13)                             retry up to 2 times
infrastructure            runner result (exit 14), image errors               retry up to 3 times
pod lost                  pod gone / evicted / died without a result          retry within the same limits
========================  ==================================================  ===========================

Retries back off exponentially per failure class: ``base * 2**(n-1)`` for the n-th retry
of that class, capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from supercheck_contract import FailureClass, RunnerResult, classify_exit, decode_termination_message
from supercheck.models import AttemptRecord, Condition, Phase, TestRunStatus

RETRY_LIMITS: Mapping[FailureClass, int] = {
    FailureClass.OOM: 1,
    FailureClass.BROWSER_CRASH: 2,
    FailureClass.INFRASTRUCTURE: 3,
    FailureClass.POD_LOST: 3,
}
MAX_ATTEMPTS = 1 + max(RETRY_LIMITS.values())

TERMINAL_FOR: Mapping[FailureClass, tuple[Phase, str]] = {
    FailureClass.NONE: (Phase.PASSED, "TestsPassed"),
    FailureClass.TEST_FAILURE: (Phase.FAILED, "TestsFailed"),
    FailureClass.VALIDATION: (Phase.ERROR, "InvalidScript"),
    FailureClass.TIMEOUT: (Phase.TIMED_OUT, "DeadlineExceeded"),
    FailureClass.OOM: (Phase.ERROR, "OOMKilled"),
    FailureClass.BROWSER_CRASH: (Phase.ERROR, "BrowserCrashed"),
    FailureClass.INFRASTRUCTURE: (Phase.ERROR, "InfrastructureError"),
    FailureClass.POD_LOST: (Phase.ERROR, "PodLost"),
}

# Container waiting reasons that will not fix themselves in the attempt's lifetime.
CONFIG_WAIT_REASONS = {"CreateContainerConfigError": FailureClass.VALIDATION, "InvalidImageName": FailureClass.INFRASTRUCTURE}
IMAGE_WAIT_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CreateContainerError"}


# ---------------------------------------------------------------- time


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """RFC 3339 with microseconds: starts of runs a millisecond apart still sort correctly."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


# ---------------------------------------------------------------- the pod, as the operator sees it


@dataclass(frozen=True)
class ContainerView:
    state: str  # waiting | running | terminated
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    phase: str
    owner_uid: str | None
    attempt: int | None
    deleting: bool = False
    reason: str | None = None
    message: str | None = None
    container: ContainerView | None = None
    created_at: str | None = None

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or (
            self.container is not None and self.container.state == "terminated"
        )

    @property
    def live(self) -> bool:
        """Still holds (or may still hold) a process on a node: it counts against capacity."""
        return not self.terminated


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == "TestRun"]
    labels = meta.get("labels") or {}
    container = None
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for kind in ("terminated", "running", "waiting"):
            if state.get(kind) is not None:
                s = state[kind]
                container = ContainerView(
                    state=kind,
                    reason=s.get("reason"),
                    message=s.get("message"),
                    exit_code=s.get("exitCode"),
                    started_at=s.get("startedAt"),
                    finished_at=s.get("finishedAt"),
                )
                break
        break
    attempt = labels.get("supercheck.io/attempt")
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        owner_uid=owners[0].get("uid") if owners else labels.get("supercheck.io/testrun-uid"),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        deleting=bool(meta.get("deletionTimestamp")),
        reason=status.get("reason"),
        message=status.get("message"),
        container=container,
        created_at=meta.get("creationTimestamp"),
    )


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended."""

    failure: FailureClass
    exit_code: int | None
    message: str
    result: RunnerResult | None = None


@dataclass(frozen=True)
class PodState:
    kind: str  # absent | pending | running | finished
    outcome: AttemptOutcome | None = None


def observe(pod: PodView | None, *, seen_running: bool) -> PodState:
    """What the attempt's pod tells: still coming, running, or finished with an outcome.

    ``seen_running``: the operator saw this attempt run. A pod that vanished after it ran
    was lost; one that vanished before it was ever seen is simply (re)created.
    """
    if pod is None:
        if seen_running:
            return PodState("finished", AttemptOutcome(FailureClass.POD_LOST, None,
                                                       "the runner pod disappeared while the test ran"))
        return PodState("absent")
    c = pod.container
    if pod.phase == "Failed" and pod.reason == "DeadlineExceeded":
        result = _result_of(c)
        return PodState("finished", AttemptOutcome(
            FailureClass.TIMEOUT, c.exit_code if c else None,
            "the runner pod exceeded its deadline (timeoutSeconds plus the upload margin)", result))
    if pod.phase == "Failed" and pod.reason == "Evicted":
        return PodState("finished", AttemptOutcome(FailureClass.POD_LOST, None,
                                                   f"the runner pod was evicted: {pod.message or ''}".strip()))
    if c is not None and c.state == "terminated":
        return PodState("finished", classify_container(c))
    if pod.phase in ("Succeeded", "Failed"):
        return PodState("finished", AttemptOutcome(FailureClass.POD_LOST, None,
                                                   f"the runner pod ended {pod.phase} without a container result"))
    if c is not None and c.state == "waiting":
        if c.reason in CONFIG_WAIT_REASONS:
            return PodState("finished", AttemptOutcome(CONFIG_WAIT_REASONS[c.reason], None,
                                                       f"{c.reason}: {c.message or ''}".strip()))
        if c.reason in IMAGE_WAIT_REASONS:
            return PodState("finished", AttemptOutcome(FailureClass.INFRASTRUCTURE, None,
                                                       f"{c.reason}: {c.message or ''}".strip()))
    if pod.deleting:
        # Being deleted behind our back: it still runs until the node confirms; wait for it to go.
        return PodState("running" if (c and c.state == "running") else "pending")
    if pod.phase == "Running" or (c is not None and c.state == "running"):
        return PodState("running")
    return PodState("pending")


def _result_of(c: ContainerView | None) -> RunnerResult | None:
    return decode_termination_message(c.message) if c is not None else None


def classify_container(c: ContainerView) -> AttemptOutcome:
    """The runner's own verdict when it spoke; otherwise the exit code and the kubelet's reason."""
    result = _result_of(c)
    if c.reason == "OOMKilled" or c.exit_code == 137:
        message = ("the runner container was killed for exceeding its memory limit (OOMKilled)"
                   if c.reason == "OOMKilled" else
                   f"the runner container was killed (exit 137, reason {c.reason}); treated as out of memory")
        return AttemptOutcome(FailureClass.OOM, c.exit_code, message, result)
    if result is not None:
        return AttemptOutcome(result.failureClass, c.exit_code, result.message, result)
    failure = classify_exit(c.exit_code, c.reason)
    tail = (c.message or "").strip()
    message = f"the runner exited with code {c.exit_code} without a result"
    if tail:
        message += f"; last output: {tail[-500:]}"
    return AttemptOutcome(failure, c.exit_code, message)


# ---------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class Decision:
    retry: bool
    phase: Phase | None = None  # terminal phase when not retrying
    reason: str = ""
    delay_seconds: float = 0.0
    retry_number: int = 0  # the n-th retry of this failure class
    retry_limit: int = 0


def decide(failure: FailureClass, previous: Sequence[FailureClass], attempts: int,
           base_seconds: float, max_seconds: float) -> Decision:
    """After an attempt: finish, or try again (and when). ``previous``: failure classes of earlier attempts."""
    limit = RETRY_LIMITS.get(failure, 0)
    nth = sum(1 for f in previous if f == failure) + 1
    if limit and nth <= limit and attempts < MAX_ATTEMPTS:
        delay = min(max_seconds, base_seconds * (2 ** (nth - 1)))
        return Decision(True, None, "Retrying", delay, nth, limit)
    phase, reason = TERMINAL_FOR[failure]
    if limit and phase == Phase.ERROR:
        reason = f"{reason}"
    return Decision(False, phase, reason, 0.0, nth, limit)


def retry_after_seconds(running_capacity: int, avg_run_seconds: float | None) -> int:
    """When a rejected client should try again: about when the next running slot frees up."""
    avg = avg_run_seconds if avg_run_seconds and avg_run_seconds > 0 else 30.0
    return max(1, min(600, math.ceil(avg / max(1, running_capacity))))


# ---------------------------------------------------------------- status transitions (merge patches)


def set_condition(conditions: Sequence[Condition | Mapping[str, Any]], ctype: str, status: str, reason: str,
                  message: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    found = False
    for c in conditions:
        c = c.model_dump(exclude_none=True) if isinstance(c, Condition) else dict(c)
        if c.get("type") == ctype:
            found = True
            changed = c.get("status") != status
            c = {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": iso(now) if changed or not c.get("lastTransitionTime") else c["lastTransitionTime"],
            }
        out.append(c)
    if not found:
        out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": iso(now)})
    return out


def has_condition(status: TestRunStatus, ctype: str, value: str, reason: str | None = None) -> bool:
    return any(c.type == ctype and c.status == value and (reason is None or c.reason == reason)
               for c in status.conditions)


def result_line(result: RunnerResult | None, phase: Phase) -> str | None:
    """The printer column: test counts for Playwright, the verdict for k6."""
    if result is not None and result.summary is not None:
        s = result.summary
        parts = [f"{s.passed}/{s.total} passed"]
        if s.failed:
            parts.append(f"{s.failed} failed")
        if s.flaky:
            parts.append(f"{s.flaky} flaky")
        if s.skipped:
            parts.append(f"{s.skipped} skipped")
        return ", ".join(parts)
    if result is not None and result.k6 is not None:
        k = result.k6
        verdict = "thresholds passed" if k.thresholdsPassed else "thresholds failed"
        checks = k.checksPassed + k.checksFailed
        return f"{verdict}, {k.checksPassed}/{checks} checks" if checks else verdict
    return None


def queued_patch(status: TestRunStatus, seq: int, position: int, now: datetime) -> dict[str, Any]:
    return {
        "phase": Phase.QUEUED.value,
        "attempts": status.attempts,
        "slot": "queued",
        "queueSeq": seq,
        "queuedAt": status.queuedAt or iso(now),
        "reason": "Queued",
        "message": f"waiting for a running slot; position {position} in the queue",
        "conditions": set_condition(status.conditions, "Admitted", "True", "Queued",
                                    "admitted to the queue", now),
    }


def rejected_patch(status: TestRunStatus, retry_after: int, running: int, queued: int,
                   running_capacity: int, queued_capacity: int, now: datetime) -> dict[str, Any]:
    message = (f"capacity exceeded: {running}/{running_capacity} running and {queued}/{queued_capacity} queued; "
               f"apply the TestRun again in about {retry_after}s")
    return {
        "phase": Phase.REJECTED.value,
        "attempts": status.attempts,
        "slot": None,
        "reason": "CapacityExceeded",
        "message": message,
        "retryAfterSeconds": retry_after,
        "completedAt": iso(now),
        "result": "rejected",
        "conditions": set_condition(status.conditions, "Admitted", "False", "CapacityExceeded", message, now),
    }


def claim_attempt_patch(status: TestRunStatus, attempt: int, pod: str, granted_at: datetime | None,
                        now: datetime) -> dict[str, Any]:
    """Before the attempt's pod is created: the attempt number is taken, so it is never launched twice."""
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    history.append({"attempt": attempt, "podName": pod, "phase": "Pending"})
    retry = attempt > 1
    patch = {
        "phase": Phase.PENDING.value,
        "slot": "running",
        "attempts": attempt,
        "podName": pod,
        "nextAttemptAt": None,
        "reason": "Retrying" if retry else "Starting",
        "message": f"attempt {attempt}: creating runner pod {pod}",
        "attemptHistory": history,
    }
    if not status.startedAt:
        patch["startedAt"] = iso(granted_at or now)
    if status.phase == Phase.QUEUED or not has_condition(status, "Admitted", "True"):
        patch["conditions"] = set_condition(status.conditions, "Admitted", "True", "SlotGranted",
                                            "a running slot was granted", now)
    return patch


def running_patch(status: TestRunStatus, pod: PodView, now: datetime) -> dict[str, Any]:
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    started = (pod.container.started_at if pod.container else None) or iso(now)
    for h in history:
        if h["attempt"] == status.attempts:
            h["phase"] = "Running"
            h.setdefault("startedAt", iso(now))
    return {
        "phase": Phase.RUNNING.value,
        "reason": "Running",
        "message": f"attempt {status.attempts}: runner pod {pod.name} is running (container started {started})",
        "attemptHistory": history,
    }


def _history_with_end(status: TestRunStatus, outcome: AttemptOutcome, phase: str, now: datetime) -> list[dict]:
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    for h in history:
        if h["attempt"] == status.attempts:
            h.update(
                phase=phase,
                failureClass=outcome.failure.value,
                completedAt=iso(now),
                message=(outcome.message or "")[:1024],
            )
            if outcome.exit_code is not None:
                h["exitCode"] = outcome.exit_code
    return history


def retry_patch(status: TestRunStatus, outcome: AttemptOutcome, decision: Decision, now: datetime) -> dict[str, Any]:
    when = datetime.fromtimestamp(now.timestamp() + decision.delay_seconds, timezone.utc)
    message = (f"attempt {status.attempts} failed ({outcome.failure.value}): {outcome.message}; "
               f"retry {decision.retry_number} of {decision.retry_limit} in {decision.delay_seconds:g}s")
    return {
        "phase": Phase.PENDING.value,
        "reason": "RetryBackoff",
        "message": message[:2048],
        "failureClass": outcome.failure.value,
        "nextAttemptAt": iso(when),
        "attemptHistory": _history_with_end(status, outcome, Phase.ERROR.value, now),
    }


def terminal_patch(status: TestRunStatus, outcome: AttemptOutcome, decision: Decision, now: datetime) -> dict[str, Any]:
    phase = decision.phase or Phase.ERROR
    result = outcome.result
    message = outcome.message or ""
    if decision.retry_limit and phase == Phase.ERROR and outcome.failure in RETRY_LIMITS:
        message = f"{message} (gave up after {status.attempts} attempts)"
    started = parse_iso(status.startedAt) or now
    patch: dict[str, Any] = {
        "phase": phase.value,
        "slot": None,
        "reason": decision.reason,
        "message": message[:2048] or decision.reason,
        "failureClass": outcome.failure.value,
        "completedAt": iso(now),
        "nextAttemptAt": None,
        "duration": human_duration(max(0.0, (now - started).total_seconds())),
        "result": result_line(result, phase) or phase.value.lower(),
        "attemptHistory": _history_with_end(status, outcome, phase.value, now),
    }
    if result is not None:
        if result.summary is not None:
            patch["summary"] = result.summary.model_dump(mode="json")
        if result.k6 is not None:
            patch["k6"] = result.k6.model_dump(mode="json", exclude_none=True)
        if result.artifacts is not None:
            patch["artifacts"] = result.artifacts.model_dump(mode="json", exclude_none=True)
    return patch


def error_before_pod_patch(status: TestRunStatus, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """The operator refused the run before any pod: bad reference, resources out of bounds."""
    return {
        "phase": Phase.ERROR.value,
        "attempts": status.attempts,
        "slot": None,
        "reason": reason,
        "message": message,
        "failureClass": FailureClass.VALIDATION.value,
        "completedAt": iso(now),
        "result": "error",
    }


def cancelled_patch(status: TestRunStatus, now: datetime) -> dict[str, Any]:
    was = status.phase.value if status.phase else "Pending"
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    for h in history:
        if h["attempt"] == status.attempts and not h.get("completedAt"):
            h.update(phase=Phase.CANCELLED.value, completedAt=iso(now))
    started = parse_iso(status.startedAt)
    patch = {
        "phase": Phase.CANCELLED.value,
        "slot": None,
        "reason": "Cancelled",
        "message": f"the TestRun was deleted while {was}",
        "completedAt": iso(now),
        "nextAttemptAt": None,
        "result": "cancelled",
        "attemptHistory": history,
    }
    if started:
        patch["duration"] = human_duration(max(0.0, (now - started).total_seconds()))
    return patch


def previous_failures(status: TestRunStatus) -> list[FailureClass]:
    """Failure classes of the attempts before the current one."""
    return [h.failureClass for h in status.attemptHistory
            if h.attempt < status.attempts and h.failureClass is not None]


def current_attempt(status: TestRunStatus) -> AttemptRecord | None:
    for h in status.attemptHistory:
        if h.attempt == status.attempts:
            return h
    return None


def attempt_seen_running(status: TestRunStatus) -> bool:
    rec = current_attempt(status)
    return bool(rec and rec.startedAt)


@dataclass
class Row:
    """One line of the ``runs`` table: a TestRun attempt (attempt 0: the run never got a pod)."""

    namespace: str
    name: str
    uid: str
    attempt: int
    type: str
    phase: str
    final: bool
    priority: int = 0
    reason: str | None = None
    message: str | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    pod_name: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    summary: dict[str, Any] | None = None
    k6: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)


def rows_to_record(body: Mapping[str, Any], status: TestRunStatus) -> list[Row]:
    """Final rows owed to PostgreSQL: every ended attempt not yet in ``status.recorded``."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    base = dict(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], type=spec.get("type", ""),
                priority=int(spec.get("priority") or 0), labels=dict(meta.get("labels") or {}),
                queued_at=status.queuedAt)
    rows: list[Row] = []
    terminal = status.phase is not None and status.phase.terminal
    if terminal and status.attempts == 0 and 0 not in status.recorded:
        rows.append(Row(attempt=0, phase=status.phase.value, final=True, reason=status.reason,
                        message=status.message, failure_class=status.failureClass.value if status.failureClass else None,
                        completed_at=status.completedAt, **base))
    for h in status.attemptHistory:
        if h.attempt in status.recorded or not h.completedAt:
            continue
        last = h.attempt == status.attempts
        if last and not terminal:
            continue
        row = Row(attempt=h.attempt, phase=h.phase or "Error", final=True, failure_class=h.failureClass.value if h.failureClass else None,
                  exit_code=h.exitCode, message=h.message, pod_name=h.podName, started_at=h.startedAt,
                  completed_at=h.completedAt, **base)
        if last:
            row.phase = status.phase.value
            row.reason = status.reason
            row.message = status.message
            row.summary = status.summary.model_dump(mode="json") if status.summary else None
            row.k6 = status.k6.model_dump(mode="json") if status.k6 else None
            row.artifacts = status.artifacts.model_dump(mode="json") if status.artifacts else None
        rows.append(row)
    return rows


def start_row(body: Mapping[str, Any], status: TestRunStatus) -> Row:
    """A provisional row when an attempt starts running (a final row later replaces it)."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    rec = current_attempt(status)
    return Row(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], attempt=status.attempts,
               type=spec.get("type", ""), phase=Phase.RUNNING.value, final=False,
               priority=int(spec.get("priority") or 0), pod_name=status.podName, queued_at=status.queuedAt,
               started_at=(rec.startedAt if rec else None) or status.startedAt,
               labels=dict(meta.get("labels") or {}))
