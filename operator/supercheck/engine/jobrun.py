"""A JobRun's step and its cancellation: admission of all its slots at once, its shards' attempts,
their tests as they end, the report merge, and its end.

Like a TestRun, all state is in the CR status (``shards[]``, ``tests[]``, ``merge``), every write
is idempotent (deterministic pod names, per-uid ledger scripts, resourceVersion-checked
patches) and a restarted operator resumes where it stopped. A shard is driven like a TestRun's
attempts: the attempt is claimed in the status before its pod is created, and retried by the
same failure classes (:func:`supercheck.retry.decide`). The runner announces each test that ends
on its log (:class:`supercheck_contract.TestEnded`), which the operator reads every
``SUPERCHECK_JOB_PROGRESS_POLL_SECONDS`` while the shard runs, and once more when it ends.

A traced job is one trace, as a TestRun is (:mod:`supercheck.engine.traces`, docs/tracing.md): its
admission, queue wait, each shard attempt's dispatch and pod (``shard N attempt M``, the runner's
spans under it), the merge pod's (``merge attempt M``), and the root ``run`` at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from supercheck import envguard, jobpods, jobstate, podspec
from supercheck import pods as pod_state
from supercheck import transitions as tr
from supercheck.clock import iso, parse_iso
from supercheck.engine import WAIT, Step, shares, traces, uploads
from supercheck.engine import snapshot as snap
from supercheck.engine.admission import key_not_found
from supercheck.engine.attempts import stop_live_pods
from supercheck.engine.guard import guarded
from supercheck.engine.isolation import ensure_runner_network_policy
from supercheck.engine.run import Body, RunHandle, body_ref
from supercheck.jobmodels import JobRunSpec, JobRunStatus, MergeStatus, ShardStatus, TestStatus
from supercheck.jobpods import MERGE_SHARD, Suite
from supercheck.models import Phase
from supercheck.pods import AttemptOutcome
from supercheck.ports import AlreadyExists, ApiUnavailable, Conflict, LedgerUnavailable, Refused
from supercheck.redact import redact_fields
from supercheck.retry import TERMINAL_FOR, Decision, decide
from supercheck.vocabulary import AdmitState, ConditionType, EventReason, PodStateKind, Reason, SlotState
from supercheck_contract import FailureClass, Progress, TestEnded, last_progress, shard_prefix, tests_ended

QUEUE_BACKSTOP_SECONDS = 30.0
LOG_LINES = 20_000
LOG_LIMIT_BYTES = 4 * 1024 * 1024
MERGE_TRIES = 2


def _status(body: Body) -> JobRunStatus:
    return JobRunStatus.model_validate(body.get("status") or {})


async def step(run: RunHandle) -> Step:
    """Advance the job; seconds until the next step, WAIT, or None when there is nothing left to do."""
    eng = run.eng
    body = run.body()
    if body["metadata"].get("deletionTimestamp") or run.uid in eng.cancelling:
        return None
    status = _status(body)
    try:
        spec = JobRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        if status.phase is not None and status.phase.terminal:
            return await finished(run, body, status, None)
        return await refuse(run, body, status, Reason.INVALID_SPEC, f"the spec is invalid: {exc}")
    async def decide() -> Step:
        if status.phase is not None and status.phase.terminal:
            return await finished(run, body, status, spec)
        if status.slot is None:
            return await admit(run, body, spec, status)
        if status.slot == SlotState.QUEUED:
            return await wait_in_queue(run, body, spec, status)
        return await drive(run, body, spec, status)

    async def ledger_down(exc: LedgerUnavailable) -> Step:
        """Redis unreachable: nothing is admitted on a guess; a job not yet admitted says why it waits."""
        run.log.warning("%s", exc)
        if status.slot is None and not (status.phase and status.phase.terminal) and \
                status.reason != Reason.LEDGER_UNAVAILABLE:
            message = f"waiting for the capacity ledger: {exc}; the job is admitted when Redis answers again"
            try:
                patched = await run.patch(body, {
                    "phase": Phase.PENDING.value, "reason": Reason.LEDGER_UNAVAILABLE, "message": message,
                    "conditions": tr.set_condition(status.conditions, ConditionType.ADMITTED, "False",
                                                   Reason.LEDGER_UNAVAILABLE, message, eng.clock.now())})
                run.event(patched, "Warning", EventReason.LEDGER_UNAVAILABLE, message)
            except (Conflict, ApiUnavailable):
                pass
        return eng.settings.service_retry_seconds

    return await guarded(run, decide, ledger_down)


# ---------------------------------------------------------------- admission


def _keys(obj: Body) -> list[str]:
    return sorted({**(obj.get("data") or {}), **(obj.get("binaryData") or {})})


async def _missing(run: RunHandle, spec: JobRunSpec) -> tuple[Reason, str] | None:
    kube = run.eng.kube
    for kind, name, key, where in jobpods.required_references(spec):
        obj = await (kube.get_configmap if kind == "ConfigMap" else kube.get_secret)(run.namespace, name)
        if obj is None:
            return (Reason.CONFIGMAP_NOT_FOUND if kind == "ConfigMap" else Reason.SECRET_NOT_FOUND,
                    f"{kind} {name!r} referenced by {where} was not found in namespace {run.namespace!r}; "
                    "create it or fix the reference")
        if key is not None and key not in _keys(obj):
            return Reason.KEY_NOT_FOUND, key_not_found(kind, name, where, key, obj)
    reserved = await envguard.reserved_env_from(kube, run.namespace, spec.envFrom)
    if reserved:
        return Reason.INVALID_SPEC, reserved
    return None


async def suite_of(run: RunHandle, spec: JobRunSpec) -> Suite | tuple[Reason, str] | None:
    """The job's files and tests from its source; None for a git suite (the runner fetches it)."""
    src = spec.testsFrom
    if src is not None and src.git is not None:
        return None
    if src is not None and src.configMapRef is not None:
        name = src.configMapRef.name
        keys = _keys(await run.eng.kube.get_configmap(run.namespace, name) or {})
        suite = jobpods.suite_from_keys(spec, keys)
        if not suite.tests:
            return Reason.KEY_NOT_FOUND, (
                f"ConfigMap {name!r} referenced by spec.testsFrom.configMapRef has no test file: each key named "
                f"*.spec.ts, *.test.js (k6 also *.k6.js) and the like is one test (it has: "
                f"{', '.join(keys) or 'no keys'})")
    else:
        suite = jobpods.suite_from_tests(spec)
    if len(suite.tests) > 500:
        return Reason.INVALID_SPEC, f"the job has {len(suite.tests)} tests; at most 500 run as one job"
    return suite


class SuiteGone(snap.NoSnapshot):
    """A ConfigMap of the suite (or one of its keys) disappeared between admission and the snapshot."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.CONFIGMAP_NOT_FOUND, message)


async def snapshot_files(run: RunHandle, spec: JobRunSpec) -> tuple[dict[str, str], dict[str, str]]:
    """Every file of the suite, key -> content, as it is now (the job's own snapshot is taken from it)."""
    kube = run.eng.kube
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    src = spec.testsFrom
    if src is not None and src.configMapRef is not None:
        cm = await kube.get_configmap(run.namespace, src.configMapRef.name)
        if cm is None:
            raise SuiteGone(f"ConfigMap {src.configMapRef.name!r} disappeared before the job started")
        return dict(cm.get("data") or {}), dict(cm.get("binaryData") or {})
    cache: dict[str, Body | None] = {}
    for t in spec.tests or []:
        file = jobpods.test_file(t.name, spec.type)
        if t.script.inline is not None:
            data[file] = t.script.inline
            continue
        ref = t.script.configMapRef
        assert ref is not None
        if ref.name not in cache:
            cache[ref.name] = await kube.get_configmap(run.namespace, ref.name)
        cm = cache[ref.name] or {}
        if ref.key in (cm.get("data") or {}):
            data[file] = cm["data"][ref.key]
        elif ref.key in (cm.get("binaryData") or {}):
            binary[file] = cm["binaryData"][ref.key]
        else:
            raise SuiteGone(f"ConfigMap {ref.name!r} lost its key {ref.key!r} before the job started")
    return data, binary


async def ensure_snapshot(run: RunHandle, body: Body, spec: JobRunSpec) -> None:
    """The job's own snapshot of its files (none for a git suite). Raises
    :class:`supercheck.engine.snapshot.NoSnapshot` and :class:`~supercheck.engine.snapshot.SnapshotBusy`."""
    if spec.testsFrom is not None and spec.testsFrom.git is not None:
        return
    ref = podspec.RunRef.from_body(body)
    await snap.ensure(run, jobpods.snapshot_configmap(ref, spec, *await snapshot_files(run, spec)))


async def admit(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus) -> Step:
    eng = run.eng
    s = eng.settings
    now = eng.clock.now()
    ref = podspec.RunRef.from_body(body)
    try:
        jobpods.resources(spec, ref, s)
    except podspec.ResourceBoundsError as exc:
        return await refuse(run, body, status, Reason.RESOURCES_OUT_OF_BOUNDS, str(exc))
    too_long = shares.timeout_refusal(run, spec.timeoutSeconds)
    if too_long:
        return await refuse(run, body, status, Reason.NAMESPACE_LIMIT_EXCEEDED, too_long)
    missing = await _missing(run, spec)
    suite = None
    if missing is None:
        found = await suite_of(run, spec)
        if isinstance(found, tuple):
            missing = found
        else:
            suite = found
    if missing:
        created = parse_iso(body["metadata"].get("creationTimestamp")) or now
        waited = (now - created).total_seconds()
        reason, message = missing
        if waited < s.script_ref_grace_seconds and reason != Reason.INVALID_SPEC:
            if status.reason != reason:
                await run.patch(body, {"phase": Phase.PENDING.value, "reason": reason, "message": message,
                                       "conditions": tr.set_condition(status.conditions,
                                                                      ConditionType.REFERENCES_RESOLVED, "False",
                                                                      reason, message, now)})
            return min(1.0, s.script_ref_grace_seconds - waited + 0.05)
        return await refuse(run, body, status, reason, message)
    resolved = tr.references_resolved_patch(status.conditions, now)
    if resolved:  # a reference waited for has appeared: say so before the job goes on
        body = await run.patch(body, resolved)
        status = _status(body)

    shards = jobpods.shard_count(spec, s.running_capacity, len(suite.tests) if suite else None)
    priority = shares.queue_priority(run, spec.priority)
    async with eng.gate.shared():
        result = await eng.ledger.admit(run.uid, body_ref(body), priority, shards)
        eng.wake_promoted(result.promoted)
        if result.state != AdmitState.RELEASED:
            shares.announce_priority(run, body, spec.priority, priority)
        if result.state == AdmitState.REJECTED:
            why = shares.rejection(run, "JobRun", result, await eng.ledger.avg_run_seconds())
            body = await run.patch(body, {
                "phase": Phase.REJECTED.value, "slot": None, "reason": why.reason,
                "message": why.message, "retryAfterSeconds": why.retry_after, "completedAt": iso(now),
                "result": "rejected",
                "conditions": tr.set_condition(status.conditions, ConditionType.ADMITTED, "False",
                                               why.reason, why.message, now)} | traces.fields(run, body))
            traces.admitted(run, body, "rejected")
            eng.metrics.rejections.labels(spec.type, why.reason, *run.extra_labels(body)).inc()
            announce_end(run, body, spec, _status(body))
            run.event(body, "Warning", why.reason, why.message)
            return await finished(run, body, _status(body), spec)
        if result.state == AdmitState.RELEASED:
            return 0.0 if await run.refresh() is not None else None
        tests = jobstate.initial_tests(suite.tests, result.weight) if suite else []
        listing = jobstate.progress_fields(tests) if suite else {}
        if result.state == AdmitState.QUEUED:
            try:
                await ensure_snapshot(run, body, spec)
            except snap.NoSnapshot as exc:
                return await refuse(run, body, status, exc.reason, exc.message)
            except snap.SnapshotBusy as exc:
                run.log.info("%s", exc)
                return s.service_retry_seconds  # the queue place is kept: admit is idempotent
            body = await run.patch(body, {
                "phase": Phase.QUEUED.value, "slot": SlotState.QUEUED, "slots": result.weight,
                "queueSeq": result.seq, "queuedAt": status.queuedAt or iso(now), "reason": Reason.QUEUED,
                "message": (f"waiting for {result.weight} running slot(s) at once; position {result.position} "
                            "in the queue" + shares.waiting_note(run, result)),
                **listing,
                "conditions": tr.set_condition(status.conditions, ConditionType.ADMITTED, "True", Reason.QUEUED,
                                               "admitted to the queue", now)} | traces.fields(run, body))
            traces.admitted(run, body, "queued", result.position)
            run.event(body, "Normal", EventReason.QUEUED,
                      f"{result.weight} running slot(s) are not free at once; queued at position {result.position}")
            return QUEUE_BACKSTOP_SECONDS
        return await start(run, body, spec, _status(body), result.weight, result.granted_ms, tests)


async def wait_in_queue(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus) -> Step:
    eng = run.eng
    async with eng.gate.shared():
        priority = shares.queue_priority(run, spec.priority)
        result = await eng.ledger.admit(run.uid, body_ref(body), priority, status.slots or 1)
        eng.wake_promoted(result.promoted)
        if result.state == AdmitState.RUNNING:
            # The tests listed when it was queued (from its snapshot), not the source as it is now.
            return await start(run, body, spec, status, result.weight, result.granted_ms, list(status.tests))
        if result.state == AdmitState.RELEASED:
            return 0.0 if await run.refresh() is not None else None
        if result.state == AdmitState.REJECTED:
            return await refuse(run, body, status, Reason.CAPACITY_EXCEEDED,
                                "the job's queue place was lost and the queue is full")
    return QUEUE_BACKSTOP_SECONDS


async def start(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus, shards: int, granted_ms: int,
                tests: list[TestStatus]) -> Step:
    """The slots are granted: the job's snapshot, then its shards in the status (their pods come next)."""
    eng = run.eng
    now = eng.clock.now()
    granted = datetime.fromtimestamp(granted_ms / 1000, now.tzinfo) if granted_ms else now
    try:
        await ensure_snapshot(run, body, spec)
    except snap.NoSnapshot as exc:
        return await refuse(run, body, status, exc.reason, exc.message)
    except snap.SnapshotBusy as exc:
        run.log.info("%s", exc)
        return eng.settings.service_retry_seconds  # the slots are kept: admit is idempotent
    if not tests and status.tests:
        tests = list(status.tests)
    if tests and len({t.shard for t in tests}) > shards:  # the queue granted fewer slots than it listed for
        tests = jobstate.initial_tests([jobpods.Test(t.name, t.file) for t in tests], shards)
    body = await run.patch(body, {
        "phase": Phase.RUNNING.value, "slot": SlotState.RUNNING, "slots": shards, "reason": Reason.STARTING,
        "message": f"{shards} shard(s) starting", "startedAt": status.startedAt or iso(granted),
        **jobstate.progress_fields(tests),
        "shards": jobstate.dump_shards(jobstate.initial_shards(tests, shards) if tests else
                                       [ShardStatus(index=i) for i in range(1, shards + 1)]),
        "artifacts": {"bucket": jobpods.bucket(spec),
                      "prefix": f"{run.namespace}/{run.name}/{run.uid}"},
        "conditions": tr.set_condition(status.conditions, ConditionType.ADMITTED, "True", Reason.SLOT_GRANTED,
                                       f"{shards} running slot(s) granted", now)} | traces.fields(run, body))
    if status.slot is None:  # admitted at once (not a queued job promoted, nor a step resumed)
        traces.admitted(run, body, "running")
    elif status.slot == SlotState.QUEUED:
        traces.slot_granted(run, body, granted)
    created = parse_iso(body["metadata"].get("creationTimestamp"))
    if created:
        eng.metrics.queue_wait.labels(spec.type, *run.extra_labels(body)).observe(
            max(0.0, (granted - created).total_seconds()))
    return 0.0


# ---------------------------------------------------------------- the shards


def _deadline(spec: JobRunSpec, status: JobRunStatus, run: RunHandle) -> datetime:
    started = parse_iso(status.startedAt) or run.eng.clock.now()
    return started + timedelta(seconds=jobpods.job_timeout_seconds(spec, run.eng.settings))


async def _read_log(run: RunHandle, pod: str) -> list[TestEnded] | None:
    return (await _read_runner(run, pod))[0]


async def _read_runner(run: RunHandle, pod: str) -> tuple[list[TestEnded] | None, Progress | None]:
    """What a shard's runner announced on its log: the tests that ended, and its last phase line."""
    try:
        text = await run.eng.kube.pod_log_tail(run.namespace, pod, podspec.CONTAINER_NAME, LOG_LINES, LOG_LIMIT_BYTES)
    except ApiUnavailable as exc:
        run.log.debug("runner log of %s not read: %s", pod, exc)
        return None, None
    if not text:
        return None, None
    return tests_ended(text), last_progress(text)


async def _create(run: RunHandle, pod: Body, reads: Sequence[str] = (), since: datetime | None = None) -> bool:
    """Create a pod, its upload grant first (reading ``reads``); False when one of that name (or its
    grant's Secret) from another JobRun of this name is still there. Raises
    :class:`supercheck.ports.Refused` when the API server refuses either. ``since``: when the pod's
    dispatch began (a shard's), recorded as its span once the pod is created."""
    if not await uploads.grant(run, pod, reads):
        return False
    try:
        await run.eng.kube.create(pod)
    except AlreadyExists:
        existing = await run.eng.kube.get_pod(run.namespace, pod["metadata"]["name"])
        view = pod_state.pod_view(existing) if existing else None
        return view is None or view.owner_uid == run.uid
    if since is not None:
        view = pod_state.pod_view(pod)
        traces.dispatched(run, run.body(), view.attempt or 1, since, run.eng.clock.now(), view.name, view.shard)
    run.event(run.body(), "Normal", EventReason.DISPATCHED, f"created runner pod {pod['metadata']['name']}")
    return True


async def drive(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus) -> Step:
    """A job holding its slots: its shards' pods launched, followed and retried; then the merge, the end."""
    eng = run.eng
    s = eng.settings
    now = eng.clock.now()
    ref = podspec.RunRef.from_body(body)
    tests = list(status.tests)
    shards = [sh.model_copy(deep=True) for sh in status.shards]
    if not shards:  # claimed before the shards were written (an older step): start them now
        return await start(run, body, spec, status, status.slots or 1, 0, tests)

    # The end is decided: the job timed out or a shard failed for good. Stop every pod first.
    deadline = _deadline(spec, status, run)
    failed = next((sh for sh in shards if sh.state == "Error"), None)
    if now >= deadline or failed is not None:
        live = run.live_pods()
        if live:
            # What the running shards announced so far is kept: read their logs once more first.
            for sh in shards:
                if sh.podName and any(v.name == sh.podName and not v.deleting for v in live):
                    ended = await _read_log(run, sh.podName)
                    if ended:
                        tests = jobstate.apply_ended(tests, sh.index, ended)
            fields = jobstate.progress_fields(tests)
            if patch_changes(status, fields):
                body = await run.patch(body, fields)
                status = _status(body)
        if await stop_live_pods(run):
            return 1.0
        if now >= deadline:
            _trace_stopped(run, body, shards, FailureClass.TIMEOUT.value, "the job exceeded its timeout")
            budget = jobpods.job_timeout_seconds(spec, s)
            return await end(run, body, spec, status, tests, Phase.TIMED_OUT, Reason.DEADLINE_EXCEEDED,
                             f"the job exceeded its timeout of {budget}s; the tests that ended keep their "
                             "results, the others are listed as not run", FailureClass.TIMEOUT)
        assert failed is not None
        cls = failed.failureClass or FailureClass.INFRASTRUCTURE
        phase, reason = TERMINAL_FOR[cls]
        if status.reason == Reason.POD_REJECTED:  # a shard's pod was refused (said when it was)
            reason = Reason.POD_REJECTED
        _trace_stopped(run, body, shards, STOPPED, f"stopped: shard {failed.index} failed")
        return await end(run, body, spec, status, tests, phase, reason,
                         f"shard {failed.index}: {failed.message or cls.value}", cls)

    limits = jobpods.resources(spec, ref, s)
    await ensure_runner_network_policy(eng, run.namespace)
    remaining = max(1, int((deadline - now).total_seconds()))
    next_step: float = QUEUE_BACKSTOP_SECONDS
    read_due = run.progress_read_at is None or (now - run.progress_read_at).total_seconds() >= \
        s.job_progress_poll_seconds
    if read_due:
        run.progress_read_at = now
    events: list[tuple[str, str, str]] = []
    claimed = False
    refused: str | None = None  # a shard's pod was refused: the job ends
    git = spec.testsFrom is not None and spec.testsFrom.git is not None
    suite: Suite | None = None  # the snapshot's files, read when a pod is to be created

    for i, sh in enumerate(shards):
        if sh.state in jobstate.DONE_STATES:
            continue
        if sh.state == "Retrying":
            due = parse_iso(sh.nextAttemptAt)
            if due and due > now:
                next_step = min(next_step, (due - now).total_seconds())
                continue
            if any(v.live and v.shard == str(sh.index) for v in run.pods()):
                next_step = min(next_step, 1.0)
                continue  # never two pods of one shard: the next attempt waits for the last to go
        if sh.attempts == 0 or sh.state == "Retrying":
            name = jobpods.shard_pod_name(run.name, sh.index, sh.attempts + 1)
            shards[i] = sh = jobstate.claim_shard(sh, name)
            claimed = True
            continue  # the claim is written first; the pod is created in the next step
        pod = run.pod(sh.podName)
        if pod is None and sh.podName:
            fetched = await eng.kube.get_pod(run.namespace, sh.podName)
            pod = pod_state.pod_view(fetched) if fetched else None
        state = pod_state.observe(pod, seen_running=jobstate.shard_seen_running(sh))
        if state.kind == PodStateKind.ABSENT:
            if suite is None and not git:
                try:
                    snapshot = await snap.current(run)
                except snap.NoSnapshot as exc:
                    if await stop_live_pods(run):
                        return 1.0  # the other shards' pods stop first
                    return await end(run, body, spec, status, tests, Phase.ERROR, exc.reason, exc.message,
                                     FailureClass.VALIDATION)
                except snap.SnapshotBusy:
                    next_step = min(next_step, s.service_retry_seconds)
                    continue
                suite = Suite(jobpods.suite_from_keys(spec, _keys(snapshot)).layout,
                              tuple(jobpods.Test(t.name, t.file) for t in tests))
            reserved = await envguard.reserved_env_from(eng.kube, run.namespace, spec.envFrom)
            if reserved:  # checked at admission too; the sources may have changed since
                if await stop_live_pods(run):
                    return 1.0
                return await end(run, body, spec, status, tests, Phase.ERROR, Reason.INVALID_SPEC, reserved,
                                 FailureClass.VALIDATION)
            shard_pod = jobpods.shard_pod(ref, spec, suite, sh.index, len(shards), sh.attempts, remaining, s,
                                          limits, traces.pod_env(run, body, sh.attempts, str(sh.index)))
            # Dispatch began when the slots were granted (a retry: now, its launch).
            since = (parse_iso(status.startedAt) if sh.attempts == 1 else None) or now
            try:
                await _create(run, shard_pod, since=since)
            except Refused as exc:
                # The job cannot run this shard: it ends Error (its other pods are stopped first).
                message = f"the API server refused runner pod {shard_pod['metadata']['name']} ({exc.status}): {exc}"
                shards[i] = sh = jobstate.shard_ended(sh, AttemptOutcome(FailureClass.VALIDATION, None, message),
                                                      Decision(False, Phase.ERROR, Reason.POD_REJECTED), now)
                refused = f"shard {sh.index}: {message}"
                break
            next_step = min(next_step, 1.0)
            continue
        if state.kind == PodStateKind.PENDING:
            continue
        if state.kind == PodStateKind.RUNNING:
            if sh.state not in ("Running", "Uploading"):
                shards[i] = sh = jobstate.shard_running(sh, now)
                events.append(("Normal", EventReason.RUNNING, f"shard {sh.index}: runner pod {sh.podName} is running"))
            if read_due and sh.podName:
                ended, said = await _read_runner(run, sh.podName)
                if ended:
                    tests = jobstate.apply_ended(tests, sh.index, ended)
                shards[i] = sh = jobstate.shard_phase(sh, said)
            next_step = min(next_step, s.job_progress_poll_seconds)
            continue
        # The attempt ended: its tests from the log (once more, complete), then the shard's fate.
        if pod is not None and pod.live:
            await eng.kube.delete_pod(run.namespace, pod.name, grace_seconds=0)
        await uploads.revoke(run, sh.podName)
        assert state.outcome is not None
        outcome = state.outcome
        traces.attempt_over(run, body, sh.attempts, pod, outcome, now, str(sh.index))
        ended = await _read_log(run, sh.podName) if sh.podName else None
        if ended is None and outcome.result is not None:
            ended = outcome.result.tests or None
        if ended:
            tests = jobstate.apply_ended(tests, sh.index, ended)
        decision = decide(outcome.failure, jobstate.previous_failures(sh), sh.attempts,
                          s.retry_backoff_base_seconds, s.retry_backoff_max_seconds)
        shards[i] = sh = jobstate.shard_ended(sh, outcome, decision, now)
        if sh.state == "Retrying":
            # The whole shard runs again (so the merged report has every test of it): what this
            # attempt announced is replaced by what the next one does.
            tests = jobstate.reset_shard(tests, sh.index)
            eng.metrics.retries.labels(spec.type, outcome.failure.value, *run.extra_labels(body)).inc()
            events.append(("Warning", EventReason.RETRYING, f"shard {sh.index}: {sh.message}"))
            next_step = min(next_step, decision.delay_seconds)
        elif sh.state == "Error":
            next_step = 0.0

    if refused is not None:
        run.log.info("%s", refused)  # the Warning Event comes with the end, next step
        body = await run.patch(body, {"shards": jobstate.dump_shards(shards), **jobstate.progress_fields(tests),
                                      "reason": Reason.POD_REJECTED, "message": refused[:2048]})
        for event_type, event_reason, text in events:
            run.event(body, event_type, event_reason, text)
        return 0.0  # the next step stops the other shards' pods and ends the job

    all_done = all(sh.state in ("Done",) for sh in shards)
    patch: dict[str, Any] = {"shards": jobstate.dump_shards(shards), **jobstate.progress_fields(tests)}
    running = sum(1 for sh in shards if sh.state in ("Running", "Uploading"))
    if not all_done:
        patch["message"] = f"{running} of {len(shards)} shard(s) running; {patch['progressText']} tests ended"
        uploading = [sh for sh in shards if sh.state not in jobstate.DONE_STATES]
        if uploading and all(sh.state == "Uploading" for sh in uploading):
            # Every shard still at work has run its tests and is storing their files.
            patch.update(phase=Phase.UPLOADING.value, reason=Reason.UPLOADING,
                         message=f"{len(uploading)} shard(s) uploading: {uploading[0].message or ''}"[:1024])
        elif running:
            patch.update(phase=Phase.RUNNING.value, reason=Reason.RUNNING)
    if patch_changes(status, patch):
        body = await run.patch(body, patch)
    for event_type, event_reason, text in events:
        run.event(body, event_type, event_reason, text)
    if not all_done:
        if claimed:
            return 0.0  # the claims are written: create their pods now
        return max(0.0, min(next_step, (deadline - now).total_seconds() + 0.05))
    status = _status(body)
    if spec.type == "playwright" and len(shards) > 1:
        return await merge(run, body, spec, status, shards, limits)
    if spec.type == "playwright" and shards[0].report:
        # One shard: its own HTML report and JUnit XML are the job's, no merge needed.
        prefix = shards[0].report.rsplit("/report/", 1)[0]
        summary = shards[0].summary.model_dump(mode="json") if shards[0].summary else None
        body = await run.patch(body, {"artifacts": {"bucket": jobpods.bucket(spec), "prefix": prefix,
                                                    "report": shards[0].report, "junit": f"{prefix}/junit.xml"},
                                      "summary": summary})
        status = _status(body)
    verdict, why = jobstate.verdict(status.tests)
    return await end(run, body, spec, status, list(status.tests), verdict, why, _summary(status.tests))


def patch_changes(status: JobRunStatus, patch: dict[str, Any]) -> bool:
    current = status.model_dump(mode="json", exclude_none=True)
    patch = redact_fields(patch)  # as the status holds it (RunHandle.patch), or it would never be equal
    return any(current.get(k) != v for k, v in patch.items())


def _summary(tests: list[TestStatus]) -> str:
    failed = jobstate.failed_tests(tests)
    p = jobstate.tally(tests)
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        return f"{p.failed} of {p.total} tests failed: {shown}"
    return f"all {p.total} tests passed" if p.total else "no tests ran"


# ---------------------------------------------------------------- the merged report


async def merge(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus, shards: list[ShardStatus],
                limits: podspec.ResourceSet) -> Step:
    """One HTML report and one JUnit XML over every shard's blob report, by a merge pod."""
    eng = run.eng
    m = status.merge or MergeStatus()
    phase, reason = jobstate.verdict(status.tests)
    if m.state in ("Done", "Error"):
        note = "" if m.state == "Done" else f" (no merged report: {m.message})"
        return await end(run, body, spec, status, list(status.tests), phase, reason, _summary(status.tests) + note)
    if m.attempts == 0:
        name = jobpods.merge_pod_name(run.name, 1)
        await run.patch(body, {"merge": {"attempts": 1, "podName": name, "state": "Pending"},
                               "phase": Phase.UPLOADING.value, "reason": Reason.UPLOADING,
                               "message": "every shard ended; merging their reports"})
        return 0.0
    pod = run.pod(m.podName)
    if pod is None and m.podName:
        fetched = await eng.kube.get_pod(run.namespace, m.podName)
        pod = pod_state.pod_view(fetched) if fetched else None
    state = pod_state.observe(pod, seen_running=m.state == "Running")
    ref = podspec.RunRef.from_body(body)
    if state.kind == PodStateKind.ABSENT:
        prefixes = [shard_prefix(run.namespace, run.name, run.uid, sh.index, sh.attempts) for sh in shards]
        merge_pod = jobpods.merge_pod(ref, spec, prefixes, m.attempts, eng.settings, limits,
                                      traces.pod_env(run, body, m.attempts, MERGE_SHARD))
        try:
            await _create(run, merge_pod,
                          jobpods.merge_reads([(sh.index, p) for sh, p in zip(shards, prefixes, strict=True)]))
        except Refused as exc:
            # The tests ran and keep their verdict; only the merged report is missing.
            said = f"the API server refused merge pod {merge_pod['metadata']['name']} ({exc.status}): {exc}"
            await run.patch(body, {"merge": {**m.model_dump(mode="json", exclude_none=True), "state": "Error",
                                             "message": said[:1024]}})
            return 0.0
        return WAIT
    if state.kind == PodStateKind.PENDING:
        return QUEUE_BACKSTOP_SECONDS
    if state.kind == PodStateKind.RUNNING:
        if m.state != "Running":
            await run.patch(body, {"merge": {**m.model_dump(mode="json", exclude_none=True), "state": "Running"}})
        return QUEUE_BACKSTOP_SECONDS
    assert state.outcome is not None
    await uploads.revoke(run, m.podName)  # the merge pod has ended
    out = state.outcome
    traces.attempt_over(run, body, m.attempts, pod, out, eng.clock.now(), MERGE_SHARD)
    if out.failure == FailureClass.NONE:
        artifacts = out.result.artifacts if out.result else None
        patch: dict[str, Any] = {"merge": {**m.model_dump(mode="json", exclude_none=True), "state": "Done",
                                           "message": (out.message or "")[:1024]}}
        if out.result is not None and out.result.summary is not None:
            patch["summary"] = out.result.summary.model_dump(mode="json")
        if artifacts is not None:
            patch["artifacts"] = {"bucket": artifacts.bucket, "prefix": artifacts.prefix,
                                  **({"report": artifacts.report} if artifacts.report else {}),
                                  "junit": f"{artifacts.prefix}/junit.xml"}
        await run.patch(body, patch)
        return 0.0
    if m.attempts < MERGE_TRIES and out.failure != FailureClass.VALIDATION:
        name = jobpods.merge_pod_name(run.name, m.attempts + 1)
        if pod is not None and pod.live:
            await eng.kube.delete_pod(run.namespace, pod.name, grace_seconds=0)
        await run.patch(body, {"merge": {"attempts": m.attempts + 1, "podName": name, "state": "Pending",
                                         "message": f"merge attempt {m.attempts} failed: {out.message}"[:1024]}})
        return eng.settings.retry_backoff_base_seconds
    await run.patch(body, {"merge": {**m.model_dump(mode="json", exclude_none=True), "state": "Error",
                                     "message": (out.message or out.failure.value)[:1024]}})
    return 0.0


# ---------------------------------------------------------------- the end


async def end(run: RunHandle, body: Body, spec: JobRunSpec, status: JobRunStatus, tests: list[TestStatus],
              phase: Phase, reason: str, message: str, failure: FailureClass | None = None) -> Step:
    eng = run.eng
    async with eng.gate.shared():
        body = await run.patch(body, jobstate.terminal_patch(status, tests, phase, reason, message,
                                                             eng.clock.now(), failure))
        final = _status(body)
        await release(run, final)
    announce_end(run, body, spec, final)
    return await finished(run, body, final, spec)


async def release(run: RunHandle, status: JobRunStatus) -> None:
    started, ended = parse_iso(status.startedAt), parse_iso(status.completedAt)
    duration_ms = int((ended - started).total_seconds() * 1000) if started and ended else None
    result = await run.eng.ledger.release(run.uid, duration_ms)
    run.eng.wake_promoted(result.promoted)


def announce_end(run: RunHandle, body: Body, spec: JobRunSpec | None, status: JobRunStatus) -> None:
    phase = status.phase or Phase.ERROR
    kind = "Normal" if phase == Phase.PASSED else "Warning"
    text = f"{phase.value}: {status.result or ''}; {status.message or ''}".strip("; ")
    run.event(body, kind, status.reason or phase.value, text)
    m = run.eng.metrics
    test_type = spec.type if spec else str((body.get("spec") or {}).get("type", ""))
    extra = run.extra_labels(body)
    m.jobs.labels(test_type, phase.value, *extra).inc()
    started, ended = parse_iso(status.startedAt), parse_iso(status.completedAt)
    if started and ended:
        m.job_duration.labels(test_type, phase.value, *extra).observe(max(0.0, (ended - started).total_seconds()))
    for t in status.tests:
        if t.outcome is not None:
            m.job_tests.labels(test_type, t.outcome.value, *extra).inc()
    traces.run_ended(run, body)


STOPPED = "stopped"  # an attempt span's failure class when the operator stopped its pod


def _trace_stopped(run: RunHandle, body: Body, shards: Sequence[ShardStatus], why: str, message: str) -> None:
    """The attempts the job's end stopped (their pods seen running, not ended): their spans end now."""
    now = run.eng.clock.now()
    for sh in shards:
        if sh.state not in ("Running", "Uploading") or not sh.podName:
            continue
        pod = run.pod(sh.podName)
        started = parse_iso(pod.created_at if pod is not None else None) or parse_iso(next(
            (h.startedAt for h in sh.attemptHistory if h.attempt == sh.attempts), None))
        traces.attempt_stopped(run, body, sh.attempts, sh.podName, started, now, why, message, str(sh.index))


async def refuse(run: RunHandle, body: Body, status: JobRunStatus, reason: str, message: str) -> Step:
    """The job will not run: Error before any pod, no retry."""
    eng = run.eng
    async with eng.gate.shared():
        body = await run.patch(body, jobstate.terminal_patch(status, status.tests, Phase.ERROR, reason, message,
                                                             eng.clock.now(), FailureClass.VALIDATION)
                               | traces.fields(run, body))
        final = _status(body)
        await release(run, final)
    try:
        spec: JobRunSpec | None = JobRunSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        spec = None
    eng.metrics.rejections.labels((body.get("spec") or {}).get("type", ""), reason, *run.extra_labels(body)).inc()
    announce_end(run, body, spec, final)
    return await finished(run, body, final, spec)


async def finished(run: RunHandle, body: Body, status: JobRunStatus, spec: JobRunSpec | None) -> Step:
    """After the terminal phase: the rows owed to PostgreSQL, the webhooks, then the TTL."""
    from supercheck.engine import jobresults

    return await jobresults.finished(run, body, status, spec)


# ---------------------------------------------------------------- cancellation


async def cancel(run: RunHandle) -> None:
    """The JobRun is being deleted: stop every shard, record it Cancelled, release its slots.

    Raises :class:`supercheck.engine.testrun.StillStopping` while a pod is still there."""
    from supercheck.engine import jobresults
    from supercheck.engine.testrun import StillStopping

    eng = run.eng
    eng.cancelling.add(run.uid)
    fresh = await run.refresh() or dict(run.live)
    status = _status(fresh)
    if status.phase is None or not status.phase.terminal:
        if await stop_live_pods(run):
            raise StillStopping(f"waiting for runner pod(s) {', '.join(v.name for v in run.live_pods())} to stop")
        _trace_stopped(run, fresh, status.shards, STOPPED, "stopped: the JobRun was deleted")
        was = status.phase.value if status.phase else "Pending"
        async with eng.gate.shared():
            fresh = await run.patch(fresh, jobstate.terminal_patch(
                status, status.tests, Phase.CANCELLED, Reason.CANCELLED, f"the JobRun was deleted while {was}",
                eng.clock.now()))
            status = _status(fresh)
            await release(run, status)
        announce_end(run, fresh, None, status)
        run.event(fresh, "Normal", EventReason.CANCELLED, status.message or "cancelled")
    else:
        await release(run, status)
    await jobresults.record(run, fresh, status, raise_errors=True)
