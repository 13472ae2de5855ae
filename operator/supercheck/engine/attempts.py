"""Attempts: claim attempt N in the status, create its pod, observe it, and after it ends retry
(by failure class, with backoff) or finish.

Never two pods of one run at once: a retry's attempt number is taken in the status before its pod
is created, and the next attempt waits until every earlier pod is gone. Attempt 1 is the exception
that makes dispatch fast: no earlier pod of the run can exist, and its pod's name is deterministic,
so its pod is created first and the claim written right after it (one status write off the path
from admission to the pod). A crash between the two leaves a pod and no claim: the next step takes
the same path, the pod's create answers AlreadyExists, and the claim is written then; the ledger's
repair counts a run with a live pod as running whatever its status says.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from supercheck import envguard, podspec, scriptfiles
from supercheck import pods as pod_state
from supercheck import transitions as tr
from supercheck.clock import iso, parse_iso
from supercheck.engine import WAIT, Step, progress, traces, uploads
from supercheck.engine import results as res
from supercheck.engine import snapshot as snap
from supercheck.engine.isolation import ensure_runner_network_policy
from supercheck.engine.run import Body, RunHandle
from supercheck.models import Phase, TestRunSpec, TestRunStatus
from supercheck.pods import AttemptOutcome
from supercheck.ports import AlreadyExists, ApiUnavailable, Conflict, Refused
from supercheck.retry import Decision, decide
from supercheck.vocabulary import EventReason, PodStateKind, Reason, SlotState
from supercheck_contract import FailureClass

# Pod events drive the run; this backstop only re-checks in case an event was somehow missed.
OBSERVE_BACKSTOP_SECONDS = 60.0
TERMINAL_PHASES = frozenset(p.value for p in Phase if p.terminal)
# Attempt 1's pod goes before its claim only on a slot granted just now (the ledger's clock against
# ours), and only under Kopf peering (one active replica): an older grant may be a stale view's, and
# without peering another replica's view may be, so their claim must decide first.
FRESH_GRANT_SECONDS = 5.0


class ScriptGone(snap.NoSnapshot):
    """The script's ConfigMap (or one of its keys) disappeared between admission and launch."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.CONFIGMAP_NOT_FOUND, message)


async def script_files(run: RunHandle, spec: TestRunSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The script's files, key -> content (``data``, and ``binaryData`` for files that are not text)."""
    if spec.script.inline is not None:
        return {scriptfiles.inline_name(run.name, spec.type): spec.script.inline}, {}
    ref = spec.script.configMapRef
    assert ref is not None  # the schema allows exactly one source
    cm = await run.eng.kube.get_configmap(run.namespace, ref.name)
    if cm is None:
        raise ScriptGone(f"ConfigMap {ref.name!r} disappeared before the run started")
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    wanted = scriptfiles.source_keys(spec) or sorted({**data, **binary})
    missing = [k for k in wanted if k not in data and k not in binary]
    if missing:
        raise ScriptGone(f"ConfigMap {ref.name!r} lost its key(s) {', '.join(missing)} before the run started")
    return ({k: str(data[k]) for k in wanted if k in data},
            {k: str(binary[k]) for k in wanted if k in binary})


async def ensure_script(run: RunHandle, body: Body, spec: TestRunSpec) -> Body:
    """The run's own snapshot of its script and files, in a ConfigMap it owns (taken once, at admission).

    Raises :class:`supercheck.engine.snapshot.NoSnapshot` (the run cannot have one: it ends Error)
    and :class:`~supercheck.engine.snapshot.SnapshotBusy` (try again shortly)."""
    cm = podspec.script_configmap(podspec.RunRef.from_body(body), spec, *await script_files(run, spec))
    return await snap.ensure(run, cm)


async def snapshot_for_pod(run: RunHandle, body: Body, spec: TestRunSpec, attempt: int) -> Body:
    """The snapshot the attempt's pod is to mount: the run's own, never a ConfigMap of its name that is
    someone else's. A run admitted straight away whose first attempt could not take it (an earlier run's
    snapshot was still there) takes it now; a queued run took it while it waited."""
    try:
        return await snap.current(run)
    except snap.NoSnapshot as exc:
        if exc.reason != Reason.CONFIGMAP_NOT_FOUND or attempt != 1 or (body.get("status") or {}).get("queuedAt"):
            raise
    return await ensure_script(run, body, spec)


async def end_without_pod(run: RunHandle, body: Body, spec: TestRunSpec, reason: Reason, message: str,
                          claim: dict[str, Any] | None = None) -> Step:
    """The attempt cannot have a pod (the API server refused it, or there is no snapshot of the run's
    to mount): the run ends Error now, the attempt closed with the reason, the slot released.
    Nothing is retried: the same request would be refused again. ``claim``: attempt 1's claim, not
    written yet: it goes in the same write as the end."""
    eng = run.eng
    status = TestRunStatus.model_validate(body.get("status") or {})
    patch: dict[str, Any] = {}
    if claim is not None:
        patch = dict(claim)
        status = TestRunStatus.model_validate({**(body.get("status") or {}), **claim})
    outcome = AttemptOutcome(FailureClass.VALIDATION, None, message)
    async with eng.gate.shared():
        body = await run.patch(body, patch | tr.terminal_patch(status, outcome, Decision(False, Phase.ERROR, reason),
                                                               eng.clock.now()))
        final = TestRunStatus.model_validate(body["status"])
        await res.release(run, final)
    run.log.info("%s", final.message)  # the Warning Event is announce_end's
    eng.metrics.rejections.labels(spec.type, reason, *run.extra_labels(body)).inc()
    res.announce_end(run, body, spec, final)
    return await res.finished(run, body, final, spec)


async def launch(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus, attempt: int,
                 granted_ms: int = 0) -> Step:
    """Start attempt N: a retry is claimed in the status before its pod is created; attempt 1's pod
    is created first and its claim written after it (see the module's docstring)."""
    eng = run.eng
    now = eng.clock.now()
    granted = datetime.fromtimestamp(granted_ms / 1000, now.tzinfo) if granted_ms else None
    name = podspec.pod_name(run.name, attempt)
    claim = tr.claim_attempt_patch(status, attempt, name, granted, now) | traces.fields(run, body)
    take_snapshot = attempt == 1 and status.slot != SlotState.QUEUED
    fresh = granted is not None and abs((now - granted).total_seconds()) <= FRESH_GRANT_SECONDS
    if attempt > 1 or not fresh or eng.settings.peering == "standalone":
        # A retry, or a slot granted a while ago (a view that may be stale: its pod may have come and
        # gone already), or no peering (replicas may all be active, each with its own view of the
        # run: a quick run's pod could be made again by the slower one): the claim first, and its
        # resourceVersion precondition decides.
        body = await run.patch(body, claim)
        if attempt == 1:
            _tell_claim(run, body, spec, granted, status.slot == SlotState.QUEUED)
        return await create_pod(run, body, spec, attempt, granted or now, take_snapshot=take_snapshot)
    return await create_pod(run, body, spec, attempt, granted or now, claim=claim, granted=granted,
                            take_snapshot=take_snapshot)


async def claimed(run: RunHandle, body: Body, spec: TestRunSpec, claim: dict[str, Any],
                  granted: datetime | None, made: bool = False) -> Body:
    """Attempt 1's pod exists: write its claim; the admission's trace and the queue's wait are told.
    ``made``: this step created the pod (not found it there)."""
    eng = run.eng
    was_queued = (body.get("status") or {}).get("slot") == SlotState.QUEUED
    try:
        body = await run.patch(body, claim)
    except Conflict:
        # The status moved on under us (another replica's decision, a new spec): the pod was made on a
        # stale view. It goes at once, unless the newer status claims this very pod; the step starts over.
        fresh = await run.refresh()
        status = (fresh or {}).get("status") or {}
        if made and (status.get("podName") != claim["podName"] or status.get("phase") in TERMINAL_PHASES):
            await eng.kube.delete_pod(run.namespace, claim["podName"], grace_seconds=0)
            await uploads.revoke(run, claim["podName"])
        raise
    _tell_claim(run, body, spec, granted, was_queued)
    return body


def _tell_claim(run: RunHandle, body: Body, spec: TestRunSpec, granted: datetime | None, was_queued: bool) -> None:
    """Attempt 1 claimed: the admission's trace (or the queue's wait) and the queue wait metric."""
    eng = run.eng
    if was_queued:
        traces.slot_granted(run, body, granted or eng.clock.now())
    else:
        traces.admitted(run, body, "running")
    created = parse_iso(body["metadata"].get("creationTimestamp"))
    if created and granted:
        eng.metrics.queue_wait.labels(spec.type, *run.extra_labels(body)).observe(
            max(0.0, (granted - created).total_seconds()))


async def _snapshot(run: RunHandle, body: Body, spec: TestRunSpec, attempt: int, take: bool) -> Body:
    return await (ensure_script(run, body, spec) if take else snapshot_for_pod(run, body, spec, attempt))


async def create_pod(run: RunHandle, body: Body, spec: TestRunSpec, attempt: int, since: datetime,
                     *, claim: dict[str, Any] | None = None, granted: datetime | None = None,
                     take_snapshot: bool = False) -> Step:
    """Create the attempt's pod, mounting the run's own snapshot (taken now when ``take_snapshot``: a run
    admitted straight away; otherwise read and checked). A pod the API server refuses ends the run.

    Everything the pod needs before it exists (its snapshot, its upload grant, the namespace's
    NetworkPolicy, the envFrom check) is written or read at once, in one round, then the pod is
    created; a whole ConfigMap as the suite is laid out from the snapshot first (the pod mounts
    its files). ``claim``: attempt 1's claim, written once the pod exists (also when it already did:
    a step that created it and stopped before the claim)."""
    eng = run.eng

    async def end(reason: Reason, message: str) -> Step:
        return await end_without_pod(run, body, spec, reason, message, claim)

    async def take() -> Body:
        return await _snapshot(run, body, spec, attempt, take_snapshot)

    async def later(delay: float) -> Step:
        # No pod yet, and the next step tries again: the claim says meanwhile that the run holds its
        # slot (as it would have said before any pod in the order of a retry).
        if claim is not None:
            await claimed(run, body, spec, claim, granted)
        return delay

    snapshot: Body | None = None
    files = None
    if scriptfiles.whole_configmap(spec):
        # A whole ConfigMap's files are those of the run's snapshot: it is needed to build the pod.
        try:
            snapshot = await take()
            files = scriptfiles.layout(spec, run.name, {**(snapshot.get("data") or {}),
                                                        **(snapshot.get("binaryData") or {})})
        except snap.NoSnapshot as exc:
            return await end(exc.reason, exc.message)
        except snap.SnapshotBusy as exc:
            run.log.info("%s", exc)
            return await later(eng.settings.service_retry_seconds)
        except scriptfiles.LayoutError as exc:
            return await end(Reason.INVALID_SPEC, str(exc))
    resources = podspec.resolve_resources(spec, eng.settings)
    pod = podspec.runner_pod(podspec.RunRef.from_body(body), spec, attempt, eng.settings, resources, files,
                             trace_env=traces.pod_env(run, body, attempt))
    pod_name = pod["metadata"]["name"]
    # One round: the snapshot (checked before the pod may mount it), the envFrom check (again: the
    # sources may have changed while the run waited), the NetworkPolicy and the upload grant.
    outcomes = await asyncio.gather(
        take() if snapshot is None else _ready(snapshot),
        envguard.reserved_env_from(eng.kube, run.namespace, spec.envFrom),
        ensure_runner_network_policy(eng, run.namespace),
        uploads.grant(run, pod),
        return_exceptions=True)
    got_snapshot, reserved, policy, granted_ok = outcomes
    if isinstance(got_snapshot, snap.NoSnapshot):
        return await end(got_snapshot.reason, got_snapshot.message)
    if isinstance(got_snapshot, snap.SnapshotBusy):
        run.log.info("%s", got_snapshot)
        return await later(eng.settings.service_retry_seconds)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Refused):
            raise outcome
    if isinstance(reserved, str):
        return await end(Reason.INVALID_SPEC, reserved)
    if isinstance(granted_ok, Refused):
        return await end(Reason.POD_REJECTED, (
            f"attempt {attempt}: the API server refused runner pod {pod_name} ({granted_ok.status}): {granted_ok}"))
    if isinstance(policy, BaseException):
        raise policy
    if not granted_ok:
        return await later(eng.settings.service_retry_seconds)
    try:
        await eng.kube.create(pod)
    except ApiUnavailable:
        await later(0.0)  # the pod may or may not exist: the claim makes the next step look for it
        raise
    except Refused as exc:
        return await end(Reason.POD_REJECTED, (
            f"attempt {attempt}: the API server refused runner pod {pod_name} ({exc.status}): {exc}"))
    except AlreadyExists:
        existing = await eng.kube.get_pod(run.namespace, pod_name)
        view = pod_state.pod_view(existing) if existing else None
        if view is not None and view.owner_uid != run.uid:
            run.log.warning("pod %s belongs to another TestRun of this name; waiting for it to go", view.name)
            return await later(eng.settings.service_retry_seconds)
        if claim is not None:  # created by a step that stopped before its claim
            await claimed(run, body, spec, claim, granted)
        return WAIT
    now = eng.clock.now()
    eng.metrics.dispatch_latency.observe(max(0.0, (now - since).total_seconds()))
    if claim is not None:
        body = await claimed(run, body, spec, claim, granted, made=True)
    traces.dispatched(run, body, attempt, since, now, pod_name)
    run.log.debug("timing: %s pod created %s (slot granted %s)", run.name, iso(now), iso(since))
    run.event(body, "Normal", EventReason.DISPATCHED, f"attempt {attempt}: created runner pod {pod_name}")
    return WAIT


async def _ready(value: Body) -> Body:
    return value


async def stop_live_pods(run: RunHandle) -> bool:
    """Delete any live pod of this run; True while one is still there."""
    live = run.live_pods()
    for v in live:
        if not v.deleting:
            await run.eng.kube.delete_pod(run.namespace, v.name, grace_seconds=0)
            await uploads.revoke(run, v.name)
    return bool(live)


async def observe(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus) -> Step:
    """A run holding a running slot: launch the due attempt, or follow the current attempt's pod."""
    eng = run.eng
    now = eng.clock.now()
    if status.attempts == 0:
        async with eng.gate.shared():
            return await launch(run, body, spec, status, 1)
    rec = tr.current_attempt(status)
    if rec is not None and rec.completedAt:
        due = parse_iso(status.nextAttemptAt)
        if due and due > now:
            return (due - now).total_seconds()
        if await stop_live_pods(run):
            return WAIT  # never two pods of one run: the next attempt waits for the last to go
        async with eng.gate.shared():
            return await launch(run, body, spec, status, status.attempts + 1)

    pod = run.pod(status.podName)
    seen_running = tr.attempt_seen_running(status)
    if pod is None and status.podName:
        # The index may lag our own create; ask the API server before believing a pod is gone.
        fetched = await eng.kube.get_pod(run.namespace, status.podName)
        pod = pod_state.pod_view(fetched) if fetched else None
    state = pod_state.observe(pod, seen_running=seen_running)
    if state.kind == PodStateKind.ABSENT:
        return await create_pod(run, body, spec, status.attempts, now)
    if state.kind == PodStateKind.PENDING:
        return OBSERVE_BACKSTOP_SECONDS
    if state.kind == PodStateKind.RUNNING:
        assert pod is not None
        if status.phase not in tr.LIVE_PHASES or not seen_running:
            body = await run.patch(body, tr.running_patch(status, pod, now))
            status = TestRunStatus.model_validate(body["status"])
            run.event(body, "Normal", EventReason.RUNNING,
                      f"attempt {status.attempts}: runner pod {pod.name} is running")
            await res.record_start(run, body, status)
        # Running or Uploading: what the runner announces in its log (engine.progress).
        next_read = await progress.follow(run, body, status, pod)
        return OBSERVE_BACKSTOP_SECONDS if next_read is None else min(next_read, OBSERVE_BACKSTOP_SECONDS)
    if pod is not None and pod.live:
        # Ended while its container never ran (a configuration or image error): remove it so
        # it holds no node resources and never starts late.
        await eng.kube.delete_pod(run.namespace, pod.name, grace_seconds=0)
    assert state.outcome is not None
    traces.attempt_over(run, body, status.attempts, pod, state.outcome, now)
    return await attempt_ended(run, body, spec, status, state.outcome)


async def attempt_ended(run: RunHandle, body: Body, spec: TestRunSpec, status: TestRunStatus,
                        outcome: AttemptOutcome) -> Step:
    eng = run.eng
    s = eng.settings
    decision = decide(outcome.failure, tr.previous_failures(status), status.attempts,
                      s.retry_backoff_base_seconds, s.retry_backoff_max_seconds)
    now = eng.clock.now()
    if decision.retry:
        patch = tr.retry_patch(status, outcome, decision, now)
        run.log.warning("%s", patch["message"])
        body = await run.patch(body, patch)
        eng.metrics.retries.labels(spec.type, outcome.failure.value, *run.extra_labels(body)).inc()
        run.event(body, "Warning", EventReason.RETRYING, patch["message"])
        await uploads.revoke(run, status.podName)
        return decision.delay_seconds
    patch = tr.terminal_patch(status, outcome, decision, now)
    async with eng.gate.shared():
        # The end is written and the slot released at once: the pod has ended, so the next run's pod
        # may start, and a freed slot need not wait for a status write. A crash or a conflict between
        # the two leaves the run unfinished: its next step ends it again, and the ledger releases a
        # run once (its tombstone answers a second release with nothing to free).
        ending = TestRunStatus.model_validate({**(body.get("status") or {}), **patch})

        async def write_end() -> Body:  # the rows first, so that the end says "recorded" in one write
            return await run.patch(body, {**patch, **await res.rows_before_end(run, body, patch)})

        written, released = await asyncio.gather(write_end(), res.release(run, ending), return_exceptions=True)
        for outcome_ in (written, released):
            if isinstance(outcome_, BaseException):
                raise outcome_
        assert isinstance(written, dict)
        body = written
        final = TestRunStatus.model_validate(body["status"])
    # The pod has ended: its grant is of no more use. Deleted once the slot is released, not before:
    # the freed slot's next run does not wait for it (best effort: a grant left behind by a crash
    # expires on its own, and goes with the run).
    await uploads.revoke(run, status.podName)
    run.log.debug("timing: %s ended: observed %s, released %s", run.name, iso(now), iso(eng.clock.now()))
    res.announce_end(run, body, spec, final)
    return await res.finished(run, body, final, spec)
