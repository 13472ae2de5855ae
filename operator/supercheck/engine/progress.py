"""A running attempt's progress, read from its runner's log.

The runner has no API token (by design), so it cannot write the TestRun's status. What the pod
status cannot tell — the test has ended but S3 is unavailable and the runner is waiting to upload
— the runner prints as a progress line (:class:`supercheck_contract.Progress`); while the pod
runs, the operator reads the tail of the runner container's log every
``SUPERCHECK_PROGRESS_POLL_SECONDS`` (the first time one interval after it is seen running) and
shows the last announcement as the ``Uploading`` phase
(:func:`supercheck.transitions.progress_patch`). The pod's end replaces it with the outcome.

The log is advisory: it never decides an outcome (that is the termination message), and a read
that fails is simply tried again at the next interval.
"""

from __future__ import annotations

from supercheck import podspec
from supercheck import transitions as tr
from supercheck.engine import Step
from supercheck.engine.run import Body, RunHandle
from supercheck.models import Phase, TestRunStatus
from supercheck.pods import PodView
from supercheck.ports import ApiUnavailable
from supercheck.vocabulary import EventReason, Reason
from supercheck_contract import last_progress

# The runner prints a progress line at least every 15 s while it waits; 20 lines always hold the last.
TAIL_LINES = 20
TAIL_LIMIT_BYTES = 64 * 1024

_EVENTS = {Reason.STORAGE_UNAVAILABLE: ("Warning", EventReason.STORAGE_UNAVAILABLE),
           Reason.STORAGE_BACK: ("Normal", EventReason.STORAGE_BACK)}


async def follow(run: RunHandle, body: Body, status: TestRunStatus, pod: PodView) -> Step:
    """Read the runner's log tail when it is due and show what it announces; seconds until the next
    read, or None when following progress is turned off (``SUPERCHECK_PROGRESS_POLL_SECONDS=0``)."""
    eng = run.eng
    interval = eng.settings.progress_poll_seconds
    if interval <= 0:
        return None
    now = eng.clock.now()
    if run.progress_read_at is None:
        # The first read is one interval after the attempt is seen running: the runner announces
        # only an upload that waits, and most runs end before (a read costs the API server a proxied
        # connection to the node for every run).
        run.progress_read_at = now
        return interval
    since = (now - run.progress_read_at).total_seconds()
    if 0 <= since < interval:
        return interval - since  # woken early (an event, our own patch): not due yet
    run.progress_read_at = now
    try:
        tail = await eng.kube.pod_log_tail(run.namespace, pod.name, podspec.CONTAINER_NAME, TAIL_LINES,
                                           TAIL_LIMIT_BYTES)
    except ApiUnavailable as exc:
        run.log.debug("runner log of %s not read: %s", pod.name, exc)
        return interval
    patch = tr.progress_patch(status, last_progress(tail) if tail else None)
    if patch is None:
        return interval
    changed_reason = status.phase != Phase.UPLOADING or status.reason != patch["reason"]
    body = await run.patch(body, patch)
    event = _EVENTS.get(patch["reason"])
    if changed_reason and event is not None:
        run.event(body, event[0], event[1], patch["message"])
    return interval
