"""A new run's first status write waits for Kopf's finalizer instead of meeting a 409: Kopf starts the
run's daemon and adds the finalizer in one event cycle, so the first write used to carry the creation's
resourceVersion, fail, read the run again and write again (two requests more for every run)."""

from __future__ import annotations

import asyncio

import pytest
from engine_kit import K6, run, world

from supercheck.engine import run as run_module
from supercheck.engine.run import RunHandle
from supercheck.ports import Conflict

FINALIZER = "supercheck.io/finalizer"


def new_run(w):
    w.kube.add_testrun("a", K6)
    body = w.kube.testrun("a")
    return RunHandle(w.eng, body, lambda: [], finalizer=FINALIZER), body


def kopf_adds_the_finalizer(w, handle):
    """What Kopf does: a PATCH of the metadata (the resourceVersion moves on), then its watch
    event refreshes the daemon's live body."""
    obj = w.kube.objects[("TestRun", "ns", "a")]
    obj["metadata"]["finalizers"] = [FINALIZER]
    w.kube._stamp(obj)
    handle.live = w.kube.testrun("a")


def test_the_first_write_waits_for_the_finalizer_and_does_not_conflict():
    async def go():
        w = world()
        handle, body = new_run(w)

        async def later():
            await asyncio.sleep(0.02)
            kopf_adds_the_finalizer(w, handle)

        adder = asyncio.create_task(later())
        written = await handle.patch(body, {"phase": "Queued"})
        await adder
        assert written["status"]["phase"] == "Queued"
        assert written["metadata"]["finalizers"] == [FINALIZER]
        assert w.kube.calls.count("patch_status") == 1 and "get_run" not in w.kube.calls  # no 409, no read
    run(go)


def test_a_run_changed_meanwhile_is_written_against_what_was_decided_on():
    async def go():
        w = world()
        handle, body = new_run(w)
        kopf_adds_the_finalizer(w, handle)
        w.kube.touch_testrun("a", phase="Cancelled")  # someone else decided meanwhile
        handle.live = w.kube.testrun("a")
        with pytest.raises(Conflict):  # the precondition refuses the stale decision
            await handle.patch(body, {"phase": "Queued"})
        assert w.status("a")["phase"] == "Cancelled"
    run(go)


def test_without_the_finalizer_the_wait_is_bounded(monkeypatch):
    monkeypatch.setattr(run_module, "FINALIZER_WAIT_SECONDS", 0.05)

    async def go():
        w = world()
        handle, body = new_run(w)
        started = asyncio.get_running_loop().time()
        written = await handle.patch(body, {"phase": "Queued"})  # Kopf never adds it: write anyway
        assert 0.05 <= asyncio.get_running_loop().time() - started < 1.0
        assert written["status"]["phase"] == "Queued"
    run(go)

