"""Admission: a new run is checked (resources, references), then the capacity ledger runs it now,
queues it, or rejects it with a retry-after; a queued run waits for its promotion."""

from __future__ import annotations

from supercheck import envguard, podspec, scriptfiles
from supercheck import transitions as tr
from supercheck.clock import parse_iso
from supercheck.engine import Step, shares, traces
from supercheck.engine import attempts as att
from supercheck.engine import results as res
from supercheck.engine import snapshot as snap
from supercheck.engine.run import Body, RunHandle, body_ref
from supercheck.models import Phase, TestRunSpec, TestRunStatus
from supercheck.ports import ApiUnavailable, Conflict
from supercheck.vocabulary import AdmitState, ConditionType, EventReason, Reason, not_found_reason

# A queued run re-checks the ledger this often even without events.
QUEUE_BACKSTOP_SECONDS = 30.0


def _keys(obj: Body) -> list[str]:
    return sorted({**(obj.get("data") or {}), **(obj.get("binaryData") or {})})


def key_not_found(kind: str, name: str, where: str, key: str, obj: Body) -> str:
    """Which key of which object is missing. A ConfigMap's keys are listed, to help; a Secret's never:
    their names say what the Secret holds, and every reader of the run sees this message."""
    listing = f" (it has: {', '.join(_keys(obj)) or 'no keys'})" if kind == "ConfigMap" else ""
    return f"{kind} {name!r} referenced by {where} has no key {key!r}{listing}"


async def missing_reference(run: RunHandle, spec: TestRunSpec) -> tuple[Reason, str] | None:
    """The first ConfigMap, Secret or key the run refers to that does not exist, said in words;
    for a whole ConfigMap as the suite, also a suite that cannot be laid out or has no test file."""
    kube = run.eng.kube
    for kind, name, key, where in podspec.required_references(spec):
        obj = await (kube.get_configmap if kind == "ConfigMap" else kube.get_secret)(run.namespace, name)
        if obj is None:
            return not_found_reason(kind), (f"{kind} {name!r} referenced by {where} was not found in namespace "
                                            f"{run.namespace!r}; create it or fix the reference")
        if key is not None and key not in _keys(obj):
            return Reason.KEY_NOT_FOUND, key_not_found(kind, name, where, key, obj)
    reserved = await envguard.reserved_env_from(kube, run.namespace, spec.envFrom)
    if reserved:
        return Reason.INVALID_SPEC, reserved
    ref = spec.script.configMapRef
    if ref is not None and scriptfiles.whole_configmap(spec):
        keys = _keys(await kube.get_configmap(run.namespace, ref.name) or {})
        try:
            suite = scriptfiles.layout(spec, run.name, keys)
        except scriptfiles.LayoutError as exc:
            return Reason.INVALID_SPEC, str(exc)
        if not scriptfiles.runnable_tests(suite):
            return Reason.KEY_NOT_FOUND, (
                f"ConfigMap {ref.name!r} referenced by spec.script.configMapRef has no test file: without "
                f"configMapRef.key every key is a file of the suite and those named *.spec.ts, *.test.js (and "
                f"the like) run (it has: {', '.join(keys) or 'no keys'}); add one, or name the script with key")
    return None


async def admit(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus) -> Step:
    eng = run.eng
    s = eng.settings
    now = eng.clock.now()
    try:
        podspec.resolve_resources(spec, s)
    except podspec.ResourceBoundsError as exc:
        return await res.refuse(run, body, status, Reason.RESOURCES_OUT_OF_BOUNDS, str(exc))
    too_long = shares.timeout_refusal(run, spec.timeoutSeconds)
    if too_long:
        return await res.refuse(run, body, status, Reason.NAMESPACE_LIMIT_EXCEEDED, too_long)
    missing = await missing_reference(run, spec)
    if missing:
        # A reference created right after the TestRun (kubectl apply -f dir/) gets a grace period.
        created = parse_iso(body["metadata"].get("creationTimestamp")) or now
        waited = (now - created).total_seconds()
        reason, message = missing
        if waited < s.script_ref_grace_seconds:
            if not tr.has_condition(status, ConditionType.REFERENCES_RESOLVED, "False", reason):
                await run.patch(body, {
                    "phase": Phase.PENDING.value, "reason": reason, "message": message,
                    "conditions": tr.set_condition(status.conditions, ConditionType.REFERENCES_RESOLVED, "False",
                                                   reason, message, now)})
            return min(1.0, s.script_ref_grace_seconds - waited + 0.05)
        return await res.refuse(run, body, status, reason, message)
    resolved = tr.references_resolved_patch(status.conditions, now)
    if resolved:  # a reference waited for has appeared: say so before the run goes on
        body = await run.patch(body, resolved)
        status = TestRunStatus.model_validate(body.get("status") or {})

    priority = shares.queue_priority(run, spec.priority)
    async with eng.gate.shared():
        result = await eng.ledger.admit(run.uid, body_ref(body), priority)
        eng.wake_promoted(result.promoted)
        if result.state != AdmitState.RELEASED:
            shares.announce_priority(run, body, spec.priority, priority)
        if result.state == AdmitState.REJECTED:
            why = shares.rejection(run, "TestRun", result, await eng.ledger.avg_run_seconds())
            patch = tr.rejected_patch(status, why.retry_after, result.running, result.queued,
                                      s.running_capacity, s.queued_capacity, now, reason=why.reason,
                                      message=why.message) | traces.fields(run, body)
            body = await run.patch(body, patch)
            traces.admitted(run, body, "rejected")
            traces.run_ended(run, body)
            extra = run.extra_labels(body)
            eng.metrics.rejections.labels(spec.type, why.reason, *extra).inc()
            eng.metrics.runs.labels(spec.type, Phase.REJECTED.value, *extra).inc()
            run.event(body, "Warning", why.reason, patch["message"])
            return await res.finished(run, body, TestRunStatus.model_validate(body["status"]), spec)
        if result.state == AdmitState.RELEASED:
            # The ledger says this run already ended; the cluster must say so too, soon.
            return 0.0 if await run.refresh() is not None else None
        if result.state == AdmitState.QUEUED:
            try:
                await att.ensure_script(run, body, spec)
            except snap.NoSnapshot as exc:
                return await res.refuse(run, body, status, exc.reason, exc.message)
            except snap.SnapshotBusy as exc:
                run.log.info("%s", exc)
                return s.service_retry_seconds  # the queue place is kept: admit is idempotent
            note = shares.waiting_note(run, result)
            patch = tr.queued_patch(status, result.seq, result.position, now) | traces.fields(run, body)
            patch["message"] += note
            body = await run.patch(body, patch)
            traces.admitted(run, body, "queued", result.position)
            run.event(body, "Normal", EventReason.QUEUED,
                      (note[2:] if note else f"all {s.running_capacity} running slots are taken") +
                      f"; queued at position {result.position}")
            return QUEUE_BACKSTOP_SECONDS
        return await att.launch(run, body, spec, status, 1, result.granted_ms)


async def wait_in_queue(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus) -> Step:
    """Queued: ask the ledger again (idempotent) whether the run was promoted to a running slot."""
    eng = run.eng
    s = eng.settings
    priority = shares.queue_priority(run, spec.priority)
    async with eng.gate.shared():
        result = await eng.ledger.admit(run.uid, body_ref(body), priority)
        eng.wake_promoted(result.promoted)
        if result.state == AdmitState.RUNNING:
            return await att.launch(run, body, spec, status, 1, result.granted_ms)
        if result.state == AdmitState.RELEASED:
            return 0.0 if await run.refresh() is not None else None
        if result.state == AdmitState.REJECTED:
            # The ledger lost the place and the queue is full now: the run cannot be kept.
            run.log.warning("queue place lost and the queue is full; the run is rejected")
            why = shares.rejection(run, "TestRun", result, None)
            patch = tr.rejected_patch(status, why.retry_after, result.running, result.queued, s.running_capacity,
                                      s.queued_capacity, eng.clock.now(), reason=why.reason, message=why.message)
            body = await run.patch(body, patch)
            traces.run_ended(run, body)
            run.event(body, "Warning", why.reason, patch["message"])
            return 0.0
    return QUEUE_BACKSTOP_SECONDS


async def ledger_down(run: RunHandle, body: Body, status: TestRunStatus, exc: Exception) -> Step:
    """Redis unreachable: nothing is admitted on a guess; the run waits and says why."""
    eng = run.eng
    run.log.warning("%s", exc)
    if status.slot is None and not (status.phase and status.phase.terminal) and \
            not tr.has_condition(status, ConditionType.ADMITTED, "False", Reason.LEDGER_UNAVAILABLE):
        message = f"waiting for the capacity ledger: {exc}; the run is admitted when Redis answers again"
        try:
            await run.patch(body, {
                "phase": Phase.PENDING.value, "reason": Reason.LEDGER_UNAVAILABLE, "message": message,
                "conditions": tr.set_condition(status.conditions, ConditionType.ADMITTED, "False",
                                               Reason.LEDGER_UNAVAILABLE, message, eng.clock.now())})
            run.event(body, "Warning", EventReason.LEDGER_UNAVAILABLE, message)
        except (Conflict, ApiUnavailable):
            pass
    return eng.settings.service_retry_seconds
