"""What a RunSchedule does now: pure decisions over its spec, its status, the time and its runs.

A CronJob's semantics (docs/schedules-and-monitors.md, "RunSchedule"):

* each due time makes at most one run, named ``<schedule>-<unix seconds of the due time>``: creating it
  again (another replica, a restarted operator) finds the name taken, so a time is never run twice;
* a missed time (operator down, schedule suspended) is caught up at most once: only the latest one,
  and only within ``startingDeadlineSeconds`` when that is set;
* ``concurrencyPolicy``: Allow starts it anyway, Forbid skips the time (counted, said), Replace deletes
  the active runs (their finalizer cancels them) and starts the new one;
* the ended runs are counted exactly once (``status.countedRuns`` holds the ended runs still present
  that are counted already), then the oldest beyond the history limits are deleted.

:func:`plan` answers all of it; :mod:`supercheck.engine.schedules` acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from supercheck.clock import parse_iso
from supercheck.cron import InvalidSchedule, parse_schedule
from supercheck.models import API_VERSION, TERMINAL_PHASE_NAMES, Phase
from supercheck.podspec import MAX_NAME, bounded_name
from supercheck.schedmodels import LastRun, RunScheduleSpec, RunScheduleStatus, ScheduledRunRef
from supercheck.vocabulary import (
    ANNOTATION_SCHEDULED_TIME,
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_SCHEDULE,
    PLURALS,
    RUNSCHEDULE_KIND,
    TESTRUN_KIND,
    ScheduleReason,
)

TERMINAL = TERMINAL_PHASE_NAMES
MAX_LABEL_VALUE = 63
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # due times are whole seconds


def _parse(text: str | None) -> datetime | None:
    """An RFC 3339 time; one without an offset is UTC, one that is not a time None (an annotation is
    anyone's to edit)."""
    try:
        t = parse_iso(text)
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def stamp(t: datetime) -> str:
    """A due time as the status and the run's annotation hold it: RFC 3339, UTC, whole seconds."""
    return t.astimezone(UTC).strftime(TIME_FORMAT)


def run_name(schedule: str, due: datetime) -> str:
    """``<schedule>-<unix seconds>``, at most 63 characters (the runner pods' names and labels are made from
    it); a longer schedule name is cut and made unique by a hash of the whole name."""
    return bounded_name(schedule, f"-{int(due.timestamp())}", MAX_NAME)


def schedule_label(schedule: str) -> str:
    """The value of ``supercheck.io/schedule`` on the schedule's runs: its name, or, beyond the 63 characters a
    label value may have, its first 54 characters and a hash of the whole name."""
    return bounded_name(schedule, "", MAX_LABEL_VALUE)


def selector(schedule: str) -> str:
    return f"{LABEL_SCHEDULE}={schedule_label(schedule)}"


# ---------------------------------------------------------------- the schedule's runs, as the plan sees them


@dataclass(frozen=True)
class ScheduledRun:
    kind: str
    name: str
    uid: str
    phase: str | None = None
    scheduled: datetime | None = None  # the due time it was created for (its annotation)
    completed_at: str | None = None
    result: str | None = None
    deleting: bool = False  # a deletionTimestamp: neither active nor counted (replaced, or deleted by a user)

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL

    @property
    def passed(self) -> bool:
        return self.phase == Phase.PASSED.value

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    def ref(self) -> ScheduledRunRef:
        return ScheduledRunRef.model_validate({"kind": self.kind, "name": self.name,
                                               "scheduledTime": stamp(self.scheduled) if self.scheduled else None})

    @classmethod
    def from_body(cls, body: Mapping[str, Any], kind: str | None = None) -> ScheduledRun:
        """``kind``: as listed (an item of a list may come without its kind)."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        annotations = meta.get("annotations") or {}
        scheduled = _parse(annotations.get(ANNOTATION_SCHEDULED_TIME))
        return cls(kind=kind or str(body.get("kind") or TESTRUN_KIND), name=meta["name"], uid=meta.get("uid", ""),
                   phase=status.get("phase"), scheduled=scheduled, completed_at=status.get("completedAt"),
                   result=status.get("result"), deleting=bool(meta.get("deletionTimestamp")))


def owned_by(body: Mapping[str, Any], schedule_uid: str) -> bool:
    """The run's controller is this schedule (not a namesake deleted and made again, nor a hand-made copy)."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("kind") == RUNSCHEDULE_KIND and r.get("uid") == schedule_uid
               for r in refs)


def run_object(schedule: Mapping[str, Any], spec: RunScheduleSpec, due: datetime) -> dict[str, Any]:
    """The TestRun or JobRun for ``due``: owned by the schedule (deleting the schedule deletes it), carrying
    the schedule's labels (not ours: ``supercheck.io/*``, the manager's) and ``supercheck.io/schedule``, its
    spec the template as the API server stored it (so its defaults are the run kind's own)."""
    meta = schedule["metadata"]
    key = "testRun" if spec.testRun is not None else "jobRun"
    template = (schedule.get("spec") or {}).get(key)
    if not isinstance(template, dict):  # a body without the raw template: the model's view of it
        model = spec.testRun if spec.testRun is not None else spec.jobRun
        assert model is not None  # one of them, always (the model's validator)
        template = model.model_dump(mode="json", exclude_none=True)
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if not k.startswith(f"{GROUP}/") and k != LABEL_MANAGED_BY}
    labels[LABEL_SCHEDULE] = schedule_label(meta["name"])
    return {
        "apiVersion": API_VERSION,
        "kind": spec.kind,
        "metadata": {
            "name": run_name(meta["name"], due),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {ANNOTATION_SCHEDULED_TIME: stamp(due)},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": RUNSCHEDULE_KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": dict(template),
    }


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class DueRun:
    """The run to create now."""

    kind: str
    name: str
    due: datetime

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]


@dataclass(frozen=True)
class Plan:
    """What to do now, in this order: delete ``replace`` (Replace), create ``create``, write ``status``
    (when it differs from ``previous``), post ``events``, delete ``prune`` (history). Then sleep until
    ``wake_at`` (None: nothing is due until the spec changes) or a run's change."""

    previous: RunScheduleStatus
    status: RunScheduleStatus
    create: DueRun | None = None
    replace: tuple[ScheduledRun, ...] = ()
    prune: tuple[ScheduledRun, ...] = ()
    events: tuple[Event, ...] = ()
    wake_at: datetime | None = None
    skipped: datetime | None = None  # a due time skipped (Forbid)
    scheduled_before: str | None = None  # lastScheduleTime as it stands without ``create``

    @property
    def changed(self) -> bool:
        return self.status != self.previous

    def create_failed(self, reason: ScheduleReason, message: str) -> Plan:
        """The run could not be created (refused, or its name taken): the time stays due (tried again at the
        next tick, until a later time supersedes it); the rest of the plan stands."""
        assert self.create is not None
        status = self.status.model_copy(update={
            "lastScheduleTime": self.scheduled_before,
            "active": [r for r in self.status.active if r.name != self.create.name],
            "reason": reason.value, "message": message})
        events = tuple(e for e in self.events if e.reason not in (ScheduleReason.RUN_CREATED,
                                                                   ScheduleReason.RUN_REPLACED))
        if (self.previous.reason, self.previous.message) != (reason.value, message):
            events += (Event("Warning", reason.value, message),)
        return replace(self, status=status, create=None, events=events)


def _latest(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None




def _named(runs: Sequence[ScheduledRun]) -> str:
    first = f"{runs[0].kind} {runs[0].name}"
    return first if len(runs) == 1 else f"{first} (and {len(runs) - 1} more)"


@dataclass
class _Draft:
    """The status being decided, and what goes with it."""

    status: RunScheduleStatus
    events: list[Event] = field(default_factory=list)

    def say(self, reason: ScheduleReason, message: str, event_type: str | None = None, *,
            once: bool = False, previous: RunScheduleStatus | None = None) -> None:
        """Set the status's reason and message; post an Event of ``event_type`` too (with ``once``: only
        when the reason or message is new, so a lasting state is told once, not at every tick)."""
        repeated = once and previous is not None and (previous.reason, previous.message) == (reason.value, message)
        self.status.reason, self.status.message = reason.value, message
        if event_type and not repeated:
            self.events.append(Event(event_type, reason.value, message))


def _count(draft: _Draft, previous: RunScheduleStatus, runs: Sequence[ScheduledRun]) -> list[ScheduledRun]:
    """Count the ended runs not counted yet; the ended runs still present (not being deleted), newest first."""
    st = draft.status
    counted = set(previous.countedRuns)
    for run in runs:
        if run.ended and not run.deleting and run.name not in counted:
            if run.passed:
                st.passedRuns += 1
            else:
                st.failedRuns += 1
            counted.add(run.name)
    # Bookkeeping only for the runs still listed: a run gone is never listed again (names are per due time).
    st.countedRuns = sorted(counted & {r.name for r in runs if r.ended})
    ended = [r for r in runs if r.ended and not r.deleting]
    ended.sort(key=lambda r: (_parse(r.completed_at) or r.scheduled or datetime.min.replace(tzinfo=UTC),
                              r.scheduled or datetime.min.replace(tzinfo=UTC), r.name), reverse=True)
    if ended:
        newest = ended[0]
        known = _parse(previous.lastRun.completedAt) if previous.lastRun else None
        done = _parse(newest.completed_at)
        if previous.lastRun is None or (done is not None and (known is None or done > known)):
            st.lastRun = LastRun.model_validate({**newest.ref().model_dump(), "phase": newest.phase,
                                                 "result": newest.result, "completedAt": newest.completed_at})
    for run in ended:
        done = _parse(run.completed_at)
        if run.passed and done is not None and (st.lastSuccessfulTime is None
                                                 or done > (_parse(st.lastSuccessfulTime) or done)):
            st.lastSuccessfulTime = run.completed_at
    return ended


def _history(spec: RunScheduleSpec, ended: Sequence[ScheduledRun]) -> tuple[ScheduledRun, ...]:
    """The ended runs beyond the history limits, oldest first; passed and not passed kept separately."""
    def by_age(runs: list[ScheduledRun]) -> list[ScheduledRun]:  # newest first
        return sorted(runs, key=lambda r: (r.scheduled or datetime.min.replace(tzinfo=UTC), r.name), reverse=True)

    passed = by_age([r for r in ended if r.passed])[spec.successfulRunsHistoryLimit:]
    failed = by_age([r for r in ended if not r.passed])[spec.failedRunsHistoryLimit:]
    return tuple(reversed(by_age(passed + failed)))


def plan(name: str, spec: RunScheduleSpec, status: RunScheduleStatus, now: datetime, created: datetime,
         runs: Sequence[ScheduledRun], generation: int | None = None) -> Plan:
    """What the schedule ``name`` does at ``now``, given its runs (every run it owns, being deleted or not)."""
    previous = status
    draft = _Draft(status.model_copy(deep=True))
    st = draft.status
    st.observedGeneration = generation if generation is not None else st.observedGeneration
    ended = _count(draft, previous, runs)
    prune = _history(spec, ended)
    active = sorted((r for r in runs if not r.ended and not r.deleting),
                    key=lambda r: (r.scheduled or datetime.min.replace(tzinfo=UTC), r.name))
    st.active = [r.ref() for r in active]
    # A run the status does not know of (created just before a crash, or by a replica whose write lost the
    # race) is a time that was scheduled: its time counts as the last one, it is never created again.
    last = _latest([_parse(status.lastScheduleTime), *(r.scheduled for r in runs)])
    st.lastScheduleTime = stamp(last) if last else None

    def done(wake_at: datetime | None = None, **extra: Any) -> Plan:
        return Plan(previous=previous, status=st, prune=prune, events=tuple(draft.events), wake_at=wake_at, **extra)

    try:
        schedule = parse_schedule(spec.schedule, spec.timeZone, created)
    except InvalidSchedule as exc:
        st.nextScheduleTime = None
        draft.say(ScheduleReason.INVALID_SCHEDULE, str(exc), "Warning", once=True, previous=previous)
        return done()
    if spec.suspend:
        st.nextScheduleTime = None
        draft.say(ScheduleReason.SUSPENDED, "suspended (spec.suspend): no new runs", "Normal", once=True,
                  previous=previous)
        return done()

    next_due = schedule.next_after(now)
    st.nextScheduleTime = stamp(next_due) if next_due else None
    if st.reason in (None, ScheduleReason.INVALID_SCHEDULE, ScheduleReason.SUSPENDED):
        draft.say(ScheduleReason.WAITING, "no run is due yet" if last is None else "the next run is not due yet")
    cursor = _latest([last, _parse(status.lastSkippedTime), created])
    due = schedule.latest_at_or_before(now)
    if due is None or (cursor is not None and due <= cursor):
        return done(next_due)
    late = (now - due).total_seconds()
    if spec.startingDeadlineSeconds is not None and late > spec.startingDeadlineSeconds:
        # Said once: the message names the time, not how late it is now (which would change at every tick).
        draft.say(ScheduleReason.MISSED_SCHEDULE,
                  f"missed {stamp(due)}: found more than startingDeadlineSeconds ({spec.startingDeadlineSeconds}) "
                  f"after it; the next run is at {st.nextScheduleTime}", "Warning", once=True, previous=previous)
        return done(next_due)

    if active and spec.concurrencyPolicy == "Forbid":
        st.lastSkippedTime = stamp(due)
        st.skippedRuns += 1
        draft.say(ScheduleReason.RUN_SKIPPED,
                  f"skipped {stamp(due)}: {_named(active)} is still active (concurrencyPolicy Forbid)", "Normal")
        return done(next_due, skipped=due)

    new = DueRun(spec.kind, run_name(name, due), due)
    replaced: tuple[ScheduledRun, ...] = ()
    if active and spec.concurrencyPolicy == "Replace":
        replaced = tuple(active)
        st.active = []
        draft.say(ScheduleReason.RUN_REPLACED,
                  f"replaced {_named(active)} by {new.kind} {new.name} for {stamp(due)} (concurrencyPolicy Replace)",
                  "Normal")
    else:
        draft.say(ScheduleReason.RUN_CREATED, f"created {new.kind} {new.name} for {stamp(due)}", "Normal")
    st.active = [*st.active, ScheduledRunRef.model_validate({"kind": new.kind, "name": new.name,
                                                              "scheduledTime": stamp(due)})]
    before, st.lastScheduleTime = st.lastScheduleTime, stamp(due)
    return done(next_due, create=new, replace=replaced, scheduled_before=before)
