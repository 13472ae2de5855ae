"""A Monitor's decisions, as pure functions over plain data (the engine, :mod:`supercheck.engine.monitors`,
reads, calls these, and writes).

* **When**: due times are ``k * interval + offset`` (epoch seconds, any integer k), the offset a fixed
  fraction of the interval drawn from the monitor's uid (:func:`jitter_offset`). A thousand monitors of
  one interval so spread evenly over it instead of firing in the same second, and a restarted operator
  keeps each monitor's phase. A monitor never checked is checked at once; missed due times (the operator
  was down, a check took longer than the interval) are skipped, never caught up.
* **State**: ``Unknown`` at first; ``successThreshold`` good checks in a row make it ``Up``,
  ``failureThreshold`` failed checks in a row make it ``Down`` (:func:`record_check`).
* **Notifications**: ``Down`` when it goes Down (from Up or Unknown), ``Up`` ("recovered") only when it
  comes back from Down; never twice for one change, because ``status.notifiedState`` remembers what the
  webhooks were told (:func:`notification_due`), even across a restart.
* **Uptime**: hourly buckets of checks and failures, 168 kept (7 days); the percentages are over the
  last 24 and 168 hours, counted in whole checks (:func:`count_check`, :func:`uptime`).
* **Status writes**: a status write per check would be 100 API writes a second for 1,000 monitors at
  10 s. The status is written when something a reader acts on changes (:func:`salient`: the state, a
  failure or a good check on the way to a change, the message, a notification, a new synthetic run)
  and otherwise at most every ``SUPERCHECK_MONITOR_STATUS_REFRESH_SECONDS`` (:func:`write_due`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from supercheck.clock import iso, parse_iso
from supercheck.durations import parse_duration
from supercheck.monitormodels import (
    LastFailure,
    MonitorNotifyTarget,
    MonitorSpec,
    MonitorState,
    MonitorStatus,
    Uptime,
    UptimeBucket,
)
from supercheck.vocabulary import MONITOR_KIND

# The states, typed as the status field is (monitormodels' UP, DOWN, UNKNOWN are plain strings).
UP: MonitorState = "Up"
DOWN: MonitorState = "Down"
UNKNOWN: MonitorState = "Unknown"
MIN_INTERVAL_SECONDS = 1.0  # a shorter spec.interval (500ms) is read as 1 s
UPTIME_HOURS_KEPT = 168  # 7 days of hourly buckets
MSG_SUSPENDED = "suspended: no checks while spec.suspend is true"


# ---------------------------------------------------------------- when


def interval_seconds(spec: MonitorSpec) -> float:
    return max(MIN_INTERVAL_SECONDS, parse_duration(spec.interval))


def jitter_offset(uid: str, interval: float) -> float:
    """A fixed point in [0, interval) for this monitor: the first 8 bytes of sha256(uid) as a fraction.

    Uniform over the interval for random uids (so N monitors spread evenly), the same in every
    process and after every restart (so a monitor keeps its phase)."""
    fraction = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2**64
    return fraction * interval


def next_slot(at_or_after: float, interval: float, offset: float) -> float:
    """The first due time ``k * interval + offset`` at or after ``at_or_after`` (epoch seconds)."""
    k = math.ceil((at_or_after - offset) / interval)
    due = k * interval + offset
    return due if due >= at_or_after else due + interval  # float rounding


def first_due(now: float, interval: float, offset: float, *, checked_before: bool) -> float:
    """A monitor never checked is checked at once; one checked before (a restart, a new leader) waits for
    its next slot, keeping its phase."""
    return next_slot(now, interval, offset) if checked_before else now


def due_after_check(due: float, now: float, interval: float, offset: float) -> float:
    """The due time after a check due at ``due`` ended at ``now``: the next slot, skipping those missed
    while the check ran, and at least half an interval after ``due`` (a first check made at once may fall
    just before a slot: the monitor does not check twice in a moment)."""
    return next_slot(max(now, due + interval / 2), interval, offset)


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class CheckResult:
    """One check: good or not, how long it took (None: no measure), and what it said."""

    ok: bool
    latency_ms: int | None
    message: str


@dataclass(frozen=True)
class Change:
    """A state change a check caused."""

    previous: str
    state: str


def initial_status(status: MonitorStatus, at: datetime) -> MonitorStatus:
    """A new monitor's status (``Unknown`` since now); one that has a state is kept as it is."""
    if status.state is not None:
        return status
    return status.model_copy(update={"state": UNKNOWN, "since": iso(at)})


def record_check(status: MonitorStatus, result: CheckResult, at: datetime, failure_threshold: int,
                 success_threshold: int) -> tuple[MonitorStatus, Change | None]:
    """The status after a check made at ``at``, and the state change it caused (None: none)."""
    s = status.model_copy()  # shallow: the lists below are replaced, never changed in place
    s.checks += 1
    s.lastCheckAt = iso(at)
    s.lastLatencyMs = result.latency_ms
    s.lastResult = result.message
    if result.ok:
        s.consecutiveSuccesses += 1
        s.consecutiveFailures = 0
    else:
        s.consecutiveFailures += 1
        s.consecutiveSuccesses = 0
        s.lastFailure = LastFailure(at=iso(at), message=result.message)
    previous: MonitorState = s.state or UNKNOWN
    state = previous
    if result.ok and s.consecutiveSuccesses >= success_threshold:
        state = UP
    elif not result.ok and s.consecutiveFailures >= failure_threshold:
        state = DOWN
    change = None
    if state != previous:
        change = Change(previous, state)
        s.state = state
        s.since = iso(at)
        if state == DOWN:
            s.incidentStartedAt = iso(at)
    if not result.ok:
        s.message = result.message if state == DOWN else \
            f"{result.message} ({s.consecutiveFailures} of {failure_threshold} failed checks before Down)"
    elif state != UP:
        s.message = f"{s.consecutiveSuccesses} of {success_threshold} good checks before Up"
    else:
        s.message = None
    s.uptimeBuckets = count_check(s.uptimeBuckets, at, result.ok)
    s.uptime = uptime(s.uptimeBuckets, at)
    return s, change


def note(status: MonitorStatus, message: str) -> MonitorStatus:
    """No check result (a synthetic run rejected, a header's Secret missing, a due time skipped): only the
    message says why; the state and counters stay."""
    return status.model_copy(update={"message": message})


def suspended(status: MonitorStatus, at: datetime) -> MonitorStatus:
    """spec.suspend: no checks, and no claim about the site: ``Unknown`` (its ``supercheck_monitor_up``
    series goes away, so a paused monitor does not keep an alert firing)."""
    s = status.model_copy(deep=True)
    if s.state != UNKNOWN:
        s.state = UNKNOWN
        s.since = iso(at)
    s.consecutiveFailures = s.consecutiveSuccesses = 0
    s.message = MSG_SUSPENDED
    return s


def resumed(status: MonitorStatus) -> MonitorStatus:
    """Checks again after spec.suspend: the suspension's message goes (the state stays Unknown until checked)."""
    return status.model_copy(update={"message": None}) if status.message == MSG_SUSPENDED else status


# ---------------------------------------------------------------- notifications


def notification_due(status: MonitorStatus) -> str | None:
    """``Down`` when the monitor is Down and the webhooks were not told; ``Up`` when it is Up and they
    were last told Down (a recovery). An Up from Unknown (a new monitor) is no news."""
    if status.state == DOWN and status.notifiedState != DOWN:
        return DOWN
    if status.state == UP and status.notifiedState == DOWN:
        return UP
    return None


def targets_for(targets: Sequence[MonitorNotifyTarget], which: str) -> list[MonitorNotifyTarget]:
    """The targets told of ``which`` (Down or Up): those whose ``on`` lists it, or is empty."""
    return [t for t in targets if not t.on or which in t.on]


def downtime_seconds(status: MonitorStatus) -> float | None:
    """A recovered monitor's outage, from going Down to coming back Up."""
    start, end = parse_iso(status.incidentStartedAt), parse_iso(status.since)
    if start is None or end is None or status.state != UP:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def notification_payload(namespace: str, name: str, uid: str, status: MonitorStatus,
                         previous: str | None) -> dict[str, Any]:
    """The JSON body POSTed to each webhook (docs/schedules-and-monitors.md#notifications)."""
    payload: dict[str, Any] = {
        "kind": MONITOR_KIND,
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "state": status.state,
        "previousState": previous,
        "since": status.since,
        "lastResult": status.lastResult,
        "message": status.message,
        "consecutiveFailures": status.consecutiveFailures,
        "incidentStartedAt": status.incidentStartedAt,
    }
    if status.state == UP:
        payload["downtimeSeconds"] = downtime_seconds(status)
    return payload


# ---------------------------------------------------------------- uptime


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H:00:00Z")


def count_check(buckets: Sequence[UptimeBucket], at: datetime, ok: bool) -> list[UptimeBucket]:
    """The buckets with this check counted in its hour; those older than 168 hours before it dropped.

    A new list; the buckets not counted in are shared, not copied (this runs at every check)."""
    hour = _hour_text(hour_start(at))
    oldest = _hour_text(hour_start(at) - timedelta(hours=UPTIME_HOURS_KEPT - 1))
    out = [b for b in buckets if b.hour >= oldest]
    failed = 0 if ok else 1
    for i in range(len(out) - 1, -1, -1):  # the current hour is the last bucket, nearly always
        if out[i].hour == hour:
            b = out[i]
            out[i] = b.model_copy(update={"checks": b.checks + 1, "failures": b.failures + failed})
            return out
    out.append(UptimeBucket(hour=hour, checks=1, failures=failed))
    if len(out) > 1 and out[-2].hour > hour:  # a check of an earlier hour than the newest (a clock step)
        out.sort(key=lambda b: b.hour)
    return out


def percent(good: int, checks: int) -> float | None:
    """Good checks in percent, rounded *down* to 3 decimals: one failure in a million checks still shows
    below 100."""
    if checks <= 0:
        return None
    return math.floor(good * 100_000 / checks) / 1000


def uptime(buckets: Sequence[UptimeBucket], now: datetime) -> Uptime:
    """Good checks in percent over the last 24 hours and the last 7 days (whole hours, the current one
    included); None where no check was made."""

    def over(hours: int) -> float | None:
        since = _hour_text(hour_start(now) - timedelta(hours=hours - 1))
        chosen = [b for b in buckets if b.hour >= since]
        checks = sum(b.checks for b in chosen)
        return percent(checks - sum(b.failures for b in chosen), checks)

    return Uptime(last24h=over(24), last7d=over(UPTIME_HOURS_KEPT))


# ---------------------------------------------------------------- status writes


def salient(s: MonitorStatus) -> tuple[Any, ...]:
    """What a reader acts on: written as soon as it changes. The counters on the way to a change are in
    (each failure of an Up monitor, each good check of a Down one); those of a steady state are not."""
    return (s.state, s.since, s.incidentStartedAt, s.notifiedState, s.message, s.lastRun,
            s.observedGeneration, len(s.notifications),
            s.consecutiveFailures if s.state != DOWN else None,
            s.consecutiveSuccesses if s.state == DOWN else None)


def write_due(written: MonitorStatus | None, current: MonitorStatus, written_at: datetime | None, now: datetime,
              refresh_seconds: float) -> bool:
    """Whether to write ``current``: a salient change at once, anything else at most every ``refresh_seconds``."""
    if written is None or written_at is None:
        return True
    if salient(written) != salient(current):
        return True
    return (now - written_at).total_seconds() >= refresh_seconds and written != current


def status_patch(status: MonitorStatus) -> dict[str, Any]:
    """The whole status as a merge patch: a field that is None is removed."""
    return status.model_dump(mode="json")
