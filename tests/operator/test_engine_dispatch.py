"""The dispatch path on in-memory ports: how many API round trips stand between a run's admission
(or a freed slot) and its runner pod, and that a crash after any write of that path recovers
without a lost or a duplicated pod, a slot held twice or more pods than the running capacity.

The round trips are counted on a fake API server that takes the same time for every call
(:class:`TimedKube`): calls made at once share a round, a call made after another's answer starts
the next. The crash walks stop the engine right after its k-th write (:class:`CrashingKube`), then
start a new engine (its memory gone, the cluster and, in one variant, Redis kept) on the same world.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from engine_kit import K6, World, result, run, world
from fakes import FakeKube
from prometheus_client import CollectorRegistry

from supercheck.engine import WAIT
from supercheck.engine.context import Engine
from supercheck.engine.ledger_repair import reconcile_ledger
from supercheck.engine.testrun import step
from supercheck.metrics import Metrics
from supercheck.pods import pod_view
from supercheck_contract import ExitCode, FailureClass

WRITES = ("create", "patch_status", "delete_pod", "delete_secret", "replace_secret", "replace_network_policy")
LATENCY = 0.01  # seconds each fake API call takes (the same for all: answers come in the order asked)


class TimedKube:
    """The fake API server behind a network: every call takes LATENCY. A call's round is one more than
    the highest round of the calls answered before it started (calls in flight together share one),
    so the rounds hold whatever else slows the machine down."""

    def __init__(self, inner: FakeKube) -> None:
        self.inner = inner
        self.answered = -1  # the highest round answered so far
        self.log: list[tuple[int, str]] = []  # (round, call) in the order the calls started

    def start(self) -> None:
        self.answered = -1
        self.log.clear()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            entry, my_round = len(self.log), self.answered + 1
            self.log.append((my_round, name))
            await asyncio.sleep(LATENCY)
            try:
                return await attr(*args, **kwargs)
            finally:
                self.log[entry] = (my_round, self.inner.calls[-1])  # "create Pod", "patch_status"...
                self.answered = max(self.answered, my_round)

        return call

    def round_of(self, call: str) -> int:
        return next(r for r, c in self.log if c == call)

    def rounds(self, call: str) -> list[int]:
        return [r for r, c in self.log if c == call]


class Crash(Exception):
    """The operator's process stops here (nothing of the engine catches it)."""


class CrashingKube:
    """Stops the engine right after its ``after``-th write has landed."""

    def __init__(self, inner: FakeKube, after: int) -> None:
        self.inner = inner
        self.after = after
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if len(self.writes) >= self.after:
                raise Crash(f"stopped after write {self.after}")
            out = await attr(*args, **kwargs)
            self.writes.append(self.inner.calls[-1])
            if len(self.writes) == self.after:
                raise Crash(f"stopped after {self.inner.calls[-1]}")
            return out

        return call


async def restart(w: World, wipe_ledger: bool = False) -> None:
    """A new operator process: a new engine (no wake-ups, locks, cached policies, run handles) on the
    same API server, Redis (wiped if asked: it restarted too) and PostgreSQL; its start-up's ledger
    reconcile runs first (handlers.startup)."""
    if wipe_ledger:
        w.ledger.wiped = True
    old = w.eng
    w.eng = Engine(settings=old.settings, kube=w.kube, ledger=w.ledger, store=w.store,
                   metrics=Metrics(old.settings, registry=CollectorRegistry()), events=w.events, clock=w.clock)
    w.runs.clear()
    await reconcile_ledger(w.eng)


def uid(w: World, name: str) -> str:
    return str(w.kube.testrun(name)["metadata"]["uid"])


def live_pods(w: World) -> list[str]:
    return [v.name for v in (pod_view(p) for p in w.kube.pods()) if v.live]


def passed(w: World, pod: str) -> None:
    w.kube.pod_running(pod)
    w.kube.pod_terminated(pod, 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")


# ---------------------------------------------------------------- round trips


def test_an_admitted_run_has_its_pod_in_the_second_round_and_its_claim_after_it():
    """admission -> pod: [ConfigMap, upload Secret, NetworkPolicy] at once, then the pod; the claim follows.
    (Before: the claim beside the ConfigMap, the NetworkPolicy, the Secret, then the pod: round 3.)"""
    async def go():
        w = world()
        timed = TimedKube(w.kube)
        w.eng.kube = timed  # type: ignore[assignment]
        w.kube.add_testrun("a", K6)
        timed.start()
        assert await w.step("a") == WAIT
        assert timed.round_of("create Pod") == 1
        assert {c for r, c in timed.log if r == 0} == {"create ConfigMap", "create Secret", "create NetworkPolicy"}
        assert timed.rounds("patch_status") == [2]  # the claim, once, after the pod
        st = w.status("a")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "a-a1")
        assert w.pod_names() == ["a-a1"] and "Dispatched" in w.events.reasons()
        # A second run of the namespace: its NetworkPolicy is known, the rounds are the same.
        w.kube.add_testrun("b", K6)
        timed.start()
        assert await w.step("b") == WAIT
        assert timed.round_of("create Pod") == 1 and timed.rounds("patch_status") == [2]
    run(go)


def test_a_freed_slot_reaches_the_next_runs_pod_in_the_second_round():
    """pod ended -> next pod: the ended run's end written while its slot is released (Redis); the promoted
    run reads its snapshot and creates its grant in that same round, then its pod; its claim follows, the
    ended pod's grant is deleted off the path. (Before: delete the grant, write the end, release, the
    claim, read the snapshot, the grant, the pod: round 5.)"""
    async def go():
        w = world(running_capacity=1, queued_capacity=2)
        for name in ("a", "b"):
            w.kube.add_testrun(name, K6)
            await w.settle(name)
        assert w.status("b")["phase"] == "Queued" and w.pod_names() == ["a-a1"]
        timed = TimedKube(w.kube)
        w.eng.kube = timed  # type: ignore[assignment]
        passed(w, "a-a1")
        wake_b = w.eng.wake_event(uid(w, "b"))

        async def daemon_b() -> float | None:  # as handlers._drive: woken by the release, one step
            await wake_b.wait()
            return await w.step("b")

        timed.start()
        _, b_delay = await asyncio.gather(w.step("a"), daemon_b())
        assert b_delay == WAIT
        b_pod = [r for r, c in timed.log if c == "create Pod"]
        assert b_pod == [1], timed.log
        assert timed.log[:3] == [(0, "patch_status"), (0, "get ConfigMap"), (0, "create Secret")]  # a's end, b's
        assert timed.round_of("delete Secret") >= 1  # a's grant: not before its end
        assert w.status("a")["phase"] == "Passed"
        st = w.status("b")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "b-a1")
        assert "a-a1-upload" in w.kube.deleted_secrets
        assert set(w.ledger.running) == {uid(w, "b")}
    run(go)


def test_a_refusal_of_the_first_pod_is_written_once_with_its_claim():
    """No pod for attempt 1: the claim and the end go in one status write (before: two)."""
    async def go():
        w = world()
        w.kube.refuse_create("Pod", 403, 'pods "a-a1" is forbidden: exceeded quota')
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") is None
        assert w.kube.calls.count("patch_status") == 2  # the end (with the claim), then the rows recorded
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"], st["podName"]) == ("Error", "PodRejected", 1, "a-a1")
        assert [h["attempt"] for h in st["attemptHistory"]] == [1]
        assert not w.ledger.running and uid(w, "a") in w.ledger.released
    run(go)


# ---------------------------------------------------------------- crash walks


def writes_of(setup: Callable[[World], Awaitable[None]], walk: Callable[[World], Awaitable[None]],
              **overrides: Any) -> list[str]:
    """The writes ``walk`` makes after ``setup``, when nothing stops it."""
    out: list[str] = []

    async def go():
        w = world(**overrides)
        await setup(w)
        crashing = CrashingKube(w.kube, after=10_000)
        w.eng.kube = crashing  # type: ignore[assignment]
        await walk(w)
        out.extend(crashing.writes)
    run(go)
    return out


async def admitted_setup(w: World) -> None:
    w.kube.add_testrun("a", K6)


async def admitted_walk(w: World) -> None:
    await w.settle("a")


ADMITTED_WRITES = writes_of(admitted_setup, admitted_walk, running_capacity=1, queued_capacity=2)


def test_the_admitted_walk_writes_the_pod_before_the_claim():
    assert ADMITTED_WRITES.index("create Pod") < ADMITTED_WRITES.index("patch_status")
    assert ADMITTED_WRITES.index("create Secret") < ADMITTED_WRITES.index("create Pod")
    assert ADMITTED_WRITES.index("create ConfigMap") < ADMITTED_WRITES.index("create Pod")


@pytest.mark.parametrize("down_for", [0, 60], ids=["back-at-once", "back-after-60s"])
@pytest.mark.parametrize("wipe_ledger", [False, True], ids=["redis-kept", "redis-wiped"])
@pytest.mark.parametrize("after", range(1, len(ADMITTED_WRITES) + 1),
                         ids=[f"after-{i + 1}-{c.replace(' ', '-')}" for i, c in enumerate(ADMITTED_WRITES)])
def test_a_crash_after_any_write_of_a_dispatch_recovers_one_pod_one_claim_one_slot(after: int, wipe_ledger: bool,
                                                                                   down_for: int):
    """Back after 60 s, the slot's grant is old: the claim goes first (FRESH_GRANT_SECONDS); both orders
    recover."""
    async def go():
        w = world(running_capacity=1, queued_capacity=2)
        await admitted_setup(w)
        w.eng.kube = CrashingKube(w.kube, after)  # type: ignore[assignment]
        with pytest.raises(Crash):
            await admitted_walk(w)
        assert len(live_pods(w)) <= 1
        w.clock.advance(down_for)
        await restart(w, wipe_ledger)
        assert await w.settle("a") in (WAIT, 60.0)  # waiting for the pod's events (60: the backstop)
        st = w.status("a")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "a-a1")
        assert w.pod_names() == ["a-a1"] and w.kube.calls.count("create Pod") <= 2  # the second: AlreadyExists
        assert set(w.ledger.running) == {uid(w, "a")}
        assert ("Secret", "ns", "a-a1-upload") in w.kube.objects and ("ConfigMap", "ns", "a-script") in w.kube.objects
        # The slot is held: a newcomer waits, whatever the status said when the process stopped.
        w.kube.add_testrun("c", K6)
        assert await w.settle("c") == 30.0
        assert w.status("c")["phase"] == "Queued" and live_pods(w) == ["a-a1"]
    run(go)


async def refill_setup(w: World) -> None:
    for name in ("a", "b"):
        w.kube.add_testrun(name, K6)
        await w.settle(name)
    passed(w, "a-a1")


async def refill_walk(w: World) -> None:
    await w.settle("a")
    await w.settle("b")


REFILL_WRITES = writes_of(refill_setup, refill_walk, running_capacity=1, queued_capacity=2)


def test_the_refill_walk_ends_then_creates_the_pod_before_the_claim():
    assert REFILL_WRITES[0] == "patch_status"  # a's end (its slot released in Redis at once)
    b_pod = REFILL_WRITES.index("create Pod")
    assert REFILL_WRITES.index("create Secret") < b_pod < len(REFILL_WRITES) - 1
    assert REFILL_WRITES[b_pod + 1:] == ["patch_status"]  # b's claim, last


@pytest.mark.parametrize("down_for", [0, 60], ids=["back-at-once", "back-after-60s"])
@pytest.mark.parametrize("wipe_ledger", [False, True], ids=["redis-kept", "redis-wiped"])
@pytest.mark.parametrize("after", range(1, len(REFILL_WRITES) + 1),
                         ids=[f"after-{i + 1}-{c.replace(' ', '-')}" for i, c in enumerate(REFILL_WRITES)])
def test_a_crash_after_any_write_of_a_refill_recovers_one_release_and_one_pod(after: int, wipe_ledger: bool,
                                                                             down_for: int):
    async def go():
        w = world(running_capacity=1, queued_capacity=2)
        await refill_setup(w)
        w.eng.kube = CrashingKube(w.kube, after)  # type: ignore[assignment]
        with pytest.raises(Crash):
            await refill_walk(w)
        assert len(live_pods(w)) <= 1
        w.clock.advance(down_for)
        await restart(w, wipe_ledger)
        for name in ("b", "a", "b"):  # the daemons resume in any order
            await w.settle(name)
            assert len(live_pods(w)) <= 1
        assert w.status("a")["phase"] == "Passed"
        st = w.status("b")
        assert (st["phase"], st["slot"], st["attempts"], st["podName"]) == ("Pending", "running", 1, "b-a1")
        assert w.pod_names() == ["a-a1", "b-a1"] and live_pods(w) == ["b-a1"]
        assert set(w.ledger.running) == {uid(w, "b")} and not w.ledger.queue
        assert uid(w, "a") in w.ledger.released
        assert w.metric("supercheck_runs_total", type="k6", phase="Passed") <= 1  # told once (by one process)
    run(go)


# ---------------------------------------------------------------- a pod made on a stale view


def test_a_pod_made_on_a_stale_view_goes_when_its_claim_conflicts():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        stale = w.handle("a")
        # Another replica ends the run meanwhile (its status moves on: our view is stale).
        w.kube.touch_testrun("a", phase="Error", reason="InvalidSpec", message="ended by another replica")
        assert await step(stale) == 0.0  # the claim conflicted: read again
        assert w.kube.calls.index("create Pod") < w.kube.calls.index("delete Pod")
        assert w.pod_names() == [] and "a-a1-upload" in w.kube.deleted_secrets
    run(go)


def test_a_live_pod_of_an_ended_run_goes_when_the_run_is_stepped():
    """A process stopped between a stale view's pod and its claim's conflict: the next one removes it."""
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == WAIT
        w.kube.touch_testrun("a", phase="Error", slot=None, reason="InvalidSpec", message="ended elsewhere",
                             completedAt="2030-01-01T12:00:00Z")
        await restart(w)
        await w.settle("a")
        assert w.pod_names() == []
    run(go)


def test_a_slot_granted_long_ago_is_claimed_before_its_pod():
    """A grant older than FRESH_GRANT_SECONDS may be a stale view's: the claim's precondition decides
    before any pod is made (the order of a retry)."""
    async def go():
        w = world(running_capacity=1, queued_capacity=2)
        for name in ("a", "b"):
            w.kube.add_testrun(name, K6)
            await w.settle(name)
        passed(w, "a-a1")
        await w.settle("a")  # b promoted now...
        w.clock.advance(30)  # ...and stepped only 30 s later
        w.kube.calls.clear()
        assert await w.settle("b") == WAIT
        assert w.kube.calls.index("patch_status") < w.kube.calls.index("create Pod")
        assert w.status("b")["podName"] == "b-a1" and w.pod_names() == ["a-a1", "b-a1"]
    run(go)


def test_without_peering_the_claim_goes_before_the_pod():
    """SUPERCHECK_PEERING=standalone: replicas may all be active. Pod-first would let the slower
    replica, whose view predates a quick run's end, make its pod again; the claim decides first."""
    async def go():
        w = world(running_capacity=1, queued_capacity=2, peering="standalone")
        w.kube.add_testrun("a", K6)
        w.kube.calls.clear()
        await w.settle("a")
        assert w.kube.calls.index("patch_status") < w.kube.calls.index("create Pod")
        assert w.status("a")["podName"] == "a-a1" and w.pod_names() == ["a-a1"]
    run(go)
