"""The runner's own deadline.

The pod has a deadline too (``activeDeadlineSeconds``), but when the kubelet enforces it the
container is killed and whatever the test produced is lost with its emptyDir. So the runner
stops the test *first*, a margin inside ``timeoutSeconds``, and spends that margin uploading
the partial results and writing its verdict.

Clock: ``time.monotonic()``, from the runner's start; wall-clock jumps don't move the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MIN_MARGIN_SECONDS = 5.0
MAX_MARGIN_SECONDS = 30.0


def default_margin(timeout_seconds: float) -> float:
    """A tenth of the timeout, at least 5 s (a small upload), at most 30 s (large runs upload in parallel)."""
    return min(MAX_MARGIN_SECONDS, max(MIN_MARGIN_SECONDS, timeout_seconds / 10.0))


def execution_budget(timeout_seconds: float, margin: float | None = None) -> float:
    """Seconds the test may run, counted from the runner's start. Never below one second, so a
    tiny timeout still runs (and times out) rather than failing before it starts."""
    margin = default_margin(timeout_seconds) if margin is None else margin
    return max(1.0, timeout_seconds - margin)


def interrupt_grace(remaining_seconds: float, grace_seconds: float = 5.0) -> float:
    """How long before the hard deadline a tool is interrupted (SIGINT) so that it stops itself
    and writes its reports before it is killed. Shrinks for short budgets so the tool still gets
    most of the time."""
    return max(0.0, min(grace_seconds, remaining_seconds * 0.3))


def graceful_budget_ms(remaining_seconds: float, grace_seconds: float = 5.0) -> int:
    """A limit for a tool's *own* graceful timeout, set :func:`interrupt_grace` before the hard
    deadline so the tool stops itself and writes its reports before it is signalled."""
    return max(1000, int((remaining_seconds - interrupt_grace(remaining_seconds, grace_seconds)) * 1000))


@dataclass
class Deadline:
    """When the test must have stopped, as a ``time.monotonic()`` value."""

    at: float

    @classmethod
    def after(cls, seconds: float, start: float | None = None) -> Deadline:
        return cls((time.monotonic() if start is None else start) + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at
