"""A JobRun's end: its rows in PostgreSQL (``jobs`` and ``job_tests``, retried until they land:
the status holds the truth meanwhile), its webhooks, and its TTL."""

from __future__ import annotations

from supercheck import jobstate
from supercheck import transitions as tr
from supercheck.engine import Step
from supercheck.engine import notifications as notes
from supercheck.engine.results import honour_ttl
from supercheck.engine.run import Body, RunHandle
from supercheck.jobmodels import JobRunSpec, JobRunStatus
from supercheck.notify import summary_payload
from supercheck.ports import StoreUnavailable
from supercheck.vocabulary import ConditionType, EventReason, Reason


async def record(run: RunHandle, body: Body, status: JobRunStatus, *, raise_errors: bool = False) -> Body | None:
    """Write the job's final rows; the new body, or None while PostgreSQL is away (the caller retries)."""
    eng = run.eng
    if status.recorded or not eng.store.enabled:
        return body
    job, tests = jobstate.rows(body, status)
    try:
        await eng.store.upsert_job(job, tests)
    except StoreUnavailable as exc:
        if raise_errors:
            raise
        eng.metrics.service_errors.labels("postgres").inc()
        eng.metrics.results_waiting(run.uid, True)
        if not any(c.type == ConditionType.RESULTS_RECORDED and c.status == "False" for c in status.conditions):
            message = f"{exc}; the rows are written when it returns (the status holds the result)"
            await run.patch(body, {"conditions": tr.set_condition(
                status.conditions, ConditionType.RESULTS_RECORDED, "False", Reason.DATABASE_UNAVAILABLE,
                message, eng.clock.now())})
            run.event(body, "Warning", EventReason.DATABASE_UNAVAILABLE, message)
        return None
    eng.metrics.results_waiting(run.uid, False)
    return await run.patch(body, {"recorded": True, "conditions": tr.set_condition(
        status.conditions, ConditionType.RESULTS_RECORDED, "True", Reason.RECORDED,
        f"1 row in jobs, {len(tests)} in job_tests", eng.clock.now())})


async def finished(run: RunHandle, body: Body, status: JobRunStatus, spec: JobRunSpec | None) -> Step:
    eng = run.eng
    recorded = await record(run, body, status)
    if recorded is None:
        return eng.settings.service_retry_seconds
    body = recorded
    status = JobRunStatus.model_validate(body.get("status") or {})
    if spec is not None and spec.notify and status.phase is not None:
        job, tests = jobstate.rows(body, status)
        body = await notes.send(run, body, status.phase.value, spec.notify, status.notifications,
                                status.conditions, summary_payload(job, tests, kind="JobRun"))
    return await honour_ttl(run, status.completedAt, spec.ttlSecondsAfterFinished if spec is not None else None)
