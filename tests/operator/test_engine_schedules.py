"""The RunSchedule engine (supercheck.engine.schedules.tick) on the in-memory ports: runs created at their
times, named and owned; status written once per change; Forbid, Replace, the history limits; two replicas
ticking at once and a crash between the create and the status write make one run per time and count
once; the API server down or refusing never ends the daemon."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from engine_kit import K6, World, run, world
from fakes import RecordingEvents
from prometheus_client import CollectorRegistry

from supercheck.clock import parse_iso
from supercheck.engine import schedules
from supercheck.engine.context import Engine
from supercheck.metrics import Metrics
from supercheck.ports import ApiUnavailable
from supercheck.schedules import run_name, stamp

NS = "ns"


def add_schedule(w: World, name: str = "nightly", **spec: Any) -> dict[str, Any]:
    return w.kube.add({"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule",
                       "metadata": {"name": name, "namespace": NS, "generation": 1, "labels": {"team": "qa"}},
                       "spec": {"schedule": "@every 20s", "testRun": K6, **spec}})


def obj(w: World, kind: str, name: str) -> dict[str, Any]:
    return w.kube.objects[(kind, NS, name)]


def schedule_status(w: World, name: str = "nightly") -> dict[str, Any]:
    return obj(w, "RunSchedule", name).get("status") or {}


def run_names(w: World, kind: str = "TestRun") -> list[str]:
    return sorted(n for (k, ns, n) in w.kube.objects if k == kind and ns == NS)


async def tick(w: World, name: str = "nightly", eng: Engine | None = None) -> float | None:
    uid = obj(w, "RunSchedule", name)["metadata"]["uid"]
    return await schedules.tick(eng or w.eng, NS, name, uid)


def due(w: World, seconds: int, name: str = "nightly") -> str:
    """The run name of the due time ``seconds`` after the schedule's creation."""
    created = parse_iso(obj(w, "RunSchedule", name)["metadata"]["creationTimestamp"])
    assert created is not None
    return run_name(name, created + timedelta(seconds=seconds))


def second_replica(w: World) -> Engine:
    """Another operator process on the same cluster: its own metrics and Events, the same API server."""
    return Engine(settings=w.eng.settings, kube=w.kube, ledger=w.ledger, store=w.store,
                  metrics=Metrics(w.eng.settings, registry=CollectorRegistry()), events=RecordingEvents(),
                  clock=w.clock)


def sample(eng: Engine, name: str, **labels: str) -> float:
    return eng.metrics.registry.get_sample_value(name, labels) or 0.0


def test_runs_are_created_at_their_times_named_owned_and_labelled():
    async def go():
        w = world()
        sched = add_schedule(w)
        assert await tick(w) == 20.0  # sleeps until the first due time
        assert run_names(w) == [] and schedule_status(w)["nextScheduleTime"] == "2030-01-01T12:00:20Z"
        for n in (1, 2, 3):
            w.clock.advance(20)
            assert await tick(w) == 20.0
            assert len(run_names(w)) == n
        first = obj(w, "TestRun", due(w, 20))
        meta = first["metadata"]
        assert meta["labels"] == {"team": "qa", "supercheck.io/schedule": "nightly"}
        assert meta["annotations"] == {"supercheck.io/scheduled-time": "2030-01-01T12:00:20Z"}
        assert meta["ownerReferences"][0]["uid"] == sched["metadata"]["uid"]
        assert first["spec"] == K6
        st = schedule_status(w)
        assert st["lastScheduleTime"] == "2030-01-01T12:01:00Z" and st["nextScheduleTime"] == "2030-01-01T12:01:20Z"
        assert [a["name"] for a in st["active"]] == [due(w, 20), due(w, 40), due(w, 60)]
        assert st["observedGeneration"] == 1
        assert w.events.reasons() == ["RunCreated"] * 3
        assert sample(w.eng, "supercheck_schedule_runs_created_total", namespace=NS) == 3
        assert sample(w.eng, "supercheck_schedule_lag_seconds_count") == 3
        assert sample(w.eng, "supercheck_schedule_lag_seconds_sum") == 0.0  # the fake clock does not move
    run(go)


def test_a_tick_between_times_changes_nothing_and_writes_nothing():
    async def go():
        w = world()
        add_schedule(w)
        w.clock.advance(20)
        await tick(w)
        w.clock.advance(5)
        w.kube.calls.clear()
        assert await tick(w) == 15.0
        assert "patch_status" not in w.kube.calls and not any(c.startswith("create_run") for c in w.kube.calls)
    run(go)


def test_the_lag_is_measured_from_the_due_time():
    async def go():
        w = world()
        add_schedule(w)
        w.clock.advance(21.5)  # the daemon woke late
        await tick(w)
        assert sample(w.eng, "supercheck_schedule_lag_seconds_sum") == 1.5
        assert sample(w.eng, "supercheck_schedule_lag_seconds_bucket", le="2.0") == 1
        assert sample(w.eng, "supercheck_schedule_lag_seconds_bucket", le="1.0") == 0
    run(go)


def test_two_replicas_ticking_at_once_make_one_run_and_say_it_once():
    async def go():
        w = world()
        add_schedule(w)
        other = second_replica(w)
        w.clock.advance(20)
        # Interleaved: both read the schedule before either writes (the tick yields while listing runs).
        delays = await asyncio.gather(tick(w), tick(w, eng=other))
        assert w.kube.calls.count("create_run TestRun") == 2  # both tried: the name made it one run
        assert run_names(w) == [due(w, 20)]
        assert 0.0 in delays  # the replica that lost the status write reads again at once...
        for eng in (w.eng, other):
            await tick(w, eng=eng)  # ...and then finds nothing to do
        assert run_names(w) == [due(w, 20)]
        said = w.events.reasons() + other.events.reasons()  # type: ignore[attr-defined]
        assert said == ["RunCreated"]
        made = sum(sample(e, "supercheck_schedule_runs_created_total", namespace=NS) for e in (w.eng, other))
        observed = sum(sample(e, "supercheck_schedule_lag_seconds_count") for e in (w.eng, other))
        assert (made, observed) == (1, 1)
    run(go)


def test_two_replicas_count_an_ended_run_once_and_skip_a_time_once():
    async def go():
        w = world()
        add_schedule(w, concurrencyPolicy="Forbid")
        other = second_replica(w)
        w.clock.advance(20)
        await tick(w)
        w.kube.set_phase("TestRun", due(w, 20), "Running")
        w.clock.advance(20)  # due again while the first is active: skipped, by both at once
        await asyncio.gather(tick(w), tick(w, eng=other))
        await asyncio.gather(tick(w), tick(w, eng=other))
        st = schedule_status(w)
        assert st["skippedRuns"] == 1 and st["lastSkippedTime"] == "2030-01-01T12:00:40Z"
        skipped = sum(sample(e, "supercheck_schedule_skipped_total", namespace=NS) for e in (w.eng, other))
        assert skipped == 1
        w.kube.set_phase("TestRun", due(w, 20), "Passed", completedAt="2030-01-01T12:00:45.000000Z")
        await asyncio.gather(tick(w), tick(w, eng=other))
        await asyncio.gather(tick(w), tick(w, eng=other))
        st = schedule_status(w)
        assert (st["passedRuns"], st["failedRuns"]) == (1, 0) and st["countedRuns"] == [due(w, 20)]
        assert run_names(w) == [due(w, 20)]
    run(go)


def test_killed_between_the_create_and_the_status_write_one_run_per_time():
    async def go():
        w = world()
        add_schedule(w)
        w.clock.advance(20)
        real_patch = w.kube.patch_status

        async def dies(*args: Any, **kwargs: Any) -> Any:
            raise ApiUnavailable("the operator was killed here")
        w.kube.patch_status = dies  # type: ignore[method-assign]
        assert await tick(w) == w.eng.settings.service_retry_seconds
        assert run_names(w) == [due(w, 20)] and "lastScheduleTime" not in schedule_status(w)
        w.kube.patch_status = real_patch  # type: ignore[method-assign]
        restarted = second_replica(w)  # a new process: nothing in memory
        w.clock.advance(1)
        await tick(w, eng=restarted)
        assert run_names(w) == [due(w, 20)]
        assert schedule_status(w)["lastScheduleTime"] == "2030-01-01T12:00:20Z"
        assert sample(restarted, "supercheck_schedule_runs_created_total", namespace=NS) == 0
    run(go)


def test_forbid_skips_while_a_run_is_active():
    async def go():
        w = world()
        add_schedule(w, concurrencyPolicy="Forbid")
        w.clock.advance(20)
        await tick(w)
        w.kube.set_phase("TestRun", due(w, 20), "Running")
        w.clock.advance(20)
        await tick(w)
        assert run_names(w) == [due(w, 20)]
        st = schedule_status(w)
        assert st["reason"] == "RunSkipped" and st["skippedRuns"] == 1
        assert st["message"] == (f"skipped 2030-01-01T12:00:40Z: TestRun {due(w, 20)} is still active "
                                 "(concurrencyPolicy Forbid)")
        assert w.events.posted[-1] == ("Normal", "RunSkipped", st["message"])
        assert sample(w.eng, "supercheck_schedule_skipped_total", namespace=NS) == 1
        w.kube.set_phase("TestRun", due(w, 20), "Passed", completedAt="2030-01-01T12:00:50.000000Z")
        w.clock.advance(20)
        await tick(w)
        assert run_names(w) == [due(w, 20), due(w, 60)]
    run(go)


def test_replace_deletes_the_active_run_and_creates_the_new_one():
    async def go():
        w = world()
        add_schedule(w, concurrencyPolicy="Replace")
        w.clock.advance(20)
        await tick(w)
        old = due(w, 20)
        w.kube.set_phase("TestRun", old, "Running")
        obj(w, "TestRun", old)["metadata"]["finalizers"] = ["supercheck.io/finalizer"]
        w.clock.advance(20)
        await tick(w)
        assert obj(w, "TestRun", old)["metadata"].get("deletionTimestamp")  # its finalizer cancels it
        assert [a["name"] for a in schedule_status(w)["active"]] == [due(w, 40)]
        assert w.events.reasons()[-1] == "RunReplaced"
        w.kube.set_phase("TestRun", old, "Cancelled", completedAt="2030-01-01T12:00:41.000000Z")
        await tick(w)
        w.kube.finalize("TestRun", old)
        await tick(w)
        st = schedule_status(w)
        assert (st["passedRuns"], st["failedRuns"]) == (0, 0)  # a replaced run is not a failed one
        assert run_names(w) == [due(w, 40)]
    run(go)


def test_history_limit_keeps_the_newest_passed_run_and_counts_them_all():
    async def go():
        w = world()
        add_schedule(w, successfulRunsHistoryLimit=1)
        for n in (1, 2, 3):
            w.clock.advance(20)
            await tick(w)
            w.kube.set_phase("TestRun", due(w, 20 * n), "Passed", completedAt=stamp(w.clock.now()))
            await tick(w)  # woken by the run's change
        assert run_names(w) == [due(w, 60)]
        # The pruned runs stay in countedRuns until a tick no longer lists them (a deletion event wakes it):
        # were their deletion to fail, they must not be counted again.
        assert schedule_status(w)["countedRuns"] == [due(w, 40), due(w, 60)]
        await tick(w)
        st = schedule_status(w)
        assert st["passedRuns"] == 3 and st["countedRuns"] == [due(w, 60)]
        assert st["lastRun"]["name"] == due(w, 60) and st["lastRun"]["phase"] == "Passed"
        assert st["lastSuccessfulTime"] == "2030-01-01T12:01:00Z"
    run(go)


def test_the_api_server_down_is_retried_and_never_ends_the_daemon():
    async def go():
        w = world()
        add_schedule(w)
        w.clock.advance(20)
        w.kube.down = True
        assert await tick(w) == w.eng.settings.service_retry_seconds
        assert sample(w.eng, "supercheck_service_errors_total", service="kubernetes") == 1
        w.kube.down = False
        w.clock.advance(2)
        await tick(w)
        assert run_names(w) == [due(w, 20)]  # the time was not lost
        assert sample(w.eng, "supercheck_schedule_lag_seconds_sum") == 2.0
    run(go)


def test_a_refused_run_is_said_once_and_tried_again():
    async def go():
        w = world()
        add_schedule(w)
        w.kube.refuse_create("TestRun", 403,
                             'testruns "x" is forbidden: exceeded quota: runs, limited: count/testruns=5')
        w.clock.advance(20)
        assert await tick(w) == 20.0
        st = schedule_status(w)
        assert st["reason"] == "CreateRefused" and "exceeded quota" in st["message"]
        assert st["message"].startswith(f"TestRun {due(w, 20)} for 2030-01-01T12:00:20Z was refused by the API "
                                        "server (403)")
        assert "lastScheduleTime" not in st and w.events.reasons() == ["CreateRefused"]
        w.clock.advance(5)
        await tick(w)
        assert w.events.reasons() == ["CreateRefused"]  # not again at every tick
        w.kube.refusals.clear()
        w.clock.advance(5)
        await tick(w)
        assert run_names(w) == [due(w, 20)] and schedule_status(w)["reason"] == "RunCreated"
    run(go)


def test_a_run_name_taken_by_someone_else_is_not_taken_for_ours():
    async def go():
        w = world()
        add_schedule(w)
        w.kube.add_testrun(due(w, 20), K6)  # made by hand: no owner
        w.clock.advance(20)
        await tick(w)
        st = schedule_status(w)
        assert st["reason"] == "RunNameTaken" and "is not this schedule's" in st["message"]
        assert "lastScheduleTime" not in st and w.events.posted[-1][0] == "Warning"
    run(go)


def test_runs_of_a_namesake_deleted_schedule_are_not_this_ones():
    async def go():
        w = world()
        add_schedule(w)
        stale = w.kube.add_testrun("nightly-1", K6, labels={"supercheck.io/schedule": "nightly"})
        stale["metadata"]["ownerReferences"] = [{"kind": "RunSchedule", "uid": "the-old-one", "controller": True}]
        w.kube.objects[("TestRun", NS, "nightly-1")] = stale
        w.kube.set_phase("TestRun", "nightly-1", "Running")
        await tick(w)
        st = schedule_status(w)
        assert st["active"] == [] and st["passedRuns"] == 0
    run(go)


def test_a_jobrun_template_makes_jobruns():
    async def go():
        w = world()
        job = {"type": "playwright", "testsFrom": {"configMapRef": {"name": "suite"}}, "parallelism": 2}
        w.kube.add({"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule",
                    "metadata": {"name": "suite", "namespace": NS},
                    "spec": {"schedule": "@every 1m", "jobRun": job}})
        w.clock.advance(60)
        await tick(w, "suite")
        assert run_names(w, "JobRun") == [due(w, 60, "suite")] and run_names(w) == []
        assert obj(w, "JobRun", due(w, 60, "suite"))["spec"] == job
    run(go)


def test_suspend_and_an_invalid_schedule_create_nothing():
    async def go():
        w = world()
        add_schedule(w, suspend=True)
        w.clock.advance(60)
        assert await tick(w) == schedules.SAFETY_TICK_SECONDS
        st = schedule_status(w)
        assert st["reason"] == "Suspended" and st.get("nextScheduleTime") is None and run_names(w) == []
        obj(w, "RunSchedule", "nightly")["spec"].update(suspend=False, schedule="@every 1.5s")
        await tick(w)
        st = schedule_status(w)
        assert st["reason"] == "InvalidSchedule" and "whole number of seconds" in st["message"]
        assert w.events.posted[-1][:2] == ("Warning", "InvalidSchedule") and run_names(w) == []
        obj(w, "RunSchedule", "nightly")["spec"]["schedule"] = "@every 20s"
        await tick(w)
        assert run_names(w) == [due(w, 60)]  # resumed: the latest missed time, once
    run(go)


def test_a_deleted_or_remade_schedule_ends_its_daemon():
    async def go():
        w = world()
        sched = add_schedule(w)
        uid = sched["metadata"]["uid"]
        assert await schedules.tick(w.eng, NS, "nightly", "another-uid") is None
        del w.kube.objects[("RunSchedule", NS, "nightly")]
        assert await schedules.tick(w.eng, NS, "nightly", uid) is None
    run(go)


def test_kopf_keys_in_the_status_are_left_alone():
    async def go():
        w = world()
        add_schedule(w)
        obj(w, "RunSchedule", "nightly")["status"] = {"kopf": {"progress": {}}, "passedRuns": 2}
        w.clock.advance(20)
        await tick(w)
        st = schedule_status(w)
        assert st["kopf"] == {"progress": {}} and st["passedRuns"] == 2 and run_names(w) == [due(w, 20)]
    run(go)
