"""Fair share at admission, for TestRuns and JobRuns alike: the namespace's maximum timeout and
priority before the ledger is asked, and the words for a run the ledger queued or rejected for its
namespace's share (the shares themselves are enforced by the ledger's Lua, :mod:`supercheck.ledger`)."""

from __future__ import annotations

from dataclasses import dataclass

from supercheck import fairshare, resubmit
from supercheck.engine.run import Body, RunHandle
from supercheck.ports import AdmitResult
from supercheck.retry import retry_after_seconds
from supercheck.vocabulary import CapacityLimit, EventReason, Reason


def timeout_refusal(run: RunHandle, timeout_seconds: int | None) -> str | None:
    """Why the run's own ``timeoutSeconds`` is refused (above its namespace's maximum), or None.

    Only a timeout the spec sets is checked: the defaults (TEST_EXECUTION_TIMEOUT_MS,
    JOB_EXECUTION_TIMEOUT_MS) are the admin's own choice."""
    limit = run.eng.settings.fair_share.of(run.namespace).max_timeout_seconds
    if limit is not None and timeout_seconds is not None and timeout_seconds > limit:
        return fairshare.timeout_message(run.namespace, timeout_seconds, limit)
    return None


def queue_priority(run: RunHandle, priority: int) -> int:
    """The priority the ledger queues the run with: at most its namespace's maximum.

    Lowered rather than refused: a priority orders runs, it claims nothing, so the run still runs
    (a scheduled check keeps checking when an admin introduces a maximum) and gains no place it may
    not have."""
    return run.eng.settings.fair_share.priority(run.namespace, priority)


def announce_priority(run: RunHandle, body: Body, asked: int, given: int) -> None:
    """A Warning Event when the priority was lowered: posted once the ledger answered the first
    admission (not on each retry while Redis is away, nor on each re-check in the queue)."""
    if given != asked:
        run.event(body, "Warning", EventReason.PRIORITY_CLAMPED,
                  fairshare.priority_clamped_message(run.namespace, asked, given))


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    message: str
    retry_after: int


def rejection(run: RunHandle, kind: str, result: AdmitResult, avg_run_seconds: float | None) -> Rejection:
    """A full queue: the namespace's share (naming the namespace and its limit) or the whole queue."""
    s = run.eng.settings
    share = s.fair_share.of(run.namespace)
    if result.limit == CapacityLimit.NAMESPACE_QUEUED and share.queued is not None:
        # The namespace's runs turn over at the pace of its own share of the running slots.
        slots = min(s.running_capacity, share.running or s.running_capacity)
        retry_after = retry_after_seconds(slots, avg_run_seconds)
        return Rejection(Reason.NAMESPACE_LIMIT_EXCEEDED,
                         fairshare.queued_share_message(kind, run.namespace, result.namespace_queued, share.queued,
                                                        retry_after, run.name), retry_after)
    retry_after = retry_after_seconds(s.running_capacity, avg_run_seconds)
    return Rejection(Reason.CAPACITY_EXCEEDED,
                     f"capacity exceeded: {result.running}/{s.running_capacity} running and "
                     f"{result.queued}/{s.queued_capacity} queued; {resubmit.advice(kind, run.name, retry_after)}",
                     retry_after)


def waiting_note(run: RunHandle, result: AdmitResult) -> str:
    """What a queued run's message adds when it waits for its namespace's share, not for a free slot."""
    share = run.eng.settings.fair_share.of(run.namespace)
    if result.limit == CapacityLimit.NAMESPACE_RUNNING and share.running is not None:
        return "; " + fairshare.running_share_note(run.namespace, result.namespace_running, share.running)
    return ""
