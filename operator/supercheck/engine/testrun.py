"""A TestRun's step and its cancellation, driving admission, attempts and results.

Each :func:`step` reads the newest known state (the CR status and the run's pods), decides
through the pure core and writes. All state is in the CR status, so a restarted operator
resumes where it stopped; every write is idempotent (deterministic names, per-uid ledger
scripts, resourceVersion-checked patches).
"""

from __future__ import annotations

from pydantic import ValidationError

from supercheck import rows as result_rows
from supercheck import transitions as tr
from supercheck.engine import Step, traces
from supercheck.engine import admission as adm
from supercheck.engine import attempts as att
from supercheck.engine import results as res
from supercheck.engine.guard import guarded
from supercheck.engine.run import RunHandle
from supercheck.models import Phase, TestRunSpec, TestRunStatus
from supercheck.vocabulary import EventReason, Reason, SlotState


async def step(run: RunHandle) -> Step:
    """Advance the run; seconds until the next step, WAIT, or None when there is nothing left to do.

    Raises :class:`supercheck.ports.StoreUnavailable` only from a provisional write the caller
    may retry; every other service outage is handled here by waiting.
    """
    eng = run.eng
    body = run.body()
    if body["metadata"].get("deletionTimestamp") or run.uid in eng.cancelling:
        return None
    status = TestRunStatus.model_validate(body.get("status") or {})
    try:
        spec = TestRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        if status.phase is not None and status.phase.terminal:
            return await res.finished(run, body, status, None)
        return await res.refuse(run, body, status, Reason.INVALID_SPEC, f"the spec is invalid: {exc}")
    async def decide() -> Step:
        if status.phase is not None and status.phase.terminal:
            # A pod of a run that has ended can only be one made on a stale view by a process that
            # stopped before it could take it back (engine.attempts.claimed): it goes.
            await att.stop_live_pods(run)
            return await res.finished(run, body, status, spec)
        if status.slot is None:
            return await adm.admit(run, body, spec, status)
        if status.slot == SlotState.QUEUED:
            return await adm.wait_in_queue(run, body, spec, status)
        return await att.observe(run, body, spec, status)

    return await guarded(run, decide, lambda exc: adm.ledger_down(run, body, status, exc))


class StillStopping(Exception):
    """Cancellation waits for the run's pods to stop; call again shortly."""


async def cancel(run: RunHandle) -> None:
    """The TestRun is being deleted: stop its pods, record it Cancelled, release its slot, write its rows.

    Raises :class:`StillStopping` while a pod is still there, and the ports' errors for the caller
    to retry (Kopf's finalizer does, with a delay).
    """
    eng = run.eng
    eng.cancelling.add(run.uid)
    fresh = await run.refresh() or dict(run.live)
    status = TestRunStatus.model_validate(fresh.get("status") or {})
    if status.phase is None or not status.phase.terminal:
        live = run.live_pods()
        for v in live:
            if not v.deleting:
                await eng.kube.delete_pod(run.namespace, v.name, grace_seconds=5)
        if live:
            raise StillStopping(f"waiting for runner pod(s) {', '.join(v.name for v in live)} to stop")
        async with eng.gate.shared():
            fresh = await run.patch(fresh, tr.cancelled_patch(status, eng.clock.now()))
            status = TestRunStatus.model_validate(fresh["status"])
            await res.release(run, status)
        spec_type = (fresh.get("spec") or {}).get("type", "")
        eng.metrics.runs.labels(spec_type, Phase.CANCELLED.value, *run.extra_labels(fresh)).inc()
        run.event(fresh, "Normal", EventReason.CANCELLED, status.message or "cancelled")
        traces.run_ended(run, fresh)
    else:
        await res.release(run, status)  # idempotent: a crash may have left it held
    owed = result_rows.rows_to_record(fresh, status)
    if owed:
        await eng.store.upsert(owed)
