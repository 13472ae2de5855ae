"""The end of a run: release its slot, announce it (metrics, Event), record its rows in PostgreSQL
(retried until they land: the status holds the truth meanwhile) and honour its TTL."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from supercheck import rows as result_rows
from supercheck import transitions as tr
from supercheck.clock import parse_iso
from supercheck.engine import Step, notifications, traces
from supercheck.engine.run import Body, RunHandle
from supercheck.jobrows import JobRow
from supercheck.models import Phase, TestRunSpec, TestRunStatus
from supercheck.notify import summary_payload
from supercheck.ports import StoreUnavailable
from supercheck.redact import redact_fields
from supercheck.vocabulary import ConditionType, EventReason, Reason


async def rows_before_end(run: RunHandle, body: Body, patch: dict[str, Any]) -> dict[str, Any]:
    """Write the final rows of a run about to end before its terminal status, and answer what the
    terminal write adds to say so (``recorded`` and RowsRecorded): one status write where there were
    two. When PostgreSQL does not answer: nothing (:func:`finished` writes the rows when it returns,
    the status holding the truth meanwhile). A crash between the rows and the status is harmless: the
    run's next step ends it again and writes the same rows again (an upsert)."""
    eng = run.eng
    if not eng.store.enabled:
        return {}
    ending = TestRunStatus.model_validate({**(body.get("status") or {}), **redact_fields(patch)})
    owed = result_rows.rows_to_record(body, ending)
    if not owed:
        return {}
    try:
        await eng.store.upsert(owed)
    except StoreUnavailable as exc:
        run.log.info("rows not written before the end (written after it): %s", exc)
        return {}
    recorded = sorted(set(ending.recorded) | {r.attempt for r in owed})
    return {"recorded": recorded,
            "conditions": tr.set_condition(ending.conditions, ConditionType.RESULTS_RECORDED, "True",
                                           Reason.RECORDED, f"{len(recorded)} row(s) in PostgreSQL table runs",
                                           eng.clock.now())}


async def release(run: RunHandle, status: TestRunStatus) -> None:
    """Give the slot back (idempotent); the ledger promotes the next queued run, whom we wake."""
    started = parse_iso(status.startedAt)
    ended = parse_iso(status.completedAt)
    duration_ms = int((ended - started).total_seconds() * 1000) if started and ended else None
    result = await run.eng.ledger.release(run.uid, duration_ms)
    run.eng.wake_promoted(result.promoted)


def end_event_text(phase: Phase, result: str | None, message: str | None) -> str:
    """The end's Event: the phase, the result, the message, each said once (a k6 run's message
    begins with its result: "thresholds passed; 0 checks passed")."""
    parts = [p for p in (result, message) if p]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]
    return f"{phase.value}: {'; '.join(parts)}" if parts else phase.value


def announce_end(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus) -> None:
    phase = status.phase or Phase.ERROR
    m = run.eng.metrics
    extra = run.extra_labels(body)
    m.runs.labels(spec.type, phase.value, *extra).inc()
    started, ended = parse_iso(status.startedAt), parse_iso(status.completedAt)
    if started and ended:
        m.run_duration.labels(spec.type, phase.value, *extra).observe(max(0.0, (ended - started).total_seconds()))
    kind = "Normal" if phase == Phase.PASSED else "Warning"
    run.event(body, kind, status.reason or phase.value, end_event_text(phase, status.result, status.message))
    traces.run_ended(run, body)


async def refuse(run: RunHandle, body: Body, status: TestRunStatus, reason: Reason, message: str) -> Step:
    """The operator will not run this run: Error before any pod, no retry."""
    eng = run.eng
    spec_type = (body.get("spec") or {}).get("type", "")
    async with eng.gate.shared():
        body = await run.patch(body, tr.error_before_pod_patch(status, reason, message, eng.clock.now()))
        final = TestRunStatus.model_validate(body["status"])
        await release(run, final)
    eng.metrics.rejections.labels(spec_type, reason, *run.extra_labels(body)).inc()
    eng.metrics.runs.labels(spec_type, Phase.ERROR.value, *run.extra_labels(body)).inc()
    run.event(body, "Warning", reason, message)
    traces.run_ended(run, body)
    try:
        spec: TestRunSpec | None = TestRunSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        spec = None
    return await finished(run, body, final, spec)


async def record_start(run: RunHandle, body: Body, status: TestRunStatus) -> None:
    """A provisional row when an attempt starts running; a missing one is not worth a retry."""
    if status.attempts in run.recorded_start:
        return
    try:
        await run.eng.store.upsert([result_rows.start_row(body, status)])
        run.recorded_start.add(status.attempts)
    except StoreUnavailable as exc:
        run.log.info("provisional row not written (the final one will be): %s", exc)


def notify_row(body: Body, status: TestRunStatus) -> JobRow:
    """A TestRun told as the webhook's summary: Playwright's counts, or one test for k6."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    phase = status.phase or Phase.ERROR
    art = status.artifacts
    row = JobRow(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], type=spec.get("type", ""),
                 phase=phase.value, final=True, reason=status.reason, message=status.message,
                 started_at=status.startedAt, completed_at=status.completedAt,
                 report_bucket=art.bucket if art else None, report_prefix=art.prefix if art else None,
                 report_key=art.report if art else None)
    s = status.summary
    if s is not None:
        row.total, row.completed, row.passed, row.failed, row.flaky, row.skipped = (
            s.total, s.total, s.passed, s.failed, s.flaky, s.skipped)
    else:
        ran = phase in (Phase.PASSED, Phase.FAILED)
        row.total, row.completed, row.not_run = 1, int(ran), int(not ran)
        row.passed, row.failed = int(phase == Phase.PASSED), int(phase == Phase.FAILED)
    return row


async def finished(run: RunHandle, body: Body, status: TestRunStatus, spec: TestRunSpec | None) -> Step:
    """After the terminal phase: the rows owed to PostgreSQL, then the TTL."""
    eng = run.eng
    owed = result_rows.rows_to_record(body, status)
    if owed and eng.store.enabled:
        try:
            await eng.store.upsert(owed)
        except StoreUnavailable as exc:
            eng.metrics.service_errors.labels("postgres").inc()
            eng.metrics.results_waiting(run.uid, True)
            if not tr.has_condition(status, ConditionType.RESULTS_RECORDED, "False", Reason.DATABASE_UNAVAILABLE):
                message = f"{exc}; the rows are written when it returns (the status holds the result)"
                await run.patch(body, {"conditions": tr.set_condition(
                    status.conditions, ConditionType.RESULTS_RECORDED, "False", Reason.DATABASE_UNAVAILABLE,
                    message, eng.clock.now())})
                run.event(body, "Warning", EventReason.DATABASE_UNAVAILABLE, message)
            return eng.settings.service_retry_seconds
        recorded = sorted(set(status.recorded) | {r.attempt for r in owed})
        body = await run.patch(body, {
            "recorded": recorded,
            "conditions": tr.set_condition(status.conditions, ConditionType.RESULTS_RECORDED, "True",
                                           Reason.RECORDED, f"{len(recorded)} row(s) in PostgreSQL table runs",
                                           eng.clock.now())})
        eng.metrics.results_waiting(run.uid, False)
    if spec is not None and spec.notify and status.phase is not None:
        status = TestRunStatus.model_validate(body.get("status") or {})  # with the condition just written
        body = await notifications.send(run, body, status.phase.value if status.phase else "", spec.notify,
                                        status.notifications, status.conditions,
                                        summary_payload(notify_row(body, status), kind="TestRun"))
    return await honour_ttl(run, status.completedAt, spec.ttlSecondsAfterFinished if spec is not None else None)


async def honour_ttl(run: RunHandle, completed_at: str | None, ttl: int | None) -> Step:
    """``ttlSecondsAfterFinished``: seconds until the run is to be deleted, or delete it now (None after)."""
    if ttl is None:
        return None
    now = run.eng.clock.now()
    ended = parse_iso(completed_at) or now
    left = ended.timestamp() + ttl - now.timestamp()
    if left > 0:
        return left
    run.log.info("ttlSecondsAfterFinished=%d passed; deleting the %s", ttl, run.kind)
    await run.eng.kube.delete_run(run.namespace, run.name, run.uid, run.plural)
    return None
