"""When a RunSchedule is due: its ``spec.schedule`` (and ``spec.timeZone``) as instants in UTC.

Pure. Three spellings (docs/schedules-and-monitors.md, "RunSchedule"):

* standard 5-field cron (minute hour day-of-month month day-of-week), evaluated by croniter in the
  schedule's time zone (default UTC);
* a macro (@hourly, @daily = @midnight, @weekly, @monthly, @yearly = @annually), the cron line it names;
* ``@every <duration>``: every D from the schedule's ``metadata.creationTimestamp`` (due = created + k·D,
  k >= 1). Anchored to the object, not to the process, so that every replica and every restart computes
  the same instants — which is what makes the run names (and so "one run per time") deterministic.

Daylight saving time, as cron (Vixie) does it: on the night clocks go forward a time in the skipped hour
is due at the shift (croniter's answer, e.g. 02:30 -> 03:00); on the night they go back a time in the
repeated hour is due once (its first occurrence) — unless the minute or hour field starts with ``*``
(``*/15 * * * *``, ``0 */2 * * *``), which follows wall time and is due in both.

An invalid schedule or time zone raises :class:`InvalidSchedule`, whose message says what to write.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from supercheck.durations import parse_duration

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
EVERY = "@every"
CRON_FIELDS = "minute hour day-of-month month day-of-week"
EXAMPLES = "e.g. '*/15 * * * *', '0 6 * * 1-5', '@daily' or '@every 20s'"


class InvalidSchedule(ValueError):
    """``spec.schedule`` or ``spec.timeZone`` cannot be evaluated; ``str()`` says why, for the user."""


class Schedule(Protocol):
    """The due instants of a schedule (aware datetimes in UTC)."""

    def next_after(self, t: datetime) -> datetime | None:
        """The first due time strictly after ``t``; None if there is none."""
        ...

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last due time at or before ``t``; None if there is none."""
        ...


@dataclass(frozen=True)
class Every:
    """``@every D``: due at ``anchor + k * seconds`` for k >= 1."""

    seconds: int
    anchor: datetime

    def _k(self, t: datetime) -> int:
        return math.floor((t - self.anchor).total_seconds() / self.seconds)

    def _at(self, k: int) -> datetime:
        return self.anchor + timedelta(seconds=k * self.seconds)

    def next_after(self, t: datetime) -> datetime | None:
        k = max(self._k(t) + 1, 1)
        due = self._at(k)
        return due if due > t else self._at(k + 1)  # float rounding at an exact boundary

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        k = self._k(t)
        if k >= 1 and self._at(k) > t:  # float rounding at an exact boundary
            k -= 1
        return self._at(k) if k >= 1 else None


@dataclass(frozen=True)
class Cron:
    """A 5-field cron line in a time zone, through croniter."""

    expression: str
    zone: ZoneInfo
    follows_wall_time: bool  # minute or hour starts with '*': due in both passes of a repeated hour

    def _skip(self, due: datetime) -> bool:
        """The second pass of a repeated wall time (clocks went back), for a schedule of fixed times."""
        if self.follows_wall_time:
            return False
        wall = due.astimezone(self.zone)
        return wall.fold == 1 and wall.replace(fold=0).utcoffset() != wall.utcoffset()

    def _walk(self, start: datetime, forward: bool) -> Iterator[datetime]:
        it = croniter(self.expression, start.astimezone(self.zone))
        while True:
            try:
                due = it.get_next(datetime) if forward else it.get_prev(datetime)
            except CroniterBadDateError:  # no such date within croniter's search horizon
                return
            due = due.astimezone(UTC)
            if not self._skip(due):
                yield due

    def next_after(self, t: datetime) -> datetime | None:
        return next(self._walk(t, True), None)

    def _previous(self, t: datetime) -> datetime | None:
        return next(self._walk(t, False), None)

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        # croniter's get_prev is strictly before its start; ``t`` itself may be a due time.
        before = self._previous(t)
        if before is None:
            return None
        after = self.next_after(before)
        return after if after is not None and after <= t else before


def parse_zone(time_zone: str | None) -> ZoneInfo:
    name = time_zone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidSchedule(f"spec.timeZone {name!r} is not an IANA time zone "
                              "(e.g. UTC, Europe/Berlin, America/New_York)") from exc


def parse_every(text: str, created: datetime) -> Every:
    interval = text[len(EVERY):].strip()
    try:
        seconds = parse_duration(interval)
    except ValueError as exc:
        raise InvalidSchedule(f"spec.schedule {text!r}: {exc}") from exc
    whole = round(seconds)
    if whole < 1 or abs(seconds - whole) > 1e-6:
        raise InvalidSchedule(f"spec.schedule {text!r}: the interval must be a whole number of seconds, at least "
                              "1s (a run is named after the second it is due)")
    return Every(whole, created.astimezone(UTC))


def parse_cron(text: str, time_zone: str | None) -> Cron:
    zone = parse_zone(time_zone)
    expression = MACROS.get(text.lower(), text) if text.startswith("@") else text
    if expression.startswith("@"):
        raise InvalidSchedule(f"spec.schedule {text!r} is not a known macro: use one of {', '.join(MACROS)} "
                              "or @every <duration>")
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(f"spec.schedule {text!r} must have 5 fields ({CRON_FIELDS}), {EXAMPLES}")
    cron = Cron(" ".join(fields), zone, fields[0].startswith("*") or fields[1].startswith("*"))
    try:
        croniter(cron.expression, datetime(2000, 1, 1, tzinfo=zone))
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidSchedule(f"spec.schedule {text!r} is not a valid cron expression ({CRON_FIELDS}): "
                              f"{exc}") from exc
    return cron


def parse_schedule(text: str, time_zone: str | None, created: datetime) -> Schedule:
    """The schedule ``text`` means, in ``time_zone``; ``created`` anchors ``@every``. InvalidSchedule
    when it cannot be evaluated or is never due (``0 0 30 2 *``)."""
    text = text.strip()
    schedule: Schedule
    if text == EVERY or text.startswith(EVERY + " "):
        schedule = parse_every(text, created)
    else:
        schedule = parse_cron(text, time_zone)
    if schedule.next_after(created) is None:
        raise InvalidSchedule(f"spec.schedule {text!r} is never due (no such date)")
    return schedule


def due_between(schedule: Schedule, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
    """The due times in (after, until], at most ``limit`` of them (the earliest)."""
    out: list[datetime] = []
    t = after
    while len(out) < limit:
        due = schedule.next_after(t)
        if due is None or due > until:
            break
        out.append(due)
        t = due
    return out
