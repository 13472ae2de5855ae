"""A Monitor's pure core (supercheck.monitoring): due times and jitter, the state machine, notifications,
uptime buckets and the status-write policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from supercheck import monitoring as mt
from supercheck.clock import iso
from supercheck.monitormodels import MonitorNotifyTarget, MonitorSpec, MonitorStatus, UptimeBucket

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
GOOD = mt.CheckResult(True, 12, "HTTP 200 in 12 ms")
BAD = mt.CheckResult(False, 3, "expected a 2xx status, got 503")


def spec(**kw) -> MonitorSpec:
    return MonitorSpec.model_validate({"http": {"url": "http://127.0.0.1:1/"}, **kw})


# ---------------------------------------------------------------- when


@pytest.mark.parametrize(("interval", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 1), ("2h", 7200)])
def test_interval_is_the_spec_duration_at_least_one_second(interval, seconds):
    assert mt.interval_seconds(spec(interval=interval)) == seconds


def test_the_jitter_offset_is_fixed_per_uid_and_inside_the_interval():
    uid = "0b5f1c9e-7f5a-4c1e-9a38-2d7c1e1d2f10"
    assert mt.jitter_offset(uid, 10) == mt.jitter_offset(uid, 10)  # a restart keeps the phase
    assert 0 <= mt.jitter_offset(uid, 10) < 10
    assert mt.jitter_offset(uid, 60) == pytest.approx(mt.jitter_offset(uid, 10) * 6)  # the same fraction


def test_a_thousand_monitors_spread_over_the_interval():
    offsets = [mt.jitter_offset(str(uuid.UUID(int=i * 7919 + 1, version=4)), 10.0) for i in range(1000)]
    per_second = [sum(1 for o in offsets if s <= o < s + 1) for s in range(10)]
    assert sum(per_second) == 1000
    assert max(per_second) <= 140 and min(per_second) >= 60, per_second  # ~100 a second, not 1000 at once


def test_next_slot_is_the_first_due_time_at_or_after():
    now = T0.timestamp() + 0.25
    due = mt.next_slot(now, 10, 3.5)
    assert now <= due < now + 10
    assert (due - 3.5) % 10 == pytest.approx(0, abs=1e-6)
    assert mt.next_slot(due, 10, 3.5) == due  # a due time is its own next slot


def test_a_new_monitor_checks_at_once_and_one_checked_before_keeps_its_phase():
    now = T0.timestamp() + 1
    assert mt.first_due(now, 10, 3.5, checked_before=False) == now
    assert mt.first_due(now, 10, 3.5, checked_before=True) == mt.next_slot(now, 10, 3.5)


def test_after_a_check_missed_slots_are_skipped_and_a_first_check_is_not_repeated_at_once():
    offset = 3.0
    due = mt.next_slot(T0.timestamp(), 10, offset)
    assert mt.due_after_check(due, due + 0.1, 10, offset) == due + 10  # the next slot
    assert mt.due_after_check(due, due + 25, 10, offset) == due + 30  # a 25 s check: two slots skipped
    first = due - 1  # a first check made at once, 1 s before a slot
    assert mt.due_after_check(first, first + 0.01, 10, offset) == due + 10  # not again a second later


# ---------------------------------------------------------------- state


def checks(results, status=None, failure_threshold=3, success_threshold=1, start=T0):
    status = mt.initial_status(status or MonitorStatus(), start)
    changes = []
    for i, r in enumerate(results):
        status, change = mt.record_check(status, r, start + timedelta(seconds=10 * (i + 1)), failure_threshold,
                                         success_threshold)
        changes.append(change)
    return status, changes


def test_a_new_monitor_is_unknown_then_up_after_success_threshold_good_checks():
    s = mt.initial_status(MonitorStatus(), T0)
    assert (s.state, s.since) == ("Unknown", iso(T0))
    s, changes = checks([GOOD, GOOD], success_threshold=2)
    assert changes == [None, mt.Change("Unknown", "Up")]
    assert (s.state, s.since, s.consecutiveSuccesses, s.checks) == ("Up", iso(T0 + timedelta(seconds=20)), 2, 2)
    assert (s.lastResult, s.lastLatencyMs, s.message) == ("HTTP 200 in 12 ms", 12, None)


def test_failure_threshold_failed_checks_in_a_row_make_it_down():
    s, changes = checks([GOOD, BAD, BAD, BAD, BAD])
    assert changes == [mt.Change("Unknown", "Up"), None, None, mt.Change("Up", "Down"), None]
    down_at = iso(T0 + timedelta(seconds=40))
    assert (s.state, s.since, s.incidentStartedAt, s.consecutiveFailures) == ("Down", down_at, down_at, 4)
    assert s.lastFailure.message == BAD.message and s.lastFailure.at == iso(T0 + timedelta(seconds=50))
    assert s.message == BAD.message


def test_failures_below_the_threshold_say_how_close_it_is():
    s, _ = checks([GOOD, BAD, BAD])
    assert s.state == "Up"
    assert s.message == f"{BAD.message} (2 of 3 failed checks before Down)"


def test_a_flapping_target_never_goes_down():
    s, changes = checks([GOOD, BAD, BAD, GOOD, BAD, GOOD, BAD, BAD, GOOD])
    assert s.state == "Up" and changes.count(None) == 8
    assert s.consecutiveFailures == 0 and s.message is None


def test_a_down_monitor_comes_back_up_after_success_threshold_good_checks():
    s, changes = checks([BAD, BAD, BAD, GOOD, GOOD], success_threshold=2)
    assert changes[2] == mt.Change("Unknown", "Down")
    assert changes[3] is None and changes[4] == mt.Change("Down", "Up")
    assert s.state == "Up" and s.incidentStartedAt == iso(T0 + timedelta(seconds=30))  # kept: the last outage
    s2, _ = checks([BAD, BAD, BAD, GOOD], success_threshold=2)
    assert (s2.state, s2.message) == ("Down", "1 of 2 good checks before Up")


def test_no_result_only_changes_the_message():
    s, _ = checks([GOOD])
    noted = mt.note(s, "no check result: TestRun m-1 was Rejected")
    assert noted.message == "no check result: TestRun m-1 was Rejected"
    assert (noted.state, noted.checks, noted.consecutiveSuccesses) == (s.state, s.checks, s.consecutiveSuccesses)


def test_suspended_is_unknown_with_a_message_and_resumed_drops_it():
    s, _ = checks([BAD, BAD, BAD])
    paused = mt.suspended(s, T0 + timedelta(hours=1))
    assert (paused.state, paused.since, paused.message) == ("Unknown", iso(T0 + timedelta(hours=1)), mt.MSG_SUSPENDED)
    assert paused.consecutiveFailures == 0 and paused.notifiedState == s.notifiedState
    assert mt.suspended(paused, T0 + timedelta(hours=2)).since == paused.since  # already Unknown: since stays
    assert mt.resumed(paused).message is None


# ---------------------------------------------------------------- notifications


def test_down_is_told_once_recovery_only_after_down():
    up, _ = checks([GOOD])
    assert mt.notification_due(up) is None  # Unknown -> Up: no news
    down, _ = checks([BAD, BAD, BAD])
    assert mt.notification_due(down) == "Down"  # Unknown -> Down
    told = down.model_copy(update={"notifiedState": "Down"})
    assert mt.notification_due(told) is None  # never twice
    back, _ = checks([GOOD], status=told)
    assert mt.notification_due(back) == "Up"
    assert mt.notification_due(back.model_copy(update={"notifiedState": "Up"})) is None


def test_a_suspension_does_not_repeat_the_down_message():
    down, _ = checks([BAD, BAD, BAD])
    told = down.model_copy(update={"notifiedState": "Down"})
    again, _ = checks([BAD, BAD, BAD], status=mt.suspended(told, T0))
    assert again.state == "Down" and mt.notification_due(again) is None
    back, _ = checks([GOOD], status=mt.suspended(told, T0))
    assert mt.notification_due(back) == "Up"  # the incident's recovery is still told


def test_targets_for_filters_by_on():
    a = MonitorNotifyTarget(url="http://a/")
    d = MonitorNotifyTarget(url="http://d/", on=["Down"])
    u = MonitorNotifyTarget(url="http://u/", on=["Up"])
    assert mt.targets_for([a, d, u], "Down") == [a, d]
    assert mt.targets_for([a, d, u], "Up") == [a, u]


def test_the_payload_of_a_recovery_carries_the_downtime():
    s, _ = checks([BAD, BAD, BAD, BAD, GOOD])  # Down at +30 s, Up at +50 s
    body = mt.notification_payload("ns", "shop", "u1", s, "Down")
    assert body == {"kind": "Monitor", "namespace": "ns", "name": "shop", "uid": "u1", "state": "Up",
                    "previousState": "Down", "since": iso(T0 + timedelta(seconds=50)),
                    "lastResult": GOOD.message, "message": None, "consecutiveFailures": 0,
                    "incidentStartedAt": iso(T0 + timedelta(seconds=30)), "downtimeSeconds": 20.0}
    down, _ = checks([BAD, BAD, BAD])
    assert "downtimeSeconds" not in mt.notification_payload("ns", "shop", "u1", down, "Unknown")


# ---------------------------------------------------------------- uptime


def test_checks_are_counted_in_hourly_buckets_and_168_are_kept():
    buckets: list[UptimeBucket] = []
    for h in range(200):
        buckets = mt.count_check(buckets, T0 + timedelta(hours=h, minutes=5), ok=h % 2 == 0)
    assert len(buckets) == 168
    assert buckets[-1].hour == (T0 + timedelta(hours=199)).strftime("%Y-%m-%dT%H:00:00Z")
    assert buckets[0].hour == (T0 + timedelta(hours=32)).strftime("%Y-%m-%dT%H:00:00Z")
    two = mt.count_check(mt.count_check([], T0, True), T0 + timedelta(minutes=59), False)
    assert [(b.checks, b.failures) for b in two] == [(2, 1)]


def test_uptime_over_24_hours_and_7_days():
    buckets = [UptimeBucket(hour=(T0 - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00:00Z"), checks=100,
                            failures=10 if h >= 24 else 0) for h in range(168)]
    up = mt.uptime(buckets, T0 + timedelta(minutes=30))
    assert up.last24h == 100.0
    assert up.last7d == pytest.approx(100 * (168 * 100 - 144 * 10) / (168 * 100), abs=0.001)
    assert mt.uptime([], T0).last24h is None


def test_one_failure_in_a_million_still_shows_below_100():
    assert mt.percent(999_999, 1_000_000) == 99.999
    assert mt.percent(2, 3) == 66.666  # rounded down
    assert mt.percent(0, 0) is None


def test_record_check_keeps_uptime_current():
    s, _ = checks([GOOD, GOOD, GOOD, BAD])
    assert s.uptime.last24h == 75.0 and s.uptime.last7d == 75.0


# ---------------------------------------------------------------- status writes


def test_salient_changes_are_written_at_once_the_rest_at_the_refresh():
    s, _ = checks([GOOD])
    later, _ = checks([GOOD, GOOD])  # another good check: latency, counters, uptime
    t = T0 + timedelta(seconds=100)
    assert mt.write_due(None, s, None, t, 60)  # never written
    assert not mt.write_due(s, later, t, t + timedelta(seconds=10), 60)
    assert mt.write_due(s, later, t, t + timedelta(seconds=60), 60)
    assert not mt.write_due(s, s, t, t + timedelta(seconds=600), 60)  # nothing new: nothing written
    failing, _ = checks([GOOD, BAD])
    assert mt.write_due(s, failing, t, t + timedelta(seconds=1), 60)  # a failure of an Up monitor
    down, _ = checks([BAD, BAD, BAD])
    still_down, _ = checks([BAD, BAD, BAD, BAD])
    assert not mt.write_due(down, still_down, t, t + timedelta(seconds=1), 60)  # a Down monitor failing again
    recovering, _ = checks([BAD, BAD, BAD, GOOD], success_threshold=2)
    assert mt.write_due(down, recovering, t, t + timedelta(seconds=1), 60)  # on its way back
    assert mt.write_due(s, s.model_copy(update={"lastRun": "m-2"}), t, t, 60)  # a new synthetic run


def test_the_patch_is_the_whole_status_with_nones_that_remove_fields():
    s, _ = checks([GOOD])
    patch = mt.status_patch(s)
    assert patch["state"] == "Up" and patch["message"] is None and patch["uptime"]["last24h"] == 100.0
    assert MonitorStatus.model_validate(patch) == s
