"""A run's trace as the engine records it (docs/tracing.md): each span when its facts are known,
with the times they happened. The spans themselves are built by :mod:`supercheck.tracing`'s pure
functions; here they are fed from the run's body, status and pods. A TestRun and a JobRun share
every call (their statuses hold the same fields: traceId, traceParent, queuedAt, completedAt,
phase, reason); a JobRun's pods name their ``shard`` ("1".."N", or "merge"). With tracing off
every call returns at once and the status gets no trace fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from supercheck import tracing
from supercheck.clock import parse_iso
from supercheck.engine.run import Body, RunHandle
from supercheck.pods import AttemptOutcome, PodView


def trace_of(run: RunHandle, body: Body) -> tracing.RunTrace:
    return run.eng.tracer.trace_for(run.uid, body.get("status"))


def fields(run: RunHandle, body: Body) -> dict[str, Any]:
    """The trace fields for the run's first admission patch (none when off, or already there)."""
    if not run.eng.tracer.enabled or (body.get("status") or {}).get("traceId"):
        return {}
    return trace_of(run, body).status_fields()


def _created(run: RunHandle, body: Body) -> datetime:
    return parse_iso(body["metadata"].get("creationTimestamp")) or run.eng.clock.now()


def admitted(run: RunHandle, body: Body, outcome: str, position: int | None = None) -> None:
    """The ledger's answer: "running", "queued" or "rejected"."""
    tracer = run.eng.tracer
    if tracer.enabled:
        tracer.record(trace_of(run, body), tracing.admission_span(
            trace_of(run, body), _created(run, body), run.eng.clock.now(), outcome, position))


def slot_granted(run: RunHandle, body: Body, granted: datetime) -> None:
    """A queued run got its running slot: the queue wait is over (nothing for a run admitted at once)."""
    tracer = run.eng.tracer
    queued = parse_iso((body.get("status") or {}).get("queuedAt"))
    if tracer.enabled and queued is not None:
        tracer.record(trace_of(run, body), tracing.queue_wait_span(trace_of(run, body), queued, granted))


def pod_env(run: RunHandle, body: Body, attempt: int, shard: str | None = None) -> dict[str, str]:
    """``TRACEPARENT`` and the OTLP settings for the attempt's pod (empty when off)."""
    return run.eng.tracer.runner_env(trace_of(run, body), attempt, shard)


def dispatched(run: RunHandle, body: Body, attempt: int, since: datetime, created: datetime, pod: str,
               shard: str | None = None) -> None:
    tracer = run.eng.tracer
    if tracer.enabled:
        tracer.record(trace_of(run, body),
                      tracing.dispatch_span(trace_of(run, body), attempt, since, created, pod, shard))


def attempt_over(run: RunHandle, body: Body, attempt: int, pod: PodView | None, outcome: AttemptOutcome,
                 now: datetime, shard: str | None = None) -> None:
    """Attempt N's pod ended (or was lost): from its creation to its container's end."""
    tracer = run.eng.tracer
    if not tracer.enabled:
        return
    container = pod.container if pod is not None else None
    created = parse_iso(pod.created_at if pod is not None else None) or now
    ended = parse_iso(container.finished_at if container is not None else None) or now
    tracer.record(trace_of(run, body), tracing.attempt_span(
        trace_of(run, body), attempt, created, ended, pod.name if pod is not None else None,
        outcome.failure.value, outcome.exit_code, outcome.message, shard))


def attempt_stopped(run: RunHandle, body: Body, attempt: int, pod: str | None, started: datetime | None,
                    now: datetime, why: str, message: str, shard: str | None = None) -> None:
    """An attempt the operator stopped before it ended (a JobRun's other shards when it timed out or
    one shard failed for good): its span ends now, an error saying ``why``."""
    tracer = run.eng.tracer
    if tracer.enabled:
        tracer.record(trace_of(run, body), tracing.attempt_span(
            trace_of(run, body), attempt, started or now, now, pod, why, None, message, shard))


def run_ended(run: RunHandle, body: Body) -> None:
    """The terminal phase is written: the root span, from the run's creation to its end."""
    tracer = run.eng.tracer
    if not tracer.enabled:
        return
    status = body.get("status") or {}
    now = run.eng.clock.now()
    tracer.record(trace_of(run, body), tracing.run_span(
        trace_of(run, body), run.namespace, run.name, run.uid, str((body.get("spec") or {}).get("type", "")),
        _created(run, body), parse_iso(status.get("completedAt")) or now, str(status.get("phase") or "Error"),
        status.get("reason"), run.kind))
