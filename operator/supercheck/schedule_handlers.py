"""Kopf wiring of RunSchedules. Thin: the decisions are :mod:`supercheck.schedules`, the actions
:mod:`supercheck.engine.schedules`; the Engine is the one :mod:`supercheck.handlers` builds at start-up.

* ``run_schedule`` — one daemon per RunSchedule: a tick, then a sleep until the next due time, a
  wake-up or the safety tick (``SAFETY_TICK_SECONDS``), until the schedule is deleted (Kopf's
  ``stopped``: the sleep ends at once).
* ``runschedule_changed`` — a change of the spec (``metadata.generation``) wakes it: a new schedule,
  suspend, a policy take effect at once.
* ``scheduled_testrun_changed`` / ``scheduled_jobrun_changed`` — one of its runs changing phase, being
  deleted or gone wakes it (the runs carry ``supercheck.io/schedule``): Forbid sees the run end, the
  counts and the history follow at once.

The wake-ups are keyed by the schedule's uid (a run names it in its ownerReference), so a schedule
deleted and made again under the same name never receives the old one's wake-ups.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf

from supercheck.engine import schedules
from supercheck.engine.context import Engine
from supercheck.handlers import engine_of
from supercheck.models import VERSION
from supercheck.vocabulary import GROUP, JOBRUNS, LABEL_SCHEDULE, RUNSCHEDULE_KIND, RUNSCHEDULES, TESTRUNS

Logger = logging.Logger | logging.LoggerAdapter[Any]

# Kopf logs each successful handler; these only wake a daemon (operator_main silences them).
QUIET_HANDLERS = ("Handler 'runschedule_changed'", "Handler 'scheduled_testrun_changed'",
                  "Handler 'scheduled_jobrun_changed'", "Daemon 'run_schedule'")


def wake_key(schedule_uid: str) -> str:
    return f"{RUNSCHEDULE_KIND}:{schedule_uid}"


@dataclass
class ScheduleWatch:
    """What the wake-up handlers remember between events, to wake a daemon only for a change that matters
    (not for every status write of a running run). Kept in Kopf's root memo: each object's memo is a
    shallow copy of it, so every handler shares this one."""

    generations: dict[str, Any] = field(default_factory=dict)  # schedule uid -> metadata.generation
    runs: dict[str, tuple[str | None, bool]] = field(default_factory=dict)  # run uid -> (phase, being deleted)

    def schedule_changed(self, uid: str, generation: Any, gone: bool) -> bool:
        if gone:
            self.generations.pop(uid, None)
            return False  # its daemon is stopped by Kopf
        changed = bool(self.generations.get(uid) != generation)
        self.generations[uid] = generation
        return changed

    def run_changed(self, uid: str, phase: str | None, deleting: bool, gone: bool) -> bool:
        if gone:
            self.runs.pop(uid, None)
            return True  # a run gone: the history and countedRuns follow
        state = (phase, deleting)
        changed = self.runs.get(uid) != state
        self.runs[uid] = state
        return changed


def owner_schedule(meta: Mapping[str, Any]) -> str | None:
    """The uid of the RunSchedule controlling this run, if one does."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == RUNSCHEDULE_KIND and ref.get("uid"):
            return str(ref["uid"])
    return None


# ---------------------------------------------------------------- start-up


@kopf.on.startup()
def schedule_startup(memo: Any, **_: Any) -> None:
    memo.schedule_watch = ScheduleWatch()


def _parts(memo: Any) -> tuple[Engine, ScheduleWatch] | None:
    eng, watch = memo.get("engine"), memo.get("schedule_watch")
    return (eng, watch) if isinstance(eng, Engine) and isinstance(watch, ScheduleWatch) else None


# ---------------------------------------------------------------- wake-ups


@kopf.on.event(GROUP, VERSION, RUNSCHEDULES)
def runschedule_changed(event: kopf.RawEvent, uid: str, meta: kopf.Meta, memo: Any, **_: Any) -> None:
    parts = _parts(memo)
    if parts is not None and parts[1].schedule_changed(uid, meta.get("generation"), event.get("type") == "DELETED"):
        parts[0].wake(wake_key(uid))


@kopf.on.event(GROUP, VERSION, TESTRUNS, labels={LABEL_SCHEDULE: kopf.PRESENT})
def scheduled_testrun_changed(event: kopf.RawEvent, body: kopf.Body, uid: str, memo: Any, **_: Any) -> None:
    _run_changed(event, body, uid, memo)


@kopf.on.event(GROUP, VERSION, JOBRUNS, labels={LABEL_SCHEDULE: kopf.PRESENT})
def scheduled_jobrun_changed(event: kopf.RawEvent, body: kopf.Body, uid: str, memo: Any, **_: Any) -> None:
    _run_changed(event, body, uid, memo)


def _run_changed(event: kopf.RawEvent, body: kopf.Body, uid: str, memo: Any) -> None:
    parts = _parts(memo)
    schedule = owner_schedule(body.metadata)
    if parts is None or schedule is None:
        return
    eng, watch = parts
    phase = body.status.get("phase")
    if watch.run_changed(uid, phase, bool(body.metadata.get("deletionTimestamp")), event.get("type") == "DELETED"):
        eng.wake(wake_key(schedule))


# ---------------------------------------------------------------- the schedule


class Stopped(Protocol):
    """Kopf's ``stopped`` flag of a daemon (true once the schedule is deleted or the operator stops)."""

    def __bool__(self) -> bool: ...
    def wait(self) -> Any: ...


@kopf.daemon(GROUP, VERSION, RUNSCHEDULES, cancellation_timeout=10.0, backoff=2.0)
async def run_schedule(namespace: str | None, name: str, uid: str, stopped: kopf.DaemonStopped, logger: Logger,
                       memo: Any, **_: Any) -> None:
    assert namespace is not None  # a namespaced kind
    await drive(engine_of(memo), namespace, name, uid, stopped, logger)


async def drive(eng: Engine, namespace: str, name: str, uid: str, stopped: Stopped, logger: Logger) -> None:
    """Tick, sleep until the tick's delay ends, a wake-up comes or the daemon is stopped; again."""
    key = wake_key(uid)
    wake = eng.wake_event(key)
    try:
        while not stopped:
            wake.clear()  # a wake-up during the tick is kept: the next tick comes at once
            delay = await schedules.tick(eng, namespace, name, uid, logger)
            if delay is None:
                return
            if delay > 0 and not stopped:
                await _sleep(wake, stopped, delay)
    finally:
        eng.wakeups.pop(key, None)


async def _sleep(wake: asyncio.Event, stopped: Stopped, delay: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
