"""One TestRun's lifecycle, step by step: the imperative shell around :mod:`supercheck.lifecycle`.

A :class:`RunDriver` is driven by the run's Kopf daemon. Each :meth:`step` reads the newest
known state (CR status + the runner pod from Kopf's index), asks the pure core what to do,
does it, and says how long to wait before the next step (``WAIT`` = until woken by an event).
All state is in the CR status, so a restarted operator resumes where it stopped; every write
is idempotent (deterministic names, per-uid ledger scripts, resourceVersion-checked patches).
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from supercheck import lifecycle as lc
from supercheck import podspec
from supercheck.kube import AlreadyExists, ApiUnavailable, Conflict
from supercheck.ledger import LedgerUnavailable, NeedsRebuild
from supercheck.models import Phase, TestRunSpec, TestRunStatus
from supercheck.runtime import Runtime, body_ref
from supercheck.store import StoreUnavailable

log = logging.getLogger(__name__)

WAIT = math.inf  # until an event wakes the run
QUEUE_BACKSTOP_SECONDS = 30.0  # a queued run re-checks the ledger this often even without events
RUNNING_BACKSTOP_SECONDS = 60.0


def _rv(body: Any) -> int:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


class RunDriver:
    def __init__(self, rt: Runtime, body: Any, logger: logging.Logger | None = None):
        self.rt = rt
        self.live = body  # Kopf's live view, refreshed by the watch
        self.latest: dict | None = None  # our own newest write, until the watch catches up
        self.logger = logger or log
        meta = body["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.recorded_start: set[int] = set()

    # ------------------------------------------------------------------ state
    def body(self) -> dict:
        live = dict(self.live)
        if self.latest is not None and _rv(self.latest) > _rv(live):
            return self.latest
        return live

    async def refresh(self) -> dict | None:
        fresh = await self.rt.kube.get_testrun(self.namespace, self.name)
        if fresh is not None and fresh["metadata"]["uid"] == self.uid:
            self.latest = fresh
            return fresh
        return None

    async def patch(self, body: dict, status_patch: dict) -> dict:
        """A status merge patch, applied only if nobody changed the TestRun's spec or status since we read it.

        A change of metadata alone (Kopf's finalizer, annotations) does not invalidate a decision
        taken on the status: the patch is retried once against the fresh resourceVersion.
        """
        rv = body["metadata"].get("resourceVersion")
        try:
            updated = await self.rt.kube.patch_status(self.namespace, self.name, status_patch, rv)
        except Conflict:
            fresh = await self.refresh()
            if fresh is None or fresh.get("status") != body.get("status") or fresh.get("spec") != body.get("spec"):
                raise
            updated = await self.rt.kube.patch_status(self.namespace, self.name, status_patch,
                                                      fresh["metadata"].get("resourceVersion"))
        self.latest = updated
        return updated

    def event(self, body: dict, type_: str, reason: str, message: str) -> None:
        try:
            kopf.event(body, type=type_, reason=reason, message=message[:1024])
        except LookupError:  # outside Kopf's context (unit tests): no Events
            pass

    # ------------------------------------------------------------------ the step
    async def step(self) -> float | None:
        """Advance the run; seconds until the next step, WAIT, or None when there is nothing left to do."""
        body = self.body()
        if body["metadata"].get("deletionTimestamp") or self.uid in self.rt.cancelling:
            return None
        status = TestRunStatus.model_validate(body.get("status") or {})
        try:
            spec = TestRunSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            if status.phase is not None and status.phase.terminal:
                return await self.finished(body, status, None)
            return await self.refuse(body, status, "InvalidSpec", f"the spec is invalid: {exc}")
        try:
            if status.phase is not None and status.phase.terminal:
                return await self.finished(body, status, spec)
            if status.slot is None:
                return await self.admit(body, spec, status)
            if status.slot == "queued":
                return await self.wait_in_queue(body, spec, status)
            return await self.run(body, spec, status)
        except Conflict:
            await self.refresh()
            return 0.0
        except NeedsRebuild:
            await self.rt.rebuild_ledger()
            return 0.0
        except LedgerUnavailable as exc:
            self.rt.metrics.service_errors.labels("redis").inc()
            return await self.ledger_down(body, status, exc)
        except ApiUnavailable as exc:
            self.rt.metrics.service_errors.labels("kubernetes").inc()
            self.logger.warning("API server unavailable: %s", exc)
            return self.rt.settings.service_retry_seconds

    # ------------------------------------------------------------------ admission
    async def admit(self, body: dict, spec: TestRunSpec, status: TestRunStatus) -> float | None:
        now = lc.now_utc()
        try:
            podspec.resolve_resources(spec, self.rt.settings)
        except podspec.ResourceBoundsError as exc:
            return await self.refuse(body, status, "ResourcesOutOfBounds", str(exc))
        missing = await self.missing_references(spec)
        if missing:
            created = lc.parse_iso(body["metadata"].get("creationTimestamp")) or now
            waited = (now - created).total_seconds()
            reason, message = missing
            if waited < self.rt.settings.script_ref_grace_seconds:
                if not lc.has_condition(status, "ReferencesResolved", "False", reason):
                    await self.patch(body, {
                        "phase": Phase.PENDING.value, "reason": reason, "message": message,
                        "conditions": lc.set_condition(status.conditions, "ReferencesResolved", "False", reason,
                                                       message, now)})
                return min(1.0, self.rt.settings.script_ref_grace_seconds - waited + 0.05)
            return await self.refuse(body, status, reason, message)

        async with self.rt.gate.shared():
            result = await self.rt.ledger.admit(self.uid, body_ref(body), spec.priority)
            self.rt.wake_promoted(result.promoted)
            if result.state == "rejected":
                avg = await self.rt.ledger.avg_run_seconds()
                retry_after = lc.retry_after_seconds(self.rt.settings.running_capacity, avg)
                patch = lc.rejected_patch(status, retry_after, result.running, result.queued,
                                          self.rt.settings.running_capacity, self.rt.settings.queued_capacity, now)
                body = await self.patch(body, patch)
                m = self.rt.metrics
                m.rejections.labels(spec.type, "CapacityExceeded", *self._extra(body)).inc()
                m.runs.labels(spec.type, Phase.REJECTED.value, *self._extra(body)).inc()
                self.event(body, "Warning", "CapacityExceeded", patch["message"])
                return await self.finished(body, TestRunStatus.model_validate(body["status"]), spec)
            if result.state == "released":
                # The ledger says this run already ended; the cluster must say so too, soon.
                fresh = await self.refresh()
                return 0.0 if fresh is not None else None
            if result.state == "queued":
                await self.ensure_script(body, spec)
                patch = lc.queued_patch(status, result.seq, result.position, now)
                body = await self.patch(body, patch)
                self.event(body, "Normal", "Queued",
                           f"all {self.rt.settings.running_capacity} running slots are taken; "
                           f"queued at position {result.position}")
                return QUEUE_BACKSTOP_SECONDS
            return await self.launch(body, spec, status, 1, result.granted_ms)

    async def wait_in_queue(self, body: dict, spec: TestRunSpec, status: TestRunStatus) -> float | None:
        async with self.rt.gate.shared():
            result = await self.rt.ledger.admit(self.uid, body_ref(body), spec.priority)
            self.rt.wake_promoted(result.promoted)
            if result.state == "running":
                return await self.launch(body, spec, status, 1, result.granted_ms)
            if result.state == "released":
                return 0.0 if await self.refresh() is not None else None
            if result.state == "rejected":
                # The ledger lost the place and the queue is full now: the run cannot be kept.
                self.logger.warning("queue place lost and the queue is full; the run is rejected")
                patch = lc.rejected_patch(status, 1, result.running, result.queued,
                                          self.rt.settings.running_capacity, self.rt.settings.queued_capacity,
                                          lc.now_utc())
                body = await self.patch(body, patch)
                self.event(body, "Warning", "CapacityExceeded", patch["message"])
                return 0.0
        return QUEUE_BACKSTOP_SECONDS

    async def ledger_down(self, body: dict, status: TestRunStatus, exc: Exception) -> float:
        """Redis unreachable: nothing is admitted on a guess; the run waits and says why."""
        self.logger.warning("%s", exc)
        if status.slot is None and not (status.phase and status.phase.terminal) and \
                not lc.has_condition(status, "Admitted", "False", "LedgerUnavailable"):
            message = f"waiting for the capacity ledger: {exc}; the run is admitted when Redis answers again"
            try:
                await self.patch(body, {
                    "phase": Phase.PENDING.value, "reason": "LedgerUnavailable", "message": message,
                    "conditions": lc.set_condition(status.conditions, "Admitted", "False", "LedgerUnavailable",
                                                   message, lc.now_utc())})
                self.event(body, "Warning", "LedgerUnavailable", message)
            except (Conflict, ApiUnavailable):
                pass
        return self.rt.settings.service_retry_seconds

    async def missing_references(self, spec: TestRunSpec) -> tuple[str, str] | None:
        for kind, name, key, where in podspec.required_references(spec):
            getter = self.rt.kube.get_configmap if kind == "ConfigMap" else self.rt.kube.get_secret
            obj = await getter(self.namespace, name)
            if obj is None:
                return f"{kind}NotFound", (f"{kind} {name!r} referenced by {where} was not found in namespace "
                                           f"{self.namespace!r}; create it or fix the reference")
            if key is not None:
                data = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
                if key not in data:
                    return "KeyNotFound", (f"{kind} {name!r} referenced by {where} has no key {key!r} "
                                           f"(it has: {', '.join(sorted(data)) or 'no keys'})")
        return None

    async def script_text(self, spec: TestRunSpec) -> str:
        if spec.script.inline is not None:
            return spec.script.inline
        ref = spec.script.configMapRef
        cm = await self.rt.kube.get_configmap(self.namespace, ref.name)
        data = (cm or {}).get("data") or {}
        if ref.key not in data:
            raise _ScriptGone(f"ConfigMap {ref.name!r} or its key {ref.key!r} disappeared before the run started")
        return data[ref.key]

    async def ensure_script(self, body: dict, spec: TestRunSpec) -> None:
        run = podspec.RunRef.from_body(body)
        cm = podspec.script_configmap(run, spec, await self.script_text(spec))
        try:
            await self.rt.kube.create(cm)
        except AlreadyExists:
            pass

    # ------------------------------------------------------------------ launching attempts
    async def launch(self, body: dict, spec: TestRunSpec, status: TestRunStatus, attempt: int,
                     granted_ms: int = 0) -> float | None:
        """Take attempt N in the status (so it is never launched twice), then create its pod."""
        now = lc.now_utc()
        granted = datetime.fromtimestamp(granted_ms / 1000, now.tzinfo) if granted_ms else None
        name = podspec.pod_name(self.name, attempt)
        claim = self.patch(body, lc.claim_attempt_patch(status, attempt, name, granted, now))
        if attempt == 1 and status.slot != "queued":
            # Admitted straight away: the script ConfigMap is written beside the claim, not after it
            # (a queued run wrote it while it waited).
            script = asyncio.ensure_future(self.ensure_script(body, spec))
            try:
                body = await claim
            finally:
                try:
                    await script
                except _ScriptGone as exc:
                    return await self.refuse(self.body(), TestRunStatus.model_validate(self.body().get("status") or {}),
                                             "ConfigMapNotFound", str(exc))
        else:
            body = await claim
        if attempt == 1:
            created = lc.parse_iso(body["metadata"].get("creationTimestamp"))
            if created and granted:
                self.rt.metrics.queue_wait.labels(spec.type, *self._extra(body)).observe(
                    max(0.0, (granted - created).total_seconds()))
        return await self.create_pod(body, spec, attempt, granted or now)

    async def create_pod(self, body: dict, spec: TestRunSpec, attempt: int, since: datetime) -> float:
        run = podspec.RunRef.from_body(body)
        secret = await self.rt.ensure_s3_secret(self.namespace)
        resources = podspec.resolve_resources(spec, self.rt.settings)
        pod = podspec.runner_pod(run, spec, attempt, self.rt.settings, resources, secret)
        try:
            await self.rt.kube.create(pod)
        except AlreadyExists:
            existing = await self.rt.kube.get_pod(self.namespace, pod["metadata"]["name"])
            view = lc.pod_view(existing) if existing else None
            if view is not None and view.owner_uid != self.uid:
                self.logger.warning("pod %s belongs to another TestRun of this name; waiting for it to go",
                                    view.name)
                return self.rt.settings.service_retry_seconds
            return WAIT
        self.rt.metrics.dispatch_latency.observe(max(0.0, (lc.now_utc() - since).total_seconds()))
        log.debug("timing: %s pod created %s (slot granted %s)", self.name, lc.iso(lc.now_utc()), lc.iso(since))
        self.event(body, "Normal", "Dispatched", f"attempt {attempt}: created runner pod {pod['metadata']['name']}")
        return WAIT

    def current_pod(self, status: TestRunStatus) -> lc.PodView | None:
        for view in self.rt.pods_by_owner(self.uid):
            if view.name == status.podName:
                return view
        return None

    async def run(self, body: dict, spec: TestRunSpec, status: TestRunStatus) -> float | None:
        now = lc.now_utc()
        if status.attempts == 0:
            async with self.rt.gate.shared():
                return await self.launch(body, spec, status, 1)
        rec = lc.current_attempt(status)
        if rec is not None and rec.completedAt:
            due = lc.parse_iso(status.nextAttemptAt)
            if due and due > now:
                return (due - now).total_seconds()
            if await self.stop_live_pods():
                return WAIT  # never two pods of one run: the next attempt waits for the last to go
            async with self.rt.gate.shared():
                return await self.launch(body, spec, status, status.attempts + 1)

        pod = self.current_pod(status)
        seen_running = lc.attempt_seen_running(status)
        if pod is None:
            # The index may lag our own create; ask the API server before believing a pod is gone.
            fetched = await self.rt.kube.get_pod(self.namespace, status.podName)
            pod = lc.pod_view(fetched) if fetched else None
        state = lc.observe(pod, seen_running=seen_running)
        if state.kind == "absent":
            return await self.create_pod(body, spec, status.attempts, now)
        if state.kind == "pending":
            return self._pending_backstop(pod, spec, now)
        if state.kind == "running":
            if status.phase != Phase.RUNNING or not seen_running:
                body = await self.patch(body, lc.running_patch(status, pod, now))
                status = TestRunStatus.model_validate(body["status"])
                self.event(body, "Normal", "Running", f"attempt {status.attempts}: runner pod {pod.name} is running")
                await self.record_start(body, status)
            return self._running_backstop(pod, spec, status, now)
        if pod is not None and pod.live:
            # Ended while its container never ran (a configuration or image error): remove it so
            # it holds no node resources and never starts late.
            await self.rt.kube.delete_pod(self.namespace, pod.name, grace_seconds=0)
        return await self.attempt_ended(body, spec, status, state.outcome)

    async def stop_live_pods(self) -> bool:
        """Delete any live pod of this run; True while one is still there."""
        live = [v for v in self.rt.pods_by_owner(self.uid) if v.live]
        for v in live:
            if not v.deleting:
                await self.rt.kube.delete_pod(self.namespace, v.name, grace_seconds=0)
        return bool(live)

    def _pending_backstop(self, pod: lc.PodView | None, spec: TestRunSpec, now: datetime) -> float:
        # Pod events drive the run; the backstop only re-checks if an event was somehow missed.
        return RUNNING_BACKSTOP_SECONDS

    def _running_backstop(self, pod: lc.PodView, spec: TestRunSpec, status: TestRunStatus, now: datetime) -> float:
        return RUNNING_BACKSTOP_SECONDS

    async def attempt_ended(self, body: dict, spec: TestRunSpec, status: TestRunStatus,
                            outcome: lc.AttemptOutcome) -> float | None:
        s = self.rt.settings
        decision = lc.decide(outcome.failure, lc.previous_failures(status), status.attempts,
                             s.retry_backoff_base_seconds, s.retry_backoff_max_seconds)
        now = lc.now_utc()
        if decision.retry:
            patch = lc.retry_patch(status, outcome, decision, now)
            self.logger.warning("%s", patch["message"])
            body = await self.patch(body, patch)
            self.rt.metrics.retries.labels(spec.type, outcome.failure.value, *self._extra(body)).inc()
            self.event(body, "Warning", "Retrying", patch["message"])
            return decision.delay_seconds
        async with self.rt.gate.shared():
            patch = lc.terminal_patch(status, outcome, decision, now)
            body = await self.patch(body, patch)
            final = TestRunStatus.model_validate(body["status"])
            await self.release(final)
        log.debug("timing: %s ended: observed %s, released %s", self.name, lc.iso(now), lc.iso(lc.now_utc()))
        self.announce_end(body, spec, final)
        return await self.finished(body, final, spec)

    async def release(self, status: TestRunStatus) -> None:
        started = lc.parse_iso(status.startedAt)
        ended = lc.parse_iso(status.completedAt)
        duration_ms = int((ended - started).total_seconds() * 1000) if started and ended else None
        result = await self.rt.ledger.release(self.uid, duration_ms)
        self.rt.wake_promoted(result.promoted)

    def announce_end(self, body: dict, spec: TestRunSpec, status: TestRunStatus) -> None:
        phase = status.phase
        m = self.rt.metrics
        m.runs.labels(spec.type, phase.value, *self._extra(body)).inc()
        started, ended = lc.parse_iso(status.startedAt), lc.parse_iso(status.completedAt)
        if started and ended:
            m.run_duration.labels(spec.type, phase.value, *self._extra(body)).observe(
                max(0.0, (ended - started).total_seconds()))
        kind = "Normal" if phase in (Phase.PASSED,) else "Warning"
        text = f"{phase.value}: {status.result or ''}; {status.message or ''}".strip("; ")
        self.event(body, kind, status.reason or phase.value, text)

    async def refuse(self, body: dict, status: TestRunStatus, reason: str, message: str) -> float | None:
        """The operator will not run this TestRun: Error before any pod, no retry."""
        spec_type = (body.get("spec") or {}).get("type", "")
        async with self.rt.gate.shared():
            body = await self.patch(body, lc.error_before_pod_patch(status, reason, message, lc.now_utc()))
            final = TestRunStatus.model_validate(body["status"])
            await self.release(final)
        self.rt.metrics.rejections.labels(spec_type, reason, *self._extra(body)).inc()
        self.rt.metrics.runs.labels(spec_type, Phase.ERROR.value, *self._extra(body)).inc()
        self.event(body, "Warning", reason, message)
        try:
            spec = TestRunSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            spec = None
        return await self.finished(body, final, spec)

    # ------------------------------------------------------------------ after the end
    async def record_start(self, body: dict, status: TestRunStatus) -> None:
        if status.attempts in self.recorded_start:
            return
        try:
            await self.rt.store.upsert([lc.start_row(body, status)])
            self.recorded_start.add(status.attempts)
        except StoreUnavailable as exc:
            self.logger.info("provisional row not written (the final one will be): %s", exc)

    async def finished(self, body: dict, status: TestRunStatus, spec: TestRunSpec | None) -> float | None:
        rows = lc.rows_to_record(body, status)
        if rows and self.rt.store.enabled:
            try:
                await self.rt.store.upsert(rows)
            except StoreUnavailable as exc:
                self.rt.metrics.service_errors.labels("postgres").inc()
                self.rt.metrics.results_waiting(self.uid, True)
                if not lc.has_condition(status, "ResultsRecorded", "False", "DatabaseUnavailable"):
                    message = f"{exc}; the rows are written when it returns (the status holds the result)"
                    await self.patch(body, {"conditions": lc.set_condition(
                        status.conditions, "ResultsRecorded", "False", "DatabaseUnavailable", message,
                        lc.now_utc())})
                    self.event(body, "Warning", "DatabaseUnavailable", message)
                return self.rt.settings.service_retry_seconds
            recorded = sorted(set(status.recorded) | {r.attempt for r in rows})
            body = await self.patch(body, {
                "recorded": recorded,
                "conditions": lc.set_condition(status.conditions, "ResultsRecorded", "True", "Recorded",
                                               f"{len(recorded)} row(s) in PostgreSQL table runs", lc.now_utc())})
            self.rt.metrics.results_waiting(self.uid, False)
        ttl = spec.ttlSecondsAfterFinished if spec is not None else None
        if ttl is not None:
            ended = lc.parse_iso(status.completedAt) or lc.now_utc()
            left = ended.timestamp() + ttl - lc.now_utc().timestamp()
            if left > 0:
                return left
            self.logger.info("ttlSecondsAfterFinished=%d passed; deleting the TestRun", ttl)
            await self.rt.kube.delete_testrun(self.namespace, self.name, self.uid)
        return None

    def _extra(self, body: dict) -> list[str]:
        return list(self.rt.metrics.extra_labels(body["metadata"].get("labels")).values())


class _ScriptGone(Exception):
    pass
