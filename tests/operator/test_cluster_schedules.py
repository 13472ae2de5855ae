"""RunSchedules on the local control plane: runs created on time (lag under 2 s) for three intervals, the
history limits and the counts, Forbid skipping a time while a run is still active; the operator SIGKILLed
across a due time, and two replicas active at once: exactly one run per time.

About 3 minutes: the schedules run every 20 s (every 5 s with two replicas), the scripts do nothing
(the Forbid one sleeps longer than its interval)."""

from __future__ import annotations

import os
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from operator_kit import QUICK_K6, SLEEPY_K6, TERMINAL, event_reasons, phase, wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION = "supercheck.io", "v1alpha1"
SCHEDULED_TIME = "supercheck.io/scheduled-time"
METRICS = os.environ.get("SUPERCHECK_METRICS_URL", "http://127.0.0.1:18080/metrics")
SECOND_METRICS = "http://127.0.0.1:18100/metrics"  # the second replica (operator_ctl.start_second_replica)


def make_schedule(name: str, schedule: str = "@every 20s", script: str = QUICK_K6, env=None, **spec) -> dict:
    test_run = {"type": "k6", "timeoutSeconds": 120, "script": {"inline": script}, "env": env or []}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RunSchedule", "metadata": {"name": name},
            "spec": {"schedule": schedule, "testRun": test_run, **spec}}


def create_schedule(custom_objects, namespace: str, body: dict) -> dict:
    return custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "runschedules", body)


def get_schedule(custom_objects, namespace: str, name: str) -> dict:
    return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "runschedules", name)


def sched_status(custom_objects, namespace: str, name: str) -> dict:
    return get_schedule(custom_objects, namespace, name).get("status") or {}


def runs_of(custom_objects, namespace: str, schedule: str) -> list[dict]:
    return custom_objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "testruns", label_selector=f"supercheck.io/schedule={schedule}")["items"]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def scheduled(run: dict) -> datetime:
    return ts(run["metadata"]["annotations"][SCHEDULED_TIME])


def created(obj: dict) -> datetime:
    return ts(obj["metadata"]["creationTimestamp"])


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sleep_until(t: datetime) -> None:
    time.sleep(max(0.0, (t - datetime.now(UTC)).total_seconds()))


def metric(name: str, url: str = METRICS, **labels: str) -> float:
    """The sum of the samples of ``name`` with these labels (all of them when none are given)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + " ") or line.startswith(name + "{")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.split()[-1])
    return total


class Recorder:
    """Every run of the schedules seen while polling, as it was first seen: its due time and its creation
    (runs are deleted by the history limits, so a list at the end would not show them all)."""

    def __init__(self, custom_objects, namespace: str, *schedules: str) -> None:
        self.custom_objects, self.namespace, self.schedules = custom_objects, namespace, schedules
        self.seen: dict[str, dict[str, tuple[datetime, datetime]]] = {s: {} for s in schedules}
        self.messages: dict[str, set[str]] = {s: set() for s in schedules}  # status.message, each one seen

    def poll(self) -> None:
        for s in self.schedules:
            for r in runs_of(self.custom_objects, self.namespace, s):
                self.seen[s].setdefault(r["metadata"]["name"], (scheduled(r), created(r)))
            message = sched_status(self.custom_objects, self.namespace, s).get("message")
            if message:
                self.messages[s].add(message)

    def times(self, schedule: str) -> list[datetime]:
        return sorted(t for t, _ in self.seen[schedule].values())


def test_on_time_for_three_intervals_with_history_limits_and_forbid_skipping(
        operator_ctl, namespace, custom_objects, core_v1, db_conn):
    operator_ctl.start(SUPERCHECK_SERVICE_RETRY_SECONDS="1")
    lag_count, lag_fast = metric("supercheck_schedule_lag_seconds_count"), metric(
        "supercheck_schedule_lag_seconds_bucket", le="2.0")
    often = create_schedule(custom_objects, namespace, make_schedule(
        "often", successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1))
    forbid = create_schedule(custom_objects, namespace, make_schedule(
        "forbid", script=SLEEPY_K6, env=[{"name": "SLEEP", "value": "30"}], concurrencyPolicy="Forbid"))
    t0, t1 = created(often), created(forbid)
    rec = Recorder(custom_objects, namespace, "often", "forbid")

    def three_passed_one_kept():
        rec.poll()
        st = sched_status(custom_objects, namespace, "often")
        passed_present = [r for r in runs_of(custom_objects, namespace, "often") if phase(r) == "Passed"]
        return st if st.get("passedRuns", 0) >= 3 and len(passed_present) == 1 else None

    st = wait_for(three_passed_one_kept, 60 + 60, 0.5, "three runs of 'often' passed, one kept")
    rec.poll()

    # On time: the three first due times, each run created within 2 s of its time. The creation stamp has
    # second resolution (truncated) and due times are whole seconds: a lag under 2 s is a difference of <= 1.
    assert rec.times("often")[:3] == [t0 + timedelta(seconds=20 * k) for k in (1, 2, 3)]
    lags = {name: (made - due).total_seconds() for s in rec.seen for name, (due, made) in rec.seen[s].items()}
    assert all(0 <= lag <= 1 for lag in lags.values()), lags
    new_count = metric("supercheck_schedule_lag_seconds_count") - lag_count
    assert new_count >= 4  # three of 'often', at least one of 'forbid'
    assert metric("supercheck_schedule_lag_seconds_bucket", le="2.0") - lag_fast == new_count

    # History: successfulRunsHistoryLimit 1 keeps the newest passed run; the counts hold all of them.
    assert st["passedRuns"] >= 3 and st.get("failedRuns", 0) == 0
    assert st["lastRun"]["phase"] == "Passed" and st["lastSuccessfulTime"]
    assert ts(st["lastScheduleTime"]) >= t0 + timedelta(seconds=60)

    # Forbid: the first run sleeps 30 s, longer than the interval: the second time is skipped and said so.
    fst = sched_status(custom_objects, namespace, "forbid")
    skipped_at = t1 + timedelta(seconds=40)
    assert fst.get("skippedRuns", 0) >= 1, fst
    assert fst["lastSkippedTime"] in {stamp(skipped_at), stamp(skipped_at + timedelta(seconds=20))}, fst
    assert rec.times("forbid")[0] == t1 + timedelta(seconds=20)
    assert skipped_at not in rec.times("forbid")
    first = f"forbid-{int((t1 + timedelta(seconds=20)).timestamp())}"
    assert (f"skipped {stamp(skipped_at)}: TestRun {first} is still active (concurrencyPolicy Forbid)"
            in rec.messages["forbid"]), rec.messages["forbid"]
    assert "RunSkipped" in event_reasons(core_v1, namespace, "forbid", "RunSkipped")

    # PostgreSQL: the runs' rows name their schedule.
    def rows():
        return db_conn.execute("SELECT name FROM runs WHERE namespace = %s AND schedule = 'often' AND final",
                               (namespace,)).fetchall()
    wait_for(lambda: len(rows()) >= 3, 30, 0.5, "rows of 'often' with their schedule")


def test_operator_killed_across_a_due_time_makes_exactly_one_run_for_it(operator_ctl, namespace, custom_objects):
    config = dict(SUPERCHECK_SERVICE_RETRY_SECONDS="1")
    operator_ctl.start(**config)
    t0 = created(create_schedule(custom_objects, namespace, make_schedule("crash")))
    due, after = t0 + timedelta(seconds=20), t0 + timedelta(seconds=40)
    sleep_until(due - timedelta(seconds=3))
    operator_ctl.kill()  # SIGKILL, 3 s before the first time
    assert runs_of(custom_objects, namespace, "crash") == []
    sleep_until(due + timedelta(seconds=3))
    operator_ctl.start(**config)  # back after the time: it is caught up

    def time_run(t):
        return next((r for r in runs_of(custom_objects, namespace, "crash") if scheduled(r) == t), None)

    late = wait_for(lambda: time_run(due), 30, 0.25, "the missed time caught up")
    assert created(late) >= due + timedelta(seconds=3)  # made by the restarted operator
    wait_for(lambda: time_run(after), 40, 0.25, "the next time on schedule")
    times = [scheduled(r) for r in runs_of(custom_objects, namespace, "crash")]
    assert times.count(due) == 1 and len(times) == len(set(times)), times
    # the status follows the run's creation in a write of its own: wait for it rather than read a snapshot
    wait_for(lambda: (t := sched_status(custom_objects, namespace, "crash").get("lastScheduleTime")) is not None
             and ts(t) >= after, 10, 0.25, "lastScheduleTime at the next time")


def test_two_active_replicas_make_exactly_one_run_per_time(operator_ctl, namespace, custom_objects):
    """Peering off: both replicas run a daemon for the schedule and race at each time. The run's name (its
    time) and the resourceVersion-checked status write leave one run per time, created once, counted once."""
    config = dict(SUPERCHECK_PEERING="standalone", SUPERCHECK_SERVICE_RETRY_SECONDS="1")
    operator_ctl.start(**config)
    second = operator_ctl.start_second_replica(**config)

    def up(url):
        try:
            metric("supercheck_capacity_running_limit", url)
            return True
        except OSError:
            return False
    wait_for(lambda: up(SECOND_METRICS), 60, 0.5, "the second replica serving /metrics")
    time.sleep(2)  # its watch has listed the cluster
    body = make_schedule("both", schedule="@every 5s", successfulRunsHistoryLimit=20, failedRunsHistoryLimit=20)
    t0 = created(create_schedule(custom_objects, namespace, body))
    sleep_until(t0 + timedelta(seconds=21))  # four times: +5, +10, +15, +20
    custom_objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, "runschedules", "both",
                                                  {"spec": {"suspend": True}})

    def all_ended():
        runs = runs_of(custom_objects, namespace, "both")
        return runs if runs and all(phase(r) in TERMINAL for r in runs) else None
    runs = wait_for(all_ended, 90, 0.5, "every run of 'both' ended")
    times = sorted(scheduled(r) for r in runs)
    assert len(times) == len(set(times)), times  # never two runs for one time
    assert times[:4] == [t0 + timedelta(seconds=5 * k) for k in (1, 2, 3, 4)], times
    assert second.running()
    made = sum(metric("supercheck_schedule_runs_created_total", url, namespace=namespace)
               for url in (METRICS, SECOND_METRICS))
    assert made == len(runs)  # one creation per run, whichever replica won the race

    def counted():
        st = sched_status(custom_objects, namespace, "both")
        return st if st.get("passedRuns", 0) + st.get("failedRuns", 0) == len(runs) else None
    st = wait_for(counted, 30, 0.5, "every run counted")
    assert st["passedRuns"] == len(runs) and sorted(st["countedRuns"]) == sorted(r["metadata"]["name"] for r in runs)

