"""Status transitions as pure functions: each returns the merge patch of ``status`` for one step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from supercheck import resubmit
from supercheck.clock import human_duration, iso, parse_iso
from supercheck.models import AttemptRecord, Condition, Phase, TestRunStatus
from supercheck.pods import AttemptOutcome, PodView
from supercheck.redact import redact
from supercheck.retry import RETRY_LIMITS, Decision
from supercheck.vocabulary import ConditionType, Reason, SlotState
from supercheck_contract import STORAGE_BACK, STORAGE_UNAVAILABLE, FailureClass, Progress, RunnerResult


def set_condition(conditions: Sequence[Condition | Mapping[str, Any]], ctype: str, status: str, reason: str,
                  message: str, now: datetime, generation: int | None = None) -> list[dict[str, Any]]:
    """``conditions`` with ``ctype`` set, as the Kubernetes API conventions say: ``lastTransitionTime``
    moves only when the status changes; ``observedGeneration`` is the spec's generation it was set
    for (kept from before when ``generation`` is None)."""
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
                "lastTransitionTime": (iso(now) if changed or not c.get("lastTransitionTime")
                                       else c["lastTransitionTime"]),
                **({"observedGeneration": c["observedGeneration"]} if c.get("observedGeneration") is not None
                   else {}),
            }
            if generation is not None:
                c["observedGeneration"] = generation
        out.append(c)
    if not found:
        c = {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": iso(now)}
        if generation is not None:
            c["observedGeneration"] = generation
        out.append(c)
    return out


# ---------------------------------------------------------------- lifecycle conditions
#
# What a pipeline or a GitOps tool waits on, derived from the phase alone and written in the same
# status patch as the phase (RunHandle.patch), so they never disagree with it:
#
# * Completed  True once the run is terminal (reason: the phase), False before (reason: the
#              phase it is in): `kubectl wait --for=condition=Completed` returns for every end.
# * Succeeded  True when it Passed, False for any other end (reason: the run's reason, e.g.
#              TestsFailed), Unknown before.
# * Ready      kstatus (Flux, cli-utils) and most dashboards read Ready: False while the run is
#              not over (kstatus: InProgress), True when it Passed (kstatus: Current).
# * Stalled    True when it ended other than Passed. kstatus has no other way to say Failed: with
#              Ready=False alone a failed run would stay InProgress for ever.
#
# kstatus's other generic condition, Reconciling, is not written: Ready=False says InProgress already.


def lifecycle_conditions(phase: str, reason: str | None, message: str | None) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the four lifecycle conditions for a run in ``phase``."""
    try:
        p = Phase(phase)
    except ValueError:
        p = Phase.PENDING
    why = reason or p.value
    text = (message or why)[:1024]
    if not p.terminal:
        return [
            (ConditionType.COMPLETED, "False", p.value, f"the run is {p.value}"),
            (ConditionType.SUCCEEDED, "Unknown", p.value, f"the run is {p.value}"),
            (ConditionType.READY, "False", p.value, text),
            (ConditionType.STALLED, "False", p.value, f"the run is {p.value}"),
        ]
    passed = p == Phase.PASSED
    return [
        (ConditionType.COMPLETED, "True", p.value, f"the run ended: {p.value}"),
        (ConditionType.SUCCEEDED, "True" if passed else "False", why, text),
        (ConditionType.READY, "True" if passed else "False", p.value, text),
        (ConditionType.STALLED, "False" if passed else "True", p.value,
         f"the run ended: {p.value}" if passed else text),
    ]


def with_lifecycle(status: Mapping[str, Any] | None, patch: Mapping[str, Any], generation: int | None,
                   now: datetime) -> dict[str, Any]:
    """``patch`` (a status merge patch over ``status``) with ``observedGeneration`` and the lifecycle
    conditions of the phase the run will be in; every condition carries ``generation``, the spec's
    generation this write was decided on."""
    status = status or {}

    def after(field: str) -> Any:
        return patch[field] if field in patch else status.get(field)

    conditions: list[Any] = list(after("conditions") or [])
    for ctype, value, reason, message in lifecycle_conditions(after("phase") or Phase.PENDING.value,
                                                              after("reason"), after("message")):
        conditions = set_condition(conditions, ctype, value, reason, message, now)
    if generation is not None:
        conditions = [{**c, "observedGeneration": generation} for c in conditions]
    out = {**patch, "conditions": conditions}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def references_resolved_patch(conditions: Sequence[Condition], now: datetime) -> dict[str, Any] | None:
    """Every referenced ConfigMap and Secret exists now: ``ReferencesResolved`` True, if it said False."""
    if not any(c.type == ConditionType.REFERENCES_RESOLVED and c.status != "True" for c in conditions):
        return None
    return {"conditions": set_condition(conditions, ConditionType.REFERENCES_RESOLVED, "True", Reason.RESOLVED,
                                        "every referenced ConfigMap and Secret exists", now)}


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
        "slot": SlotState.QUEUED,
        "queueSeq": seq,
        "queuedAt": status.queuedAt or iso(now),
        "reason": Reason.QUEUED,
        "message": f"waiting for a running slot; position {position} in the queue",
        "conditions": set_condition(status.conditions, ConditionType.ADMITTED, "True", Reason.QUEUED,
                                    "admitted to the queue", now),
    }


def rejected_patch(status: TestRunStatus, retry_after: int, running: int, queued: int,
                   running_capacity: int, queued_capacity: int, now: datetime, *,
                   reason: Reason = Reason.CAPACITY_EXCEEDED, message: str | None = None) -> dict[str, Any]:
    """Rejected for a full queue; ``reason``/``message``: another limit's (a namespace's share)."""
    if message is None:
        message = (f"capacity exceeded: {running}/{running_capacity} running and {queued}/{queued_capacity} "
                   f"queued; {resubmit.advice('TestRun', None, retry_after)}")
    return {
        "phase": Phase.REJECTED.value,
        "attempts": status.attempts,
        "slot": None,
        "reason": reason,
        "message": message,
        "retryAfterSeconds": retry_after,
        "completedAt": iso(now),
        "result": "rejected",
        "conditions": set_condition(status.conditions, ConditionType.ADMITTED, "False", reason, message, now),
    }


def claim_attempt_patch(status: TestRunStatus, attempt: int, pod: str, granted_at: datetime | None,
                        now: datetime) -> dict[str, Any]:
    """Before the attempt's pod is created: the attempt number is taken, so it is never launched twice."""
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    history.append({"attempt": attempt, "podName": pod, "phase": "Pending"})
    retry = attempt > 1
    patch = {
        "phase": Phase.PENDING.value,
        "slot": SlotState.RUNNING,
        "attempts": attempt,
        "podName": pod,
        "nextAttemptAt": None,
        "reason": Reason.RETRYING if retry else Reason.STARTING,
        "message": f"attempt {attempt}: creating runner pod {pod}",
        "attemptHistory": history,
    }
    if not status.startedAt:
        patch["startedAt"] = iso(granted_at or now)
    if status.phase == Phase.QUEUED or not has_condition(status, ConditionType.ADMITTED, "True"):
        patch["conditions"] = set_condition(status.conditions, ConditionType.ADMITTED, "True", Reason.SLOT_GRANTED,
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
        "reason": Reason.RUNNING,
        "message": f"attempt {status.attempts}: runner pod {pod.name} is running (container started {started})",
        "attemptHistory": history,
    }


# The runner's progress reasons (supercheck_contract) as the operator's; anything else is "Uploading".
PROGRESS_REASONS = {STORAGE_UNAVAILABLE: Reason.STORAGE_UNAVAILABLE, STORAGE_BACK: Reason.STORAGE_BACK}
LIVE_PHASES = (Phase.RUNNING, Phase.UPLOADING)  # the attempt's pod runs


def progress_patch(status: TestRunStatus, progress: Progress | None) -> dict[str, Any] | None:
    """What the running attempt's runner announced (its last progress line), as a status patch:
    ``Uploading`` with the runner's reason and message. None when there is nothing to change:
    no announcement, one the operator does not show, or the status says it already."""
    if progress is None or progress.phase != Phase.UPLOADING.value or status.phase not in LIVE_PHASES:
        return None
    reason = PROGRESS_REASONS.get(progress.reason, Reason.UPLOADING)
    message = redact(f"attempt {status.attempts}: {progress.message}")[:1024]  # as the status will hold it
    if status.phase == Phase.UPLOADING and status.reason == reason and status.message == message:
        return None
    history = [h.model_dump(mode="json", exclude_none=True) for h in status.attemptHistory]
    for h in history:
        if h["attempt"] == status.attempts:
            h["phase"] = Phase.UPLOADING.value
    return {"phase": Phase.UPLOADING.value, "reason": reason, "message": message, "attemptHistory": history}


def _history_with_end(status: TestRunStatus, outcome: AttemptOutcome, phase: str,
                      now: datetime) -> list[dict[str, Any]]:
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
    when = datetime.fromtimestamp(now.timestamp() + decision.delay_seconds, UTC)
    message = (f"attempt {status.attempts} failed ({outcome.failure.value}): {outcome.message}; "
               f"retry {decision.retry_number} of {decision.retry_limit} in {decision.delay_seconds:g}s")
    return {
        "phase": Phase.PENDING.value,
        "reason": Reason.RETRY_BACKOFF,
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
        "reason": Reason.CANCELLED,
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

