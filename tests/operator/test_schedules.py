"""The RunSchedule plan (supercheck.schedules.plan): which time is due, caught up at most once and within
startingDeadlineSeconds; each concurrencyPolicy; counting exactly once; the history limits; suspend; an
invalid schedule; run names and the run object."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from supercheck.schedmodels import RunScheduleSpec, RunScheduleStatus
from supercheck.schedules import (
    Plan,
    ScheduledRun,
    owned_by,
    plan,
    run_name,
    run_object,
    schedule_label,
    stamp,
)
from supercheck.vocabulary import ScheduleReason

CREATED = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
K6 = {"type": "k6", "script": {"inline": "export default function () {}"}}
NAME = "nightly"


def at(seconds: float) -> datetime:
    return CREATED + timedelta(seconds=seconds)


def spec(**fields) -> RunScheduleSpec:
    return RunScheduleSpec.model_validate({"schedule": "@every 20s", "testRun": K6, **fields})


def run(due_seconds: int, phase: str | None = None, *, kind: str = "TestRun", done: float | None = None,
        deleting: bool = False, result: str | None = None) -> ScheduledRun:
    due = at(due_seconds)
    completed = stamp(at(done)) if done is not None else (stamp(due + timedelta(seconds=5))
                                                          if phase and phase not in ("Running", "Queued") else None)
    return ScheduledRun(kind=kind, name=run_name(NAME, due), uid=f"uid-{due_seconds}", phase=phase, scheduled=due,
                        completed_at=completed, result=result, deleting=deleting)


def tick(now: float, status: RunScheduleStatus | None = None, runs=(), **spec_fields) -> Plan:
    return plan(NAME, spec(**spec_fields), status or RunScheduleStatus(), at(now), CREATED, list(runs))


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


# ---------------------------------------------------------------- due times


def test_nothing_due_before_the_first_time():
    p = tick(10)
    assert p.create is None and not p.events
    assert p.status.nextScheduleTime == stamp(at(20)) and p.wake_at == at(20)
    assert p.status.reason == ScheduleReason.WAITING and p.status.lastScheduleTime is None


def test_a_due_time_creates_its_run():
    p = tick(20)
    assert p.create is not None and p.create.due == at(20) and p.create.kind == "TestRun"
    assert p.create.name == f"nightly-{int(at(20).timestamp())}"
    st = p.status
    assert st.lastScheduleTime == stamp(at(20)) and st.nextScheduleTime == stamp(at(40)) and p.wake_at == at(40)
    assert [(r.kind, r.name, r.scheduledTime) for r in st.active] == [("TestRun", p.create.name, stamp(at(20)))]
    assert reasons(p) == ["RunCreated"] and st.message == f"created TestRun {p.create.name} for {stamp(at(20))}"


def test_the_plan_is_stable_once_written():
    """Planned again on its own status with its run there (a second replica, a restart, a safety tick):
    nothing to create, nothing to write, nothing to say."""
    first = tick(20)
    again = tick(20.5, first.status, [run(20)])
    assert again.create is None and not again.changed and not again.events


def test_missed_times_are_caught_up_once_the_latest_only():
    p = tick(95, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [run(20, "Passed")])
    assert p.create is not None and p.create.due == at(80)  # 40 and 60 are not run
    later = tick(96, p.status, [run(20, "Passed"), run(80)])
    assert later.create is None


def test_a_time_already_run_by_a_crashed_life_is_not_run_again():
    """The run of a time exists, the status does not know it (the write was lost): no second run, and
    the time is recorded as the last one scheduled."""
    p = tick(41, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [run(20, "Passed"), run(40)])
    assert p.create is None and p.status.lastScheduleTime == stamp(at(40))


def test_starting_deadline_a_time_found_too_late_is_missed_once():
    status = RunScheduleStatus(lastScheduleTime=stamp(at(20)))
    p = tick(95, status, [run(20, "Passed")], startingDeadlineSeconds=10)
    assert p.create is None and p.status.reason == ScheduleReason.MISSED_SCHEDULE
    assert p.status.message == (f"missed {stamp(at(80))}: found more than startingDeadlineSeconds (10) after it; "
                                f"the next run is at {stamp(at(100))}")
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "MissedSchedule")]
    assert p.status.lastScheduleTime == stamp(at(20))
    again = tick(97, p.status, [run(20, "Passed")], startingDeadlineSeconds=10)
    assert again.create is None and not again.events and not again.changed  # told once
    nxt = tick(100.5, p.status, [run(20, "Passed")], startingDeadlineSeconds=10)
    assert nxt.create is not None and nxt.create.due == at(100)


def test_starting_deadline_within_it_the_missed_time_runs():
    p = tick(89, RunScheduleStatus(lastScheduleTime=stamp(at(20))), startingDeadlineSeconds=10)
    assert p.create is not None and p.create.due == at(80)


def test_a_clock_behind_the_status_schedules_nothing():
    p = tick(30, RunScheduleStatus(lastScheduleTime=stamp(at(60))), [run(60, "Passed")])
    assert p.create is None


def test_cron_in_a_time_zone_names_the_run_by_the_instant():
    p = plan(NAME, spec(schedule="0 9 * * *", timeZone="Europe/Berlin"), RunScheduleStatus(),
             datetime(2030, 1, 2, 8, 0, 1, tzinfo=UTC), CREATED, [])
    nine = datetime(2030, 1, 2, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert p.create is not None and p.create.due == nine and p.create.name == f"nightly-{int(nine.timestamp())}"
    assert p.status.nextScheduleTime == "2030-01-03T08:00:00Z"


# ---------------------------------------------------------------- concurrencyPolicy


def test_allow_starts_another_beside_the_active_one():
    p = tick(40, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [run(20, "Running")])
    assert p.create is not None and not p.replace
    assert [r.name for r in p.status.active] == [run_name(NAME, at(20)), run_name(NAME, at(40))]


def test_forbid_skips_the_time_while_a_run_is_active_and_says_so():
    active = run(20, "Running")
    p = tick(40, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [active], concurrencyPolicy="Forbid")
    assert p.create is None and p.skipped == at(40)
    st = p.status
    assert st.lastSkippedTime == stamp(at(40)) and st.skippedRuns == 1 and st.lastScheduleTime == stamp(at(20))
    assert st.reason == ScheduleReason.RUN_SKIPPED
    assert st.message == f"skipped {stamp(at(40))}: TestRun {active.name} is still active (concurrencyPolicy Forbid)"
    assert [(e.type, e.reason) for e in p.events] == [("Normal", "RunSkipped")]
    # the skipped time is spent: not counted twice, not run when the active run ends before the next time
    again = tick(41, st, [active], concurrencyPolicy="Forbid")
    assert again.create is None and again.status.skippedRuns == 1 and not again.events
    ended = tick(45, st, [run(20, "Passed")], concurrencyPolicy="Forbid")
    assert ended.create is None
    nxt = tick(60, ended.status, [run(20, "Passed")], concurrencyPolicy="Forbid")
    assert nxt.create is not None and nxt.create.due == at(60)


def test_forbid_with_nothing_active_creates():
    p = tick(40, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [run(20, "Failed")], concurrencyPolicy="Forbid")
    assert p.create is not None and p.skipped is None


def test_replace_deletes_the_active_runs_then_creates():
    old = run(20, "Running")
    p = tick(40, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [old, run(0, "Passed")],
             concurrencyPolicy="Replace")
    assert p.replace == (old,) and p.create is not None and p.create.due == at(40)
    assert [r.name for r in p.status.active] == [p.create.name]
    assert p.status.message == (f"replaced TestRun {old.name} by TestRun {p.create.name} for {stamp(at(40))} "
                                "(concurrencyPolicy Replace)")
    assert reasons(p) == ["RunReplaced"]


def test_replace_a_run_being_deleted_is_not_replaced_again():
    going = run(20, "Running", deleting=True)
    p = tick(40, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [going], concurrencyPolicy="Replace")
    assert p.replace == () and p.create is not None and reasons(p) == ["RunCreated"]


def test_a_jobrun_template_creates_jobruns():
    job = {"type": "playwright", "testsFrom": {"configMapRef": {"name": "suite"}}}
    p = plan(NAME, RunScheduleSpec.model_validate({"schedule": "@every 20s", "jobRun": job}), RunScheduleStatus(),
             at(20), CREATED, [])
    assert p.create is not None and p.create.kind == "JobRun" and p.create.plural == "jobruns"


# ---------------------------------------------------------------- counting and history


def test_ended_runs_are_counted_exactly_once():
    runs = [run(20, "Passed"), run(40, "Failed"), run(60, "Running")]
    p = tick(61, RunScheduleStatus(lastScheduleTime=stamp(at(60))), runs)
    st = p.status
    assert (st.passedRuns, st.failedRuns) == (1, 1)
    assert st.countedRuns == sorted([runs[0].name, runs[1].name])
    again = tick(62, st, runs)
    assert (again.status.passedRuns, again.status.failedRuns) == (1, 1) and not again.changed
    # the running one ends (TimedOut counts as not passed), a counted one is gone (pruned)
    later = tick(70, st, [runs[1], run(60, "TimedOut")])
    assert (later.status.passedRuns, later.status.failedRuns) == (1, 2)
    assert later.status.countedRuns == sorted([runs[1].name, run_name(NAME, at(60))])


def test_runs_being_deleted_are_neither_active_nor_counted():
    replaced = run(20, "Cancelled", deleting=True)  # cancelled by its finalizer after a Replace
    pruned = run(0, "Passed", deleting=True)  # counted before the history deleted it
    p = tick(41, RunScheduleStatus(lastScheduleTime=stamp(at(40)), passedRuns=1, countedRuns=[pruned.name]),
             [replaced, pruned, run(40, "Running")])
    assert (p.status.passedRuns, p.status.failedRuns) == (1, 0)
    assert p.status.countedRuns == [pruned.name]  # kept while it is listed: it must not be counted again
    assert [r.name for r in p.status.active] == [run_name(NAME, at(40))]


def test_history_limits_delete_the_oldest_ended_runs_passed_and_not_passed_apart():
    runs = [run(20, "Passed"), run(40, "Failed"), run(60, "Passed"), run(80, "Error"), run(100, "Passed"),
            run(120, "Running")]
    p = tick(121, RunScheduleStatus(lastScheduleTime=stamp(at(120))), runs,
             successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1)
    assert [r.name for r in p.prune] == [runs[0].name, runs[1].name, runs[2].name]  # oldest first
    assert (p.status.passedRuns, p.status.failedRuns) == (3, 2)  # counted in the same write, before deletion


def test_history_limit_zero_keeps_no_ended_run_of_that_kind():
    runs = [run(20, "Passed"), run(40, "Failed")]
    p = tick(41, RunScheduleStatus(lastScheduleTime=stamp(at(40))), runs, successfulRunsHistoryLimit=0)
    assert [r.name for r in p.prune] == [runs[0].name]


def test_default_history_limits_are_three_and_one():
    runs = [run(20 * i, "Passed") for i in range(1, 6)] + [run(200, "Failed"), run(220, "Failed")]
    p = tick(221, RunScheduleStatus(lastScheduleTime=stamp(at(220))), runs)
    assert [r.scheduled for r in p.prune] == [at(20), at(40), at(200)]


def test_last_run_and_last_successful_time():
    runs = [run(20, "Passed", done=30), run(40, "Failed", done=50, result="1 of 2 checks failed")]
    st = tick(51, RunScheduleStatus(lastScheduleTime=stamp(at(40))), runs).status
    assert st.lastRun is not None and st.lastRun.name == runs[1].name and st.lastRun.phase == "Failed"
    assert st.lastRun.result == "1 of 2 checks failed" and st.lastRun.scheduledTime == stamp(at(40))
    assert st.lastSuccessfulTime == stamp(at(30))
    # the newest ended run pruned meanwhile: lastRun stays what it was
    kept = tick(52, st, [runs[0]]).status
    assert kept.lastRun == st.lastRun and kept.lastSuccessfulTime == stamp(at(30))


# ---------------------------------------------------------------- suspend, invalid schedules


def test_suspend_creates_nothing_and_has_no_next_time():
    p = tick(100, RunScheduleStatus(lastScheduleTime=stamp(at(20)), nextScheduleTime=stamp(at(40))),
             [run(20, "Passed")], suspend=True)
    assert p.create is None and p.status.nextScheduleTime is None and p.wake_at is None
    assert p.status.reason == ScheduleReason.SUSPENDED and reasons(p) == ["Suspended"]
    assert p.status.passedRuns == 1  # runs are still counted while suspended
    assert not tick(140, p.status, [run(20, "Passed")], suspend=True).events  # said once


def test_resumed_the_latest_missed_time_runs_once_or_not_beyond_the_deadline():
    suspended = tick(100, RunScheduleStatus(lastScheduleTime=stamp(at(20))), [run(20, "Passed")],
                     suspend=True).status
    resumed = tick(130, suspended, [run(20, "Passed")])
    assert resumed.create is not None and resumed.create.due == at(120)
    assert tick(130, suspended, [run(20, "Passed")], startingDeadlineSeconds=5).create is None


def test_an_invalid_schedule_says_why_once_and_creates_nothing():
    p = tick(100, runs=[run(20, "Passed")], schedule="0 0 30 2 *")
    assert p.create is None and p.status.reason == ScheduleReason.INVALID_SCHEDULE
    assert p.status.message == "spec.schedule '0 0 30 2 *' is never due (no such date)"
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "InvalidSchedule")]
    assert p.status.passedRuns == 1 and p.wake_at is None
    assert not tick(130, p.status, [run(20, "Passed")], schedule="0 0 30 2 *").events
    bad_zone = tick(100, schedule="@daily", timeZone="Nowhere/Atlantis")
    assert "spec.timeZone 'Nowhere/Atlantis' is not an IANA time zone" in (bad_zone.status.message or "")
    fixed = tick(101, p.status, [run(20, "Passed")])
    assert fixed.status.reason != ScheduleReason.INVALID_SCHEDULE and fixed.create is not None


def test_create_failed_keeps_the_time_due_and_warns_once():
    p = tick(20)
    failed = p.create_failed(ScheduleReason.CREATE_REFUSED, "refused: quota")
    assert failed.create is None and failed.status.lastScheduleTime is None and failed.status.active == []
    assert [(e.type, e.reason) for e in failed.events] == [("Warning", "CreateRefused")]
    again = tick(21, failed.status)
    assert again.create is not None and again.create.due == at(20)  # tried again
    assert not again.create_failed(ScheduleReason.CREATE_REFUSED, "refused: quota").events


# ---------------------------------------------------------------- names, labels, the run object

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_run_names_are_the_schedule_and_the_unix_second():
    due = datetime(2030, 1, 1, 12, 0, 20, tzinfo=UTC)
    assert run_name("nightly", due) == f"nightly-{int(due.timestamp())}" == "nightly-1893499220"


def test_long_schedule_names_are_cut_with_a_hash_and_never_collide():
    due = datetime(2030, 1, 1, tzinfo=UTC)
    a, b = "checkout-" + "a" * 60 + "-eu", "checkout-" + "a" * 60 + "-us"
    na, nb = run_name(a, due), run_name(b, due)
    assert na != nb and len(na) <= 63 and len(nb) <= 63
    assert na.endswith(f"-{int(due.timestamp())}") and DNS_LABEL.match(na) and DNS_LABEL.match(nb)
    assert run_name(a, due) == na  # deterministic
    la, lb = schedule_label(a), schedule_label(b)
    assert la != lb and len(la) <= 63 and DNS_LABEL.match(la)
    assert schedule_label("nightly") == "nightly"  # the name itself when it fits


def schedule_body(**spec_fields):
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule",
            "metadata": {"name": NAME, "namespace": "ns", "uid": "sched-uid", "creationTimestamp": stamp(CREATED),
                         "labels": {"team": "checkout", "supercheck.io/schedule": "x",
                                    "app.kubernetes.io/managed-by": "helm"}},
            "spec": {"schedule": "@every 20s", "testRun": {**K6, "priority": 0}, **spec_fields}}


def test_the_run_object_is_owned_labelled_and_annotated():
    body = schedule_body()
    obj = run_object(body, RunScheduleSpec.model_validate(body["spec"]), at(20))
    meta = obj["metadata"]
    assert obj["apiVersion"] == "supercheck.io/v1alpha1" and obj["kind"] == "TestRun"
    assert meta["name"] == run_name(NAME, at(20)) and meta["namespace"] == "ns"
    assert meta["labels"] == {"team": "checkout", "supercheck.io/schedule": NAME}
    assert meta["annotations"] == {"supercheck.io/scheduled-time": "2030-01-01T12:00:20Z"}
    assert meta["ownerReferences"] == [{"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule",
                                        "name": NAME, "uid": "sched-uid", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert obj["spec"] == {**K6, "priority": 0}  # the template as stored, nothing added
    assert owned_by(obj, "sched-uid") and not owned_by(obj, "another-uid")
    listed = ScheduledRun.from_body(obj)
    assert listed.scheduled == at(20) and listed.kind == "TestRun" and not listed.ended


def test_the_run_object_of_a_jobrun_template():
    job = {"type": "playwright", "testsFrom": {"configMapRef": {"name": "suite"}}, "parallelism": 2}
    body = schedule_body()
    body["spec"] = {"schedule": "@daily", "jobRun": job}
    obj = run_object(body, RunScheduleSpec.model_validate(body["spec"]), at(20))
    assert obj["kind"] == "JobRun" and obj["spec"] == job


@pytest.mark.parametrize("phase, ended, passed", [(None, False, False), ("Queued", False, False),
                                                  ("Running", False, False), ("Uploading", False, False),
                                                  ("Passed", True, True), ("Failed", True, False),
                                                  ("Error", True, False), ("TimedOut", True, False),
                                                  ("Cancelled", True, False), ("Rejected", True, False)])
def test_which_phases_end_a_run(phase, ended, passed):
    r = run(20, phase)
    assert (r.ended, r.passed) == (ended, passed)


# ---------------------------------------------------------------- the examples, as written

REPO = Path(__file__).resolve().parents[2]


def _manifests() -> list[dict]:
    docs = []
    for f in sorted((REPO / "examples").glob("*.y*ml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    text = (REPO / "docs" / "schedules-and-monitors.md").read_text()
    section = text.split("## RunSchedule", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        docs += [d for d in yaml.safe_load_all(block) if d]
    return [d for d in docs if d.get("kind") == "RunSchedule"]


def test_the_documented_and_example_schedules_are_valid_and_due():
    found = _manifests()
    assert {d["metadata"]["name"] for d in found} >= {"k6-every-minute", "shop-nightly"}
    for doc in found:
        s = RunScheduleSpec.model_validate(doc["spec"])
        p = plan(doc["metadata"]["name"], s, RunScheduleStatus(), at(86400 * 2), CREATED, [])
        assert p.create is not None and p.status.reason == ScheduleReason.RUN_CREATED, doc["metadata"]["name"]


def test_create_failed_keeps_the_last_time_the_runs_show():
    p = tick(41, RunScheduleStatus(lastScheduleTime=stamp(at(0))), [run(20, "Passed")])
    assert p.create is not None and p.create.due == at(40)
    failed = p.create_failed(ScheduleReason.RUN_NAME_TAKEN, "taken")
    assert failed.status.lastScheduleTime == stamp(at(20))  # the run of 20 exists: that time stays spent


def test_an_edited_annotation_is_read_or_ignored_never_fatal():
    body = {"kind": "TestRun", "metadata": {"name": "x", "uid": "u", "annotations": {
        "supercheck.io/scheduled-time": "2030-01-01T12:00:20"}}}  # no offset: UTC
    assert ScheduledRun.from_body(body).scheduled == at(20)
    body["metadata"]["annotations"]["supercheck.io/scheduled-time"] = "yesterday"
    assert ScheduledRun.from_body(body).scheduled is None
    p = tick(20, runs=[ScheduledRun.from_body(body)])
    assert p.create is not None
