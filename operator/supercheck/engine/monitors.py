"""The Monitor engine: one :class:`MonitorHandle` per Monitor, stepped by its Kopf daemon
(:mod:`supercheck.monitor_handlers`).

A step: read the spec; when a check is due, make it — an HTTP request or a TCP connect here, under one
of the operator's check slots (:class:`supercheck.checks.Checker`), or a TestRun for a synthetic check —
and record it (:func:`supercheck.monitoring.record_check`): an Event when the state changes, the
webhooks when a notification is due, a ``monitor_results`` row, the metrics, and the status when the
write policy says so (:func:`supercheck.monitoring.write_due`). A step answers the seconds until the
next one (the next due time); a change of a synthetic check's TestRun or of the spec wakes it earlier.

The in-memory status is the truth while the daemon runs (it starts from the object's status, so a
restarted operator resumes: counters, state, what the webhooks were told, the synthetic run under way).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from supercheck import monitoring as mt
from supercheck import monitorruns, notify
from supercheck.checks import Checker
from supercheck.clock import human_duration, iso, parse_iso
from supercheck.engine.context import Engine
from supercheck.models import Notification, SecretKeyRef
from supercheck.monitormodels import DOWN, UP, HttpCheck, MonitorNotifyTarget, MonitorSpec, MonitorStatus
from supercheck.monitorresults import MonitorResultRow
from supercheck.ports import ApiUnavailable, Conflict, Refused
from supercheck.redact import redact, redact_fields
from supercheck.vocabulary import LABEL_MONITOR, MONITOR_KIND, MONITORS, TESTRUNS, EventReason

log = logging.getLogger(__name__)

SYNTHETIC = ("playwright", "k6")
# A timer may wake a little before its time (asyncio runs those within its clock's resolution), and the
# fake clock's microseconds round: a due time this close counts as reached.
DUE_TOLERANCE_SECONDS = 0.005


class ResultSink(Protocol):
    """Where a check's row goes (:class:`supercheck.monitorresults.MonitorResults`)."""

    def add(self, row: MonitorResultRow) -> None: ...


@dataclass
class Monitors:
    """What the operator's monitors share: the engine (settings, ports, clock, metrics, Events), the
    checker (session, check slots), the rows' writer, and each daemon's wake-up."""

    eng: Engine
    checker: Checker
    results: ResultSink

    # Each daemon's wake-up is the Engine's (one registry for the operator), keyed by the monitor's uid.
    @staticmethod
    def _key(uid: str) -> str:
        return f"{MONITOR_KIND}:{uid}"

    def wake_event(self, uid: str) -> asyncio.Event:
        return self.eng.wake_event(self._key(uid))

    def wake(self, uid: str | None) -> None:
        if uid:
            self.eng.wake(self._key(uid))

    def forget(self, uid: str) -> None:
        self.eng.wakeups.pop(self._key(uid), None)


def parse_status(raw: Mapping[str, Any] | None) -> MonitorStatus:
    try:
        return MonitorStatus.model_validate(dict(raw or {}))
    except ValidationError:  # written by something else: start again rather than stop
        log.warning("a Monitor's status could not be read; starting from an empty one")
        return MonitorStatus()


async def secret_value(eng: Engine, namespace: str, ref: SecretKeyRef) -> tuple[str | None, str | None]:
    """A key of a Secret: (value, None), or (None, why not) — (None, None) when it is optional and absent."""
    secret = await eng.kube.get_secret(namespace, ref.name)
    if secret is None:
        return None, None if ref.optional else f"Secret {ref.name} not found"
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        return None, None if ref.optional else f"Secret {ref.name} has no key {ref.key}"
    return base64.b64decode(raw).decode("utf-8", "replace").strip(), None


class MonitorHandle:
    """One Monitor as its daemon holds it. ``live`` is Kopf's view of the object (updated by the watch)."""

    def __init__(self, mons: Monitors, body: Mapping[str, Any],
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.mons = mons
        self.eng = mons.eng
        self.live = body
        self.log: logging.Logger | logging.LoggerAdapter[Any] = logger or log
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        raw = body.get("status")
        now = self.eng.clock.now()
        self.written: MonitorStatus | None = parse_status(raw) if raw else None  # as the API server has it
        self.written_at: datetime | None = now if raw else None
        self.status = mt.initial_status(parse_status(raw), now)
        self.next_due: float | None = None
        self.interval: float | None = None
        self.pending_run: str | None = self.status.lastRun  # the synthetic check under way, if any
        self.run_from_status = self.pending_run is not None  # not seen yet: maybe recorded before a restart
        self.last_change: mt.Change | None = None
        self.kind: str | None = None
        self._headers: tuple[tuple[Any, ...], float, dict[str, str] | str] | None = None  # key, until, value

    # --- what the daemon sees
    def body(self) -> dict[str, Any]:
        return dict(self.live)

    def generation(self) -> int | None:
        gen = self.live["metadata"].get("generation")
        return int(gen) if gen is not None else None

    # --- writing
    async def save(self, force: bool = False) -> bool:
        """Write the status when the policy says so (or ``force``); False when the API server is away
        (the next step tries again)."""
        now = self.eng.clock.now()
        if not force and not mt.write_due(self.written, self.status, self.written_at, now,
                                          self.eng.settings.monitor_status_refresh_seconds):
            return True
        patch = redact_fields(mt.status_patch(self.status))
        try:
            await self.eng.kube.patch_status(self.namespace, self.name, patch, None, MONITORS)
        except ApiUnavailable as exc:
            self.log.warning("Monitor status not written (tried again): %s", exc)
            return False
        except Conflict:  # the Monitor is gone: its daemon is being stopped
            return True
        self.written, self.written_at = self.status.model_copy(), now  # (statuses are replaced, never changed)
        return True

    async def flush(self) -> None:
        """Write what the policy held back (the daemon stops: an operator restart, a new leader)."""
        if self.written is None or self.written != self.status:
            await self.save(force=True)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.eng.events.post(self.body(), type_, reason, redact(message)[:1024])

    # --- metrics
    def show_state(self) -> None:
        gauge = self.eng.metrics.monitor_up
        if self.status.state in (UP, DOWN):
            gauge.labels(self.namespace, self.name).set(1 if self.status.state == UP else 0)
        else:
            self.hide_state()

    def hide_state(self) -> None:
        try:
            self.eng.metrics.monitor_up.remove(self.namespace, self.name)
        except KeyError:
            pass

    # --- headers from Secrets (cached for SUPERCHECK_MONITOR_STATUS_REFRESH_SECONDS: a Secret read per
    # check of every monitor would be 100 API reads a second for 1,000 monitors at 10 s)
    async def headers(self, check: HttpCheck) -> dict[str, str] | str:
        """The request's headers, or why the check cannot be made (a Secret or key missing)."""
        key = tuple((h.name, h.value, h.valueFrom.secretKeyRef.model_dump_json() if h.valueFrom else None)
                    for h in check.headers)
        if self._headers is not None and self._headers[0] == key and time.monotonic() < self._headers[1]:
            return self._headers[2]
        out: dict[str, str] | str = {}
        found: dict[str, str] = {}
        for h in check.headers:
            if h.value is not None:
                found[h.name] = h.value
                continue
            assert h.valueFrom is not None
            value, why = await secret_value(self.eng, self.namespace, h.valueFrom.secretKeyRef)
            if why is not None:
                out = f"no check: header {h.name}: {why}"
                break
            if value is not None:
                found[h.name] = value
        else:
            out = found
        self._headers = (key, time.monotonic() + self.eng.settings.monitor_status_refresh_seconds, out)
        return out


# ---------------------------------------------------------------- the step


async def step(mon: MonitorHandle) -> float:
    """Make the checks that are due; the seconds until the next step (inf: until woken)."""
    eng = mon.eng
    now_dt = eng.clock.now()
    body = mon.body()
    try:
        spec = MonitorSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:  # the CRD's schema refuses these: an object from before a CRD change
        mon.status = mt.note(mon.status, f"invalid spec: {exc.errors()[0].get('msg', exc)}"[:512])
        await mon.save()
        return 60.0
    if mon.status.observedGeneration != mon.generation():
        mon.status = mon.status.model_copy(update={"observedGeneration": mon.generation()})
    if spec.suspend:
        mon.status = mt.suspended(mon.status, now_dt)
        mon.next_due = None
        mon.hide_state()
        return float("inf") if await mon.save() else eng.settings.service_retry_seconds
    mon.status = mt.resumed(mon.status)
    interval = mt.interval_seconds(spec)
    offset = mt.jitter_offset(mon.uid, interval)
    now = now_dt.timestamp()
    if mon.next_due is None or mon.interval != interval or mon.kind != spec.check_kind:
        checked_before = mon.status.lastCheckAt is not None or mon.status.lastRun is not None
        mon.next_due = mt.first_due(now, interval, offset, checked_before=checked_before)
        mon.interval, mon.kind = interval, spec.check_kind
    mon.show_state()
    if mon.pending_run is not None:
        await _observe_run(mon, spec)
    if now >= mon.next_due - DUE_TOLERANCE_SECONDS:
        due = mon.next_due
        if spec.check_kind in SYNTHETIC:
            if not await _start_run(mon, spec, due):
                return eng.settings.service_retry_seconds  # the API server is away: the same due time again
        else:
            await _check_here(mon, spec, due)
        mon.next_due = mt.due_after_check(due, eng.clock.now().timestamp(), interval, offset)
    saved = await mon.save()
    wait = max(0.0, mon.next_due - eng.clock.now().timestamp())
    return wait if saved else min(wait, eng.settings.service_retry_seconds)


async def _check_here(mon: MonitorHandle, spec: MonitorSpec, due: float) -> None:
    """An HTTP or TCP check, made by the operator under one of its check slots."""
    eng, kind = mon.eng, spec.check_kind
    headers: dict[str, str] | str = {}
    if spec.http is not None:
        headers = await mon.headers(spec.http)
        if isinstance(headers, str):
            mon.status = mt.note(mon.status, headers)
            eng.metrics.monitor_checks.labels(kind, "none").inc()
            return
    checker = mon.mons.checker
    async with checker.slot():
        started = eng.clock.now()
        t0 = time.monotonic()
        if spec.http is not None:
            assert isinstance(headers, dict)
            result = await checker.http(spec.http, headers)
        else:
            assert spec.tcp is not None
            result = await checker.tcp(spec.tcp)
        took = time.monotonic() - t0
    eng.metrics.monitor_check_lag.observe(max(0.0, started.timestamp() - due))
    eng.metrics.monitor_check_duration.labels(mon.namespace, kind).observe(took)
    await _record(mon, spec, result, due, started)


async def _record(mon: MonitorHandle, spec: MonitorSpec, result: mt.CheckResult, due: float,
                  at: datetime) -> None:
    """A check's result: status, metrics, row; on a state change its Event, status and webhooks."""
    eng = mon.eng
    kind = spec.check_kind
    mon.status, change = mt.record_check(mon.status, result, at, spec.failureThreshold, spec.successThreshold)
    eng.metrics.monitor_checks.labels(kind, "ok" if result.ok else "failed").inc()
    mon.mons.results.add(MonitorResultRow(
        namespace=mon.namespace, name=mon.name, uid=mon.uid, type=kind,
        due_at=datetime.fromtimestamp(due, UTC), checked_at=at, ok=result.ok,
        latency_ms=result.latency_ms, message=result.message))
    mon.show_state()
    if change is not None:
        mon.last_change = change
        if change.state == DOWN:
            mon.event("Warning", EventReason.MONITOR_DOWN,
                      f"Down after {mon.status.consecutiveFailures} failed check(s): {result.message}")
        else:
            downtime = mt.downtime_seconds(mon.status) if change.previous == DOWN else None
            mon.event("Normal", EventReason.MONITOR_UP, f"Up: {result.message}" +
                      (f" (down for {human_duration(downtime)})" if downtime is not None else ""))
        mon.log.info("Monitor %s/%s: %s -> %s (%s)", mon.namespace, mon.name, change.previous, change.state,
                     result.message)
    if mt.notification_due(mon.status) is not None:
        await mon.save()  # readers see the new state before the webhooks are tried
        await _notify(mon, spec)


# ---------------------------------------------------------------- notifications


async def _url(mon: MonitorHandle, target: MonitorNotifyTarget) -> tuple[str | None, str | None]:
    if target.url is not None:
        return target.url, None
    assert target.urlFrom is not None
    ref = target.urlFrom.secretKeyRef
    value, why = await secret_value(mon.eng, mon.namespace, ref)
    return value, why or (None if value else f"Secret {ref.name} has no key {ref.key}")


async def _deliver(mon: MonitorHandle, target: MonitorNotifyTarget, payload: dict[str, Any]) -> Notification:
    url, why = await _url(mon, target)
    if url is None:
        ref = target.urlFrom.secretKeyRef if target.urlFrom else None
        return Notification(target=f"secret {ref.name if ref else '?'}", ok=False, tries=0,
                            message=f"{why}: not sent"[:512])
    delivery = await notify.deliver(url, payload)
    mon.eng.metrics.notifications.labels("delivered" if delivery.ok else "failed",
                                         *mon.eng.extra_labels(mon.body())).inc()
    return Notification(target=notify.safe_url(url), ok=delivery.ok, tries=delivery.tries,
                        message=(f"HTTP {delivery.status}" if delivery.ok else
                                 delivery.error or f"HTTP {delivery.status}")[:512])


async def _notify(mon: MonitorHandle, spec: MonitorSpec) -> None:
    """Tell the webhooks of the change due (once: ``notifiedState`` remembers it, written with the
    outcome). The targets are tried side by side; a dead one delays this monitor's next check by at most
    its tries (3 × 10 s), never another monitor's."""
    which = mt.notification_due(mon.status)
    if which is None:
        return
    change = mon.last_change
    previous = change.previous if change is not None and change.state == which else (DOWN if which == UP else None)
    payload = mt.notification_payload(mon.namespace, mon.name, mon.uid, mon.status, previous)
    targets: Sequence[MonitorNotifyTarget] = mt.targets_for(spec.notify, which)
    try:
        results = list(await asyncio.gather(*(_deliver(mon, t, payload) for t in targets)))
    except ApiUnavailable as exc:  # a urlFrom Secret could not be read: the next step tries again
        mon.log.warning("Monitor notification postponed: %s", exc)
        return
    mon.status = mon.status.model_copy(update={"notifiedState": which, "notifications": results})
    failed = [n for n in results if not n.ok]
    if failed:
        mon.event("Warning", EventReason.NOTIFICATION_FAILED,
                  "; ".join(f"{n.target}: {n.message}" for n in failed))
    await mon.save()


# ---------------------------------------------------------------- synthetic checks (TestRuns)


async def _start_run(mon: MonitorHandle, spec: MonitorSpec, due: float) -> bool:
    """The TestRun of the check due at ``due``, unless the previous one is still running (then this due
    time is skipped). False when the API server is away (try the same due time again)."""
    eng = mon.eng
    kind = spec.check_kind
    if mon.pending_run is not None:
        when = iso(datetime.fromtimestamp(due, UTC))
        mon.status = mt.note(mon.status, f"the check due at {when} was skipped: TestRun {mon.pending_run} "
                                         "is still running")
        eng.metrics.monitor_checks.labels(kind, "skipped").inc()
        return True
    obj = monitorruns.testrun_for(mon.namespace, mon.name, mon.uid, spec, due, eng.settings.monitor_priority)
    try:
        await eng.kube.create_run(obj, TESTRUNS)  # None: made already for this due time (a restart)
    except ApiUnavailable as exc:
        mon.log.warning("synthetic check's TestRun not created yet: %s", exc)
        return False
    except Refused as exc:
        mon.status = mt.note(mon.status, f"no check: TestRun {obj['metadata']['name']} was refused by the API "
                                         f"server: {exc}"[:1024])
        eng.metrics.monitor_checks.labels(kind, "none").inc()
        return True
    name = obj["metadata"]["name"]
    eng.metrics.monitor_check_lag.observe(max(0.0, eng.clock.now().timestamp() - due))
    mon.pending_run = name
    mon.status = mon.status.model_copy(update={"lastRun": name})
    await mon.save()  # lastRun is salient: a restarted operator finds the run under way
    return True


async def _observe_run(mon: MonitorHandle, spec: MonitorSpec) -> None:
    """The synthetic check under way: when its TestRun has ended, its outcome is the check's."""
    eng = mon.eng
    name = mon.pending_run
    assert name is not None
    run = await eng.kube.get_run(mon.namespace, name, TESTRUNS)
    from_status, mon.run_from_status = mon.run_from_status, False
    if run is None or not monitorruns.owned_by(run, mon.uid):
        mon.pending_run = None
        if not from_status:  # (status.lastRun at start may be a run recorded and deleted long ago)
            mon.status = mt.note(mon.status, f"no check result: TestRun {name} was deleted before it ended")
        return
    if not monitorruns.ended(run):
        return
    mon.pending_run = None
    if not _recorded(mon.status, run):
        out = monitorruns.outcome(run)
        kind = spec.check_kind
        if isinstance(out, mt.CheckResult):
            at = monitorruns.checked_at(run, eng.clock.now())
            due = monitorruns.due_of(run) or at
            if out.latency_ms is not None:
                eng.metrics.monitor_check_duration.labels(mon.namespace, kind).observe(out.latency_ms / 1000)
            await _record(mon, spec, out, due.timestamp(), at)
        elif isinstance(out, str):
            mon.status = mt.note(mon.status, out)
            eng.metrics.monitor_checks.labels(kind, "none").inc()
    await _prune_runs(mon, spec)


def _recorded(status: MonitorStatus, run: Mapping[str, Any]) -> bool:
    """Whether this ended run's result is in the status already (a restart after it was recorded): a
    check is recorded with the run's end as its time, so lastCheckAt is at least the run's completedAt."""
    completed = parse_iso((run.get("status") or {}).get("completedAt"))
    last = parse_iso(status.lastCheckAt)
    return completed is not None and last is not None and last >= completed


async def _prune_runs(mon: MonitorHandle, spec: MonitorSpec) -> None:
    """Keep the ``runsHistoryLimit`` newest ended runs of this monitor; delete the older ones."""
    eng = mon.eng
    selector = f"{LABEL_MONITOR}={monitorruns.monitor_label(mon.name)}"
    try:
        runs = await eng.kube.list_labelled(mon.namespace, TESTRUNS, selector)
        for run in monitorruns.runs_to_delete(runs, mon.uid, spec.runsHistoryLimit):
            meta = run["metadata"]
            await eng.kube.delete_run(mon.namespace, meta["name"], meta["uid"], TESTRUNS)
    except ApiUnavailable as exc:  # the next run's end prunes them
        mon.log.warning("old synthetic check runs not deleted yet: %s", exc)
