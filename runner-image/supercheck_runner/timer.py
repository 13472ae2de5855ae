"""The runner's own deadlines: when the test stops, and until when uploads are retried.

The pod has a deadline too (``activeDeadlineSeconds``), but when the kubelet enforces it the
container is killed and whatever the test produced is lost with its emptyDir. So the runner
stops the test *first*, a margin inside ``timeoutSeconds``, and spends that margin uploading
the partial results and writing its verdict.

When S3 is unavailable the upload does not fit the margin: the runner keeps retrying for the
upload window (``RunnerConfig.uploadWindowSeconds``, *W*), counted from the start of the upload
and never past ``timeoutSeconds + W`` after the runner's start (:func:`upload_give_up_at`).
The operator sizes the pod's deadline for it: ``activeDeadlineSeconds = timeoutSeconds + W +
RUNNER_DEADLINE_MARGIN_SECONDS``; the arithmetic is in docs/runner.md ("Timeout").

Clock: ``time.monotonic()``, from the runner's start; wall-clock jumps don't move the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MIN_MARGIN_SECONDS = 5.0
MAX_MARGIN_SECONDS = 30.0
# The longest one S3 request can take when S3 accepts connections but never answers: botocore's
# attempts x (connect timeout + read timeout) of the upload client (artifacts.make_client).
UPLOAD_CONNECT_TIMEOUT_SECONDS = 5.0
UPLOAD_READ_TIMEOUT_SECONDS = 15.0
UPLOAD_SDK_ATTEMPTS = 2
STALLED_REQUEST_SECONDS = UPLOAD_SDK_ATTEMPTS * (UPLOAD_CONNECT_TIMEOUT_SECONDS + UPLOAD_READ_TIMEOUT_SECONDS)
# The small requests (the preflight's HEAD, result.json) use a client that gives up sooner.
SMALL_CONNECT_TIMEOUT_SECONDS = 3.0
SMALL_READ_TIMEOUT_SECONDS = 10.0
SMALL_SDK_ATTEMPTS = 1
STALLED_SMALL_REQUEST_SECONDS = SMALL_SDK_ATTEMPTS * (SMALL_CONNECT_TIMEOUT_SECONDS + SMALL_READ_TIMEOUT_SECONDS)
# How long after the give-up time the runner may still take, at worst: a stalled upload started just
# before it, then result.json's last try. The operator's RUNNER_DEADLINE_MARGIN_SECONDS covers it.
OVERRUN_SECONDS = STALLED_REQUEST_SECONDS + STALLED_SMALL_REQUEST_SECONDS


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


def upload_give_up_at(upload_started: float, runner_started: float, timeout_seconds: float,
                      window_seconds: float) -> float:
    """When the runner stops retrying uploads (``time.monotonic()``): ``window_seconds`` after the
    upload started, and never later than ``timeout_seconds + window_seconds`` after the runner
    started (a test that overran its stop still ends inside the pod's deadline)."""
    return min(upload_started, runner_started + timeout_seconds) + max(0.0, window_seconds)


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
