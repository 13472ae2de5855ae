"""One tick of a RunSchedule: read it and its runs, plan (:func:`supercheck.schedules.plan`), act.

Every write is safe to repeat, and so safe with a crashed operator or two replicas active at once:

* a run's name is its due time's, so creating it again finds it there (``create_run`` answers None);
* the status is written with the schedule's ``resourceVersion``: a replica that decided on a stale
  status loses the write (Conflict), reads again and decides again — counts, skips and Events happen
  once, by the replica whose write landed;
* the schedule is read afresh at every tick (a GET, not Kopf's cached view), so a replica sees the last
  time scheduled before it creates one.

Errors of the API server never end the daemon: the tick is tried again later.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from supercheck.clock import parse_iso
from supercheck.engine.context import Engine
from supercheck.ports import ApiUnavailable, Conflict, Refused
from supercheck.redact import redact, redact_fields
from supercheck.schedmodels import RunScheduleSpec, RunScheduleStatus
from supercheck.schedules import Plan, ScheduledRun, owned_by, plan, run_object, selector, stamp
from supercheck.vocabulary import JOBRUN_KIND, PLURALS, RUNSCHEDULES, TESTRUN_KIND, ScheduleReason

log = logging.getLogger(__name__)

Logger = logging.Logger | logging.LoggerAdapter[Any]
Body = dict[str, Any]

# Ticks come at due times and when the schedule or one of its runs changes; this one is a safety net
# (a missed watch event, a clock step): a tick changes nothing when nothing is due.
SAFETY_TICK_SECONDS = 30.0


async def tick(eng: Engine, namespace: str, name: str, uid: str, logger: Logger | None = None) -> float | None:
    """Seconds until the schedule's next tick; None when it is gone (deleted, or made again: another uid)."""
    logger = logger or log
    try:
        body = await eng.kube.get_run(namespace, name, RUNSCHEDULES)
        if body is None or body["metadata"].get("uid") != uid or body["metadata"].get("deletionTimestamp"):
            return None
        return await _tick(eng, body, logger)
    except Conflict:
        return 0.0  # someone wrote the schedule since we read it: read again, decide again
    except ApiUnavailable as exc:
        eng.metrics.service_errors.labels("kubernetes").inc()
        logger.warning("RunSchedule %s/%s: the API server is unavailable (%s); trying again", namespace, name, exc)
        return eng.settings.service_retry_seconds
    except Exception as exc:  # noqa: BLE001 - the daemon must outlive any error: a later tick may succeed
        logger.warning("RunSchedule %s/%s: tick failed: %s", namespace, name, redact(str(exc))[:500])
        return max(eng.settings.service_retry_seconds, 5.0)


def _status(body: Body) -> RunScheduleStatus:
    raw = body.get("status") or {}
    known = {k: v for k, v in raw.items() if k in RunScheduleStatus.model_fields}  # Kopf's own keys aside
    return RunScheduleStatus.model_validate(known)


async def _runs(eng: Engine, namespace: str, name: str, uid: str) -> list[ScheduledRun]:
    """The schedule's runs of both kinds (a template changed from one kind to the other leaves runs of the
    first), only those it controls."""
    kinds = (TESTRUN_KIND, JOBRUN_KIND)
    listed = await asyncio.gather(*(eng.kube.list_labelled(namespace, PLURALS[k], selector(name)) for k in kinds))
    return [ScheduledRun.from_body(b, kind) for kind, items in zip(kinds, listed, strict=True) for b in items
            if owned_by(b, uid)]


async def _tick(eng: Engine, body: Body, logger: Logger) -> float:
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    try:
        spec = RunScheduleSpec.model_validate(body.get("spec") or {})
        status = _status(body)
    except ValidationError as exc:  # the CRD admitted it: an operator older than its CRD
        logger.error("RunSchedule %s/%s cannot be read by this operator: %s", namespace, name, exc)
        return SAFETY_TICK_SECONDS
    created = parse_iso(meta.get("creationTimestamp")) or eng.clock.now()
    runs = await _runs(eng, namespace, name, uid)
    p = plan(name, spec, status, eng.clock.now(), created, runs, meta.get("generation"))

    for run in p.replace:
        await eng.kube.delete_run(namespace, run.name, run.uid, run.plural)
        logger.info("RunSchedule %s/%s: deleted %s %s (concurrencyPolicy Replace)", namespace, name, run.kind,
                    run.name)
    p = await _create(eng, body, spec, p, logger)
    if p.changed:
        patch = redact_fields(p.status.model_dump(mode="json"))
        await eng.kube.patch_status(namespace, name, patch, meta.get("resourceVersion"), RUNSCHEDULES)
    # The write landed: this replica tells what was decided (a replica that lost the write tells nothing).
    for event in p.events:
        eng.events.post(body, event.type, event.reason, redact(event.message)[:1024])
    if p.skipped is not None:
        eng.metrics.schedule_skipped.labels(namespace).inc()
        logger.info("RunSchedule %s/%s: %s", namespace, name, p.status.message)
    for run in p.prune:  # counted in the status just written: now they may go
        await eng.kube.delete_run(namespace, run.name, run.uid, run.plural)
        logger.info("RunSchedule %s/%s: deleted %s %s (history limit)", namespace, name, run.kind, run.name)
    return _delay(p.wake_at, eng.clock.now())


async def _create(eng: Engine, body: Body, spec: RunScheduleSpec, p: Plan, logger: Logger) -> Plan:
    """Create the plan's run; the plan as it stands afterwards."""
    if p.create is None:
        return p
    meta = body["metadata"]
    namespace, new = meta["namespace"], p.create
    what = f"{new.kind} {new.name} for {stamp(new.due)}"
    try:
        made = await eng.kube.create_run(run_object(body, spec, new.due), new.plural)
    except Refused as exc:
        logger.warning("RunSchedule %s/%s: %s was refused: %s", namespace, meta["name"], what, exc)
        # Redacted here, as the status will hold it: the next tick compares its message with this one.
        return p.create_failed(ScheduleReason.CREATE_REFUSED,
                               redact(f"{what} was refused by the API server ({exc.status}): {exc}; trying again"))
    if made is None:  # the name is taken: by this schedule (another replica, an earlier life) or not?
        there = await eng.kube.get_run(namespace, new.name, new.plural)
        if there is not None and not owned_by(there, meta["uid"]):
            return p.create_failed(ScheduleReason.RUN_NAME_TAKEN,
                                   f"{what} cannot be created: a {new.kind} of that name exists and is not this "
                                   "schedule's; delete or rename it")
        return p
    lag = (eng.clock.now() - new.due).total_seconds()
    eng.metrics.schedule_lag.observe(max(lag, 0.0))
    eng.metrics.schedule_runs.labels(namespace).inc()
    logger.info("RunSchedule %s/%s: created %s (%.3fs after its time)", namespace, meta["name"], what, lag)
    return p


def _delay(wake_at: datetime | None, now: datetime) -> float:
    if wake_at is None:
        return SAFETY_TICK_SECONDS
    return min(max((wake_at - now).total_seconds(), 0.0), SAFETY_TICK_SECONDS)
