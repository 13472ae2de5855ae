"""RunSchedule due times (supercheck.cron): cron lines through croniter in a time zone, macros, @every
anchored to the schedule's creation, daylight saving time, and the messages of an invalid schedule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from supercheck.cron import MACROS, Every, InvalidSchedule, due_between, parse_schedule

CREATED = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def dues(expr: str, tz: str | None, after: datetime, until: datetime, created: datetime = CREATED) -> list[datetime]:
    return due_between(parse_schedule(expr, tz, created), after, until)


def walls(expr: str, tz: str, after: datetime, until: datetime) -> list[str]:
    """The due times as wall clock with their offset: what a user of that zone sees."""
    zone = ZoneInfo(tz)
    return [d.astimezone(zone).strftime("%H:%M%z") for d in dues(expr, tz, after, until)]


# ---------------------------------------------------------------- @every


def test_every_is_anchored_to_the_creation_time():
    s = parse_schedule("@every 20s", None, CREATED)
    assert s.next_after(CREATED) == utc(2026, 1, 1, 12, 0, 27)
    assert s.latest_at_or_before(CREATED + timedelta(seconds=19)) is None  # k >= 1: not the creation itself
    assert s.latest_at_or_before(utc(2026, 1, 1, 12, 1, 0)) == utc(2026, 1, 1, 12, 0, 47)
    assert dues("@every 20s", None, CREATED, utc(2026, 1, 1, 12, 1, 10)) == [
        utc(2026, 1, 1, 12, 0, 27), utc(2026, 1, 1, 12, 0, 47), utc(2026, 1, 1, 12, 1, 7)]


def test_every_boundaries_are_exact():
    s = parse_schedule("@every 20s", None, CREATED)
    due = utc(2026, 1, 1, 12, 0, 47)
    assert s.latest_at_or_before(due) == due  # "at or before": the due time itself
    assert s.latest_at_or_before(due - timedelta(microseconds=1)) == utc(2026, 1, 1, 12, 0, 27)
    assert s.next_after(due) == utc(2026, 1, 1, 12, 1, 7)  # strictly after
    assert s.next_after(due - timedelta(microseconds=1)) == due


def test_every_is_the_same_for_every_replica_and_restart():
    """Parsed anew (another process, a restart) at any moment, the due times are the same instants."""
    far = CREATED + timedelta(days=400, seconds=13)
    a = parse_schedule("@every 1m30s", None, CREATED).latest_at_or_before(far)
    b = parse_schedule(" @every 90s ", "Europe/Berlin", CREATED).latest_at_or_before(far)  # the zone is moot
    assert a == b
    assert a is not None and (a - CREATED).total_seconds() % 90 == 0 and far - a < timedelta(seconds=90)


@pytest.mark.parametrize("text, seconds", [("@every 1s", 1), ("@every 1h", 3600), ("@every 1h30m", 5400),
                                           ("@every 2000ms", 2), ("@every 1.5m", 90)])
def test_every_durations(text, seconds):
    s = parse_schedule(text, None, CREATED)
    assert isinstance(s, Every) and s.seconds == seconds


@pytest.mark.parametrize("text, complaint", [
    ("@every 500ms", "whole number of seconds, at least 1s"),
    ("@every 1.5s", "whole number of seconds"),
    ("@every 0s", "at least 1s"),
    ("@every", "is not a duration"),
    ("@every 5 minutes", "is not a duration"),
    ("@every 5d", "is not a duration"),
])
def test_every_invalid(text, complaint):
    with pytest.raises(InvalidSchedule, match=re.escape(complaint)):
        parse_schedule(text, None, CREATED)


# ---------------------------------------------------------------- cron in UTC, macros


def test_cron_in_utc_by_default():
    assert dues("*/15 * * * *", None, utc(2026, 1, 1, 12, 0, 7), utc(2026, 1, 1, 13, 0)) == [
        utc(2026, 1, 1, 12, 15), utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 12, 45), utc(2026, 1, 1, 13, 0)]


def test_cron_latest_and_next_at_a_due_time():
    s = parse_schedule("0 * * * *", None, CREATED)
    assert s.latest_at_or_before(utc(2026, 1, 1, 15, 0)) == utc(2026, 1, 1, 15, 0)
    assert s.latest_at_or_before(utc(2026, 1, 1, 15, 0, 0) - timedelta(microseconds=1)) == utc(2026, 1, 1, 14, 0)
    assert s.latest_at_or_before(utc(2026, 1, 1, 15, 59, 59, 999999)) == utc(2026, 1, 1, 15, 0)
    assert s.next_after(utc(2026, 1, 1, 15, 0)) == utc(2026, 1, 1, 16, 0)


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_macros_are_their_cron_lines(macro):
    after, until = utc(2026, 1, 1), utc(2027, 3, 1)
    by_macro = dues(macro, "Europe/Berlin", after, until)
    assert by_macro == dues(MACROS[macro], "Europe/Berlin", after, until)
    assert by_macro


def test_macros_fall_where_expected():
    after = utc(2026, 1, 1, 0, 30)  # a Thursday
    first = {m: parse_schedule(m, None, after).next_after(after) for m in MACROS}
    assert first["@hourly"] == utc(2026, 1, 1, 1, 0)
    assert first["@daily"] == first["@midnight"] == utc(2026, 1, 2)
    assert first["@weekly"] == utc(2026, 1, 4)  # Sunday
    assert first["@monthly"] == utc(2026, 2, 1)
    assert first["@yearly"] == first["@annually"] == utc(2027, 1, 1)


def test_day_of_month_or_day_of_week_as_in_cron():
    """Both restricted: either matches (standard cron), e.g. the 13th and every Friday."""
    got = dues("0 0 13 * 5", None, utc(2026, 2, 1), utc(2026, 3, 1))
    assert [d.day for d in got] == [6, 13, 20, 27]  # Fridays, and Friday the 13th once


def _matches(field: str, value: int) -> bool:
    for part in field.split(","):
        rng, _, step = part.partition("/")
        lo, hi = (0, 59) if rng == "*" else (int(rng.split("-")[0]), int(rng.split("-")[-1]))
        if lo <= value <= hi and (value - lo) % int(step or 1) == 0:
            return True
    return False


def brute_force(expr: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Minute by minute, the wall clock against the fields (numbers, ranges, steps, lists; '*' day fields)."""
    minute, hour = expr.split()[:2]
    zone, out, t = ZoneInfo(tz), [], after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= until:
        wall = t.astimezone(zone)
        if _matches(minute, wall.minute) and _matches(hour, wall.hour):
            out.append(t)
        t += timedelta(minutes=1)
    return out


@pytest.mark.parametrize("expr", ["*/7 * * * *", "5,35 */3 * * *", "0-10/5 9-17 * * *", "59 23 * * *"])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"])
def test_cron_agrees_with_a_minute_by_minute_count(expr, tz):
    after, until = utc(2026, 1, 10, 0, 0), utc(2026, 1, 12, 6, 0)  # no clock change in these zones then
    assert dues(expr, tz, after, until) == brute_force(expr, tz, after, until)


# ---------------------------------------------------------------- time zones and daylight saving time


def test_time_zone_moves_the_instant_with_summer_time():
    winter = dues("0 9 * * *", "Europe/Berlin", utc(2026, 1, 5), utc(2026, 1, 6))
    summer = dues("0 9 * * *", "Europe/Berlin", utc(2026, 7, 5), utc(2026, 7, 6))
    assert winter == [utc(2026, 1, 5, 8, 0)] and summer == [utc(2026, 7, 5, 7, 0)]
    assert dues("30 6 * * 1-5", "America/New_York", utc(2026, 7, 3), utc(2026, 7, 7)) == [
        utc(2026, 7, 3, 10, 30), utc(2026, 7, 6, 10, 30)]  # Friday, then Monday (EDT, UTC-4)


BERLIN_SPRING = (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 3, 0))  # 02:00 CET -> 03:00 CEST at 01:00 UTC
BERLIN_AUTUMN = (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 3, 0))  # 03:00 CEST -> 02:00 CET at 01:00 UTC


def test_spring_forward_a_time_in_the_skipped_hour_is_due_at_the_shift_once():
    assert walls("30 2 * * *", "Europe/Berlin", *BERLIN_SPRING) == ["03:00+0200"]
    # the days around it: 02:30 as usual
    assert walls("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), utc(2026, 3, 28, 12)) == ["02:30+0100"]
    assert walls("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 12), utc(2026, 3, 30, 12)) == ["02:30+0200"]


def test_spring_forward_wall_clock_schedules_just_have_no_skipped_times():
    assert walls("15,45 * * * *", "Europe/Berlin", *BERLIN_SPRING) == [
        "00:15+0100", "00:45+0100", "01:15+0100", "01:45+0100", "03:15+0200", "03:45+0200", "04:15+0200",
        "04:45+0200"]


def test_fall_back_a_fixed_time_in_the_repeated_hour_is_due_once():
    got = dues("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # 02:30 CEST (the first pass), then CET


def test_fall_back_wall_clock_schedules_run_in_both_passes():
    """``*/30 * * * *`` stays every 30 real minutes through the night clocks go back (no gap, no double)."""
    got = dues("*/30 * * * *", "Europe/Berlin", *BERLIN_AUTUMN)
    assert all(b - a == timedelta(minutes=30) for a, b in zip(got, got[1:], strict=False))
    assert len(got) == 8
    assert walls("0 */2 * * *", "Europe/Berlin", *BERLIN_AUTUMN) == ["02:00+0200", "02:00+0100", "04:00+0100"]


def test_half_hour_daylight_saving_in_lord_howe():
    zone = "Australia/Lord_Howe"  # clocks go back 30 minutes (02:00 -> 01:30) on 2026-04-05
    back = (utc(2026, 4, 4, 13), utc(2026, 4, 4, 17))
    assert walls("45 1 * * *", zone, *back) == ["01:45+1100"]
    assert walls("*/15 * * * *", zone, *back)[5:9] == ["01:30+1100", "01:45+1100", "01:30+1030", "01:45+1030"]
    forward = (utc(2026, 10, 3, 13), utc(2026, 10, 3, 17))  # 02:00 -> 02:30 on 2026-10-04
    assert walls("15 2 * * *", zone, *forward) == ["02:30+1100"]


@pytest.mark.parametrize("expr", ["*/30 * * * *", "30 2 * * *", "0 */2 * * *", "15,45 1-3 * * *", "@hourly"])
@pytest.mark.parametrize("tz, window", [
    ("Europe/Berlin", BERLIN_SPRING), ("Europe/Berlin", BERLIN_AUTUMN),
    ("America/New_York", (utc(2026, 3, 8, 4), utc(2026, 3, 8, 10))),
    ("America/New_York", (utc(2026, 11, 1, 4), utc(2026, 11, 1, 10))),
    ("Australia/Sydney", (utc(2026, 4, 4, 13), utc(2026, 4, 4, 19))),
    ("Australia/Lord_Howe", (utc(2026, 10, 3, 12), utc(2026, 10, 3, 18))),
])
def test_latest_and_next_agree_across_clock_changes(expr, tz, window):
    """Whatever the zone does, the two questions the plan asks answer consistently: each due time is the
    latest at itself, the one before it is the latest just before it, and none is due in between."""
    after, until = window
    s = parse_schedule(expr, tz, after)
    got = due_between(s, after - timedelta(hours=3), until)
    assert got == sorted(set(got))
    for prev, due in zip(got, got[1:], strict=False):
        assert s.latest_at_or_before(due) == due
        assert s.latest_at_or_before(due - timedelta(seconds=1)) == prev
        assert s.next_after(prev) == due
        middle = prev + (due - prev) / 2
        assert s.latest_at_or_before(middle) == prev and s.next_after(middle) == due


# ---------------------------------------------------------------- what is refused, in words


@pytest.mark.parametrize("text, tz, complaint", [
    ("* * * *", None, "must have 5 fields (minute hour day-of-month month day-of-week)"),
    ("0 * * * * *", None, "must have 5 fields"),  # croniter's seconds field: not ours
    ("61 * * * *", None, "is not a valid cron expression"),
    ("*/0 * * * *", None, "is not a valid cron expression"),
    ("0 0 * 13 *", None, "is not a valid cron expression"),
    ("H * * * *", None, "is not a valid cron expression"),
    ("@reboot", None, "is not a known macro"),
    ("0 0 30 2 *", None, "is never due"),
    ("@daily", "Mars/Olympus_Mons", "spec.timeZone 'Mars/Olympus_Mons' is not an IANA time zone"),
    ("@daily", "../../etc/passwd", "is not an IANA time zone"),
])
def test_invalid_schedules_say_what_is_wrong(text, tz, complaint):
    with pytest.raises(InvalidSchedule, match=re.escape(complaint)):
        parse_schedule(text, tz, CREATED)


def test_extended_cron_that_croniter_knows_is_accepted():
    assert dues("0 0 L * *", None, utc(2026, 2, 1), utc(2026, 3, 1)) == [utc(2026, 2, 28)]  # last day of month
    assert dues("0 0 * * 1#2", None, utc(2026, 1, 1), utc(2026, 2, 1)) == [utc(2026, 1, 12)]  # 2nd Monday
    assert dues("0 12 * JAN MON", None, utc(2026, 1, 1), utc(2026, 1, 13)) == [utc(2026, 1, 5, 12),
                                                                              utc(2026, 1, 12, 12)]
