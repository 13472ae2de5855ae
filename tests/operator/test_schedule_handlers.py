"""The RunSchedule daemon loop (supercheck.schedule_handlers.drive) on the in-memory API server with the
real clock: runs created within milliseconds of their times, a wake-up ticks at once, ``stopped`` ends
it at once; the wake-up handlers wake only for changes that matter."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engine_kit import K6, world
from fakes import FakeKube

from supercheck import operator_main
from supercheck.clock import SystemClock
from supercheck.schedule_handlers import ScheduleWatch, drive, owner_schedule, wake_key

NS = "ns"


class Flag:
    """Kopf's ``stopped``: false until set; ``wait()`` returns once it is."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self) -> Any:
        return self.event.wait()

    def set(self) -> None:
        self.event.set()


def schedule(kube: FakeKube, **spec: Any) -> dict[str, Any]:
    return kube.add({"apiVersion": "supercheck.io/v1alpha1", "kind": "RunSchedule",
                     "metadata": {"name": "often", "namespace": NS},
                     "spec": {"schedule": "@every 1s", "testRun": K6, **spec}})


def test_runs_are_created_on_time_by_the_daemon_loop_with_the_real_clock():
    async def go():
        w = world()
        w.eng.clock = SystemClock()
        w.kube.clock = SystemClock()  # type: ignore[assignment]  # stamps creationTimestamp with the real time
        uid = schedule(w.kube)["metadata"]["uid"]
        stopped = Flag()
        task = asyncio.create_task(drive(w.eng, NS, "often", uid, stopped, logging.getLogger("test")))
        await asyncio.sleep(3.6)
        stopped.set()
        t0 = time.monotonic()
        await asyncio.wait_for(task, 1)
        assert time.monotonic() - t0 < 0.2  # stopped: the sleep ends at once
        made = [n for (k, _, n) in w.kube.objects if k == "TestRun"]
        assert 3 <= len(made) <= 4, made
        count = w.eng.metrics.registry.get_sample_value("supercheck_schedule_lag_seconds_count")
        total = w.eng.metrics.registry.get_sample_value("supercheck_schedule_lag_seconds_sum")
        assert count == len(made) and total is not None and total / count < 0.5, (count, total)  # < 2 s required
        assert wake_key(uid) not in w.eng.wakeups  # forgotten with its daemon
    asyncio.run(go())


def test_a_wake_up_ticks_at_once():
    async def go():
        w = world()
        uid = schedule(w.kube, concurrencyPolicy="Forbid", schedule="@every 1h")["metadata"]["uid"]
        stopped = Flag()
        task = asyncio.create_task(drive(w.eng, NS, "often", uid, stopped, logging.getLogger("test")))
        await asyncio.sleep(0.05)  # first tick done: sleeping until the due time, an hour away (a safety tick)
        assert not [n for (k, _, n) in w.kube.objects if k == "TestRun"]
        w.clock.advance(3600)
        w.eng.wake(wake_key(uid))
        await asyncio.sleep(0.05)
        assert len([n for (k, _, n) in w.kube.objects if k == "TestRun"]) == 1
        stopped.set()
        await asyncio.wait_for(task, 1)
    asyncio.run(go())


def test_the_daemon_ends_when_its_schedule_is_gone():
    async def go():
        w = world()
        uid = schedule(w.kube)["metadata"]["uid"]
        del w.kube.objects[("RunSchedule", NS, "often")]
        await asyncio.wait_for(drive(w.eng, NS, "often", uid, Flag(), logging.getLogger("test")), 1)
    asyncio.run(go())


def test_the_watch_wakes_for_spec_changes_and_run_phases_only():
    watch = ScheduleWatch()
    assert watch.schedule_changed("s1", 1, gone=False)  # first seen (the operator starts): tick
    assert not watch.schedule_changed("s1", 1, gone=False)  # our own status write: same generation
    assert watch.schedule_changed("s1", 2, gone=False)  # the spec changed
    assert not watch.schedule_changed("s1", 2, gone=True) and "s1" not in watch.generations
    assert watch.run_changed("r1", None, False, gone=False)
    assert watch.run_changed("r1", "Running", False, gone=False)
    assert not watch.run_changed("r1", "Running", False, gone=False)  # a progress write: nothing for us
    assert watch.run_changed("r1", "Passed", False, gone=False)
    assert watch.run_changed("r1", "Passed", True, gone=False)  # being deleted
    assert watch.run_changed("r1", "Passed", True, gone=True) and "r1" not in watch.runs


def test_a_run_names_its_schedule_by_uid():
    meta = {"ownerReferences": [{"kind": "RunSchedule", "uid": "s1", "controller": True, "name": "nightly"}]}
    assert owner_schedule(meta) == "s1"
    assert owner_schedule({"ownerReferences": [{"kind": "RunSchedule", "uid": "s1"}]}) is None  # not controller
    assert owner_schedule({}) is None


def test_kopf_says_nothing_of_the_wake_up_handlers():
    quiet = operator_main._QuietWakeups()

    def shown(msg: str) -> bool:
        return quiet.filter(logging.LogRecord("kopf", logging.INFO, "", 0, msg, None, None))

    assert not shown("Handler 'scheduled_testrun_changed' succeeded.")
    assert not shown("Handler 'runschedule_changed' succeeded.")
    assert not shown("Daemon 'run_schedule' succeeded.")
    assert shown("Handler 'scheduled_testrun_changed' failed with an exception. Will retry.")
