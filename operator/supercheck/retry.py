"""The retry policy: after an attempt, finish or try again, and when.

========================  ==================================================  ===========================
outcome                   recognised from (supercheck.pods)                   next
========================  ==================================================  ===========================
passed / failed           runner result (termination message)                 Passed / Failed, no retry
invalid script            runner result (exit 11) or the operator's checks    Error, no retry
timeout                   pod ``DeadlineExceeded`` or runner exit 12           TimedOut, no retry
out of memory             container ``OOMKilled`` / exit 137                   retry once
browser crash             runner result (exit 13)                             retry up to 2 times
infrastructure            runner result (exit 14), image errors               retry up to 3 times
network                   runner result (exit 15): remote module, DNS, refused retry up to 3 times
pod lost                  pod gone / evicted / died without a result          retry within the same limits
========================  ==================================================  ===========================

Retries back off exponentially per failure class: ``base * 2**(n-1)`` for the n-th retry
of that class, capped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from supercheck.models import Phase
from supercheck.vocabulary import Reason
from supercheck_contract import FailureClass

RETRY_LIMITS: Mapping[FailureClass, int] = {
    FailureClass.OOM: 1,
    FailureClass.BROWSER_CRASH: 2,
    FailureClass.INFRASTRUCTURE: 3,
    FailureClass.NETWORK: 3,
    FailureClass.POD_LOST: 3,
}
MAX_ATTEMPTS = 1 + max(RETRY_LIMITS.values())

TERMINAL_FOR: Mapping[FailureClass, tuple[Phase, Reason]] = {
    FailureClass.NONE: (Phase.PASSED, Reason.TESTS_PASSED),
    FailureClass.TEST_FAILURE: (Phase.FAILED, Reason.TESTS_FAILED),
    FailureClass.VALIDATION: (Phase.ERROR, Reason.INVALID_SCRIPT),
    FailureClass.TIMEOUT: (Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED),
    FailureClass.OOM: (Phase.ERROR, Reason.OOM_KILLED),
    FailureClass.BROWSER_CRASH: (Phase.ERROR, Reason.BROWSER_CRASHED),
    FailureClass.INFRASTRUCTURE: (Phase.ERROR, Reason.INFRASTRUCTURE_ERROR),
    FailureClass.NETWORK: (Phase.ERROR, Reason.NETWORK_ERROR),
    FailureClass.POD_LOST: (Phase.ERROR, Reason.POD_LOST),
}


@dataclass(frozen=True)
class Decision:
    retry: bool
    phase: Phase | None = None  # terminal phase when not retrying
    reason: Reason | None = None  # the terminal reason when not retrying
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
        return Decision(True, None, Reason.RETRYING, delay, nth, limit)
    phase, reason = TERMINAL_FOR[failure]
    return Decision(False, phase, reason, 0.0, nth, limit)


def retry_after_seconds(running_capacity: int, avg_run_seconds: float | None) -> int:
    """When a rejected client should try again: about when the next running slot frees up."""
    avg = avg_run_seconds if avg_run_seconds and avg_run_seconds > 0 else 30.0
    return max(1, min(600, math.ceil(avg / max(1, running_capacity))))
