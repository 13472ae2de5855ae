"""The Redis ledger's Lua scripts against a real, throwaway redis-server; the fake ledger of the engine
tests against them."""

from __future__ import annotations

import asyncio

import pytest
import redis
from fakes import FakeClock, FakeLedger
from operator_kit import throwaway_redis

from supercheck.fairshare import FairShare, NamespaceLimits, Share
from supercheck.ledger import KEYS, QUEUED_KEY, RUNNING_KEY, Ledger, NeedsRebuild, queue_score

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with throwaway_redis(str(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    return client


def run(coro):
    return asyncio.run(coro)


async def _fresh(url: str, running: int = 2, queued: int = 3) -> Ledger:
    ledger = Ledger(url, running, queued)
    ok, _ = await ledger.rebuild([], [], [], 0)
    assert ok
    return ledger


def counters(raw) -> tuple[int, int]:
    return int(raw.get(RUNNING_KEY) or 0), int(raw.get(QUEUED_KEY) or 0)


def test_empty_redis_asks_for_a_rebuild(redis_url, raw):
    async def go():
        ledger = Ledger(redis_url, 2, 2)
        with pytest.raises(NeedsRebuild):
            await ledger.admit("u1", "ns/a", 0)
        with pytest.raises(NeedsRebuild):
            await ledger.release("u1")
        await ledger.close()
    run(go())
    assert raw.get(RUNNING_KEY) is None  # nothing was admitted on a guess


def test_run_queue_reject_and_counters_are_plain_integers(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=2, queued=2)
        states = [(await ledger.admit(f"u{i}", f"ns/r{i}", 0)).state for i in range(5)]
        await ledger.close()
        return states
    assert run(go()) == ["running", "running", "queued", "queued", "rejected"]
    assert raw.get(RUNNING_KEY) == b"2" and raw.get(QUEUED_KEY) == b"2"
    assert raw.scard(KEYS[2]) == 2 and raw.zcard(KEYS[3]) == 2


def test_admission_is_idempotent_per_run(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=1, queued=5)
        a = await ledger.admit("u1", "ns/a", 0)
        again = await ledger.admit("u1", "ns/a", 0)
        q = await ledger.admit("u2", "ns/b", 0)
        q_again = await ledger.admit("u2", "ns/b", 0)
        await ledger.close()
        return a, again, q, q_again
    a, again, q, q_again = run(go())
    assert a.state == again.state == "running" and a.granted_ms == again.granted_ms
    assert q.state == q_again.state == "queued" and q.seq == q_again.seq
    assert counters(raw) == (1, 1)


def test_release_promotes_by_priority_then_arrival(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=1, queued=10)
        await ledger.admit("holder", "ns/holder", 0)
        for uid, prio in [("low-1", 0), ("high-1", 5), ("low-2", 0), ("high-2", 5), ("neg", -3)]:
            assert (await ledger.admit(uid, f"ns/{uid}", prio)).state == "queued"
        order = []
        current = "holder"
        for _ in range(5):
            result = await ledger.release(current)
            assert result.removed == "running"
            assert len(result.promoted) == 1
            current = result.promoted[0].uid
            assert result.promoted[0].ref == f"ns/{current}"
            order.append(current)
        await ledger.release(current)
        await ledger.close()
        return order
    assert run(go()) == ["high-1", "high-2", "low-1", "low-2", "neg"]
    assert counters(raw) == (0, 0)


def test_release_is_idempotent_and_a_released_run_never_comes_back(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=2, queued=2)
        await ledger.admit("u1", "ns/a", 0)
        first = await ledger.release("u1")
        second = await ledger.release("u1")
        readmit = await ledger.admit("u1", "ns/a", 0)
        ensure = await ledger.ensure("u1", "ns/a", "running")
        await ledger.close()
        return first, second, readmit, ensure
    first, second, readmit, ensure = run(go())
    assert first.removed == "running" and second.removed == "none"
    assert readmit.state == "released" and ensure[0] == "released"
    assert counters(raw) == (0, 0)


def test_cancelling_a_queued_run_frees_its_queue_place(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=1, queued=1)
        await ledger.admit("a", "ns/a", 0)
        await ledger.admit("b", "ns/b", 0)
        rejected = await ledger.admit("c", "ns/c", 0)
        removed = await ledger.release("b")
        admitted = await ledger.admit("d", "ns/d", 0)
        await ledger.close()
        return rejected, removed, admitted
    rejected, removed, admitted = run(go())
    assert rejected.state == "rejected" and removed.removed == "queued" and admitted.state == "queued"
    assert counters(raw) == (1, 1)


def test_concurrent_admissions_and_releases_never_exceed_capacity(redis_url, raw):
    """Many clients (as many replicas would be) hammer one ledger; counters stay equal to membership."""
    running_cap, queued_cap, n = 3, 10, 60

    async def client(i: int, ledger: Ledger, seen: list[int]) -> None:
        r = await ledger.admit(f"u{i}", f"ns/r{i}", i % 3)
        seen.append(int(raw.get(RUNNING_KEY)))
        await asyncio.sleep(0.001 * (i % 5))
        if r.state in ("running", "queued"):
            await ledger.release(f"u{i}")

    async def go():
        ledgers = [Ledger(redis_url, running_cap, queued_cap) for _ in range(4)]
        await ledgers[0].rebuild([], [], [], 0)
        seen: list[int] = []
        await asyncio.gather(*(client(i, ledgers[i % 4], seen) for i in range(n)))
        for ledger in ledgers:
            await ledger.close()
        return seen
    seen = run(go())
    assert max(seen) <= running_cap
    assert counters(raw) == (0, 0)
    assert raw.scard(KEYS[2]) == 0 and raw.zcard(KEYS[3]) == 0


def test_promotions_are_published_for_every_replica(redis_url, raw):
    pubsub = raw.pubsub()
    pubsub.subscribe("supercheck:ledger:promoted")
    pubsub.get_message(timeout=1)

    async def go():
        ledger = await _fresh(redis_url, running=1, queued=2)
        await ledger.admit("a", "ns/a", 0)
        await ledger.admit("b", "ns/b", 0)
        await ledger.release("a")
        await ledger.close()
    run(go())
    msg = pubsub.get_message(timeout=2)
    assert msg and msg["data"] == b"b"


def test_rebuild_installs_the_truth_once_and_promotes_into_free_slots(redis_url, raw):
    async def go():
        ledger = Ledger(redis_url, 2, 5)
        ok, promoted = await ledger.rebuild(
            running=[("r1", "ns/r1", 1)],
            queued=[("q1", "ns/q1", queue_score(0, 7), 1), ("q2", "ns/q2", queue_score(9, 8), 1)],
            released=["done"],
            seq_floor=8,
        )
        again, _ = await ledger.rebuild([], [], [], 0)
        nxt = await ledger.admit("new", "ns/new", 0)
        snap = await ledger.snapshot()
        await ledger.close()
        return ok, promoted, again, nxt, snap
    ok, promoted, again, nxt, snap = run(go())
    assert ok and not again
    assert [p.uid for p in promoted] == ["q2"]  # the higher priority one fills the free slot
    assert nxt.state == "queued" and nxt.seq == 9  # arrival numbers continue after the rebuilt ones
    assert snap.running == {"r1", "q2"} and [u for u, _ in snap.queue] == ["q1", "new"]
    assert "done" in snap.released
    assert counters(raw) == (2, 2)


def test_ensure_restores_a_missing_entry_once(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=2, queued=2)
        a = await ledger.ensure("lost", "ns/lost", "running")
        b = await ledger.ensure("lost", "ns/lost", "running")
        await ledger.close()
        return a, b
    a, b = run(go())
    assert a[0] == "added" and b[0] == "present"
    assert counters(raw) == (1, 0)


def test_raised_capacity_drains_the_queue_on_next_admission(redis_url, raw):
    async def go():
        small = await _fresh(redis_url, running=1, queued=5)
        await small.admit("a", "ns/a", 0)
        await small.admit("b", "ns/b", 0)
        await small.close()
        big = Ledger(redis_url, 3, 5)
        c = await big.admit("c", "ns/c", 0)
        await big.close()
        return c
    c = run(go())
    assert [p.uid for p in c.promoted] == ["b"] and c.state == "running"
    assert counters(raw) == (3, 0)


# ---------------------------------------------------------------- weights: a JobRun takes N slots at once


def test_a_job_takes_its_slots_all_at_once_or_waits_at_the_head(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=4, queued=10)
        a = await ledger.admit("t1", "ns/t1", 0)  # 1 of 4
        job = await ledger.admit("job", "ns/job", 0, weight=2)  # 3 of 4
        big = await ledger.admit("big", "ns/big", 0, weight=3)  # needs 3, 1 free: waits at the head
        small = await ledger.admit("t2", "ns/t2", 0)  # fits in the free slot, but may not overtake
        held = counters(raw)
        r1 = await ledger.release("t1")  # 2 free: still not 3
        r2 = await ledger.release("job")  # 4 free: big runs (3), then t2 (1)
        snap = await ledger.snapshot()
        await ledger.close()
        return a, job, big, small, held, r1, r2, snap
    a, job, big, small, held, r1, r2, snap = run(go())
    assert a.state == "running" and job.state == "running" and job.weight == 2
    assert big.state == "queued" and big.weight == 3 and small.state == "queued" and small.position == 2
    assert held == (3, 2)
    assert r1.promoted == ()
    assert [p.uid for p in r2.promoted] == ["big", "t2"]
    assert snap.running == {"big", "t2"} and snap.weights == {"big": 3}
    assert counters(raw) == (4, 0)


def test_a_weight_above_capacity_is_clamped_to_the_capacity(redis_url, raw):
    async def go():
        ledger = await _fresh(redis_url, running=2, queued=5)
        r = await ledger.admit("huge", "ns/huge", 0, weight=9)
        await ledger.release("huge")
        await ledger.close()
        return r
    r = run(go())
    assert r.state == "running" and r.weight == 2
    assert counters(raw) == (0, 0)


def test_rebuild_and_ensure_restore_weights(redis_url, raw):
    async def go():
        ledger = Ledger(redis_url, 6, 5)
        await ledger.rebuild(running=[("job", "ns/job", 3), ("t", "ns/t", 1)], queued=[], released=[], seq_floor=0)
        after_rebuild = counters(raw)
        added = await ledger.ensure("lost-job", "ns/lost-job", "running", 0, 2)
        after_ensure = counters(raw)
        await ledger.release("job")
        await ledger.release("lost-job")
        await ledger.close()
        return after_rebuild, added, after_ensure
    after_rebuild, added, after_ensure = run(go())
    assert after_rebuild == (4, 0) and added[0] == "added" and after_ensure == (6, 0)
    assert counters(raw) == (1, 0)


# ---------------------------------------------------------------- fair share between namespaces


def shares(running=None, queued=None, **namespaces) -> FairShare:
    return FairShare(Share(running=running, queued=queued),
                     {ns: NamespaceLimits(**limits) for ns, limits in namespaces.items()})


def ns_counts(raw) -> tuple[dict[str, int], dict[str, int]]:
    def read(key):
        return {k.decode(): int(v) for k, v in raw.hgetall(key).items()}
    return read(KEYS[11]), read(KEYS[12])


async def _fair(url: str, running: int, queued: int, fair: FairShare) -> Ledger:
    ledger = Ledger(url, running, queued, fair_share=fair)
    ok, _ = await ledger.rebuild([], [], [], 0)
    assert ok
    return ledger


def test_a_namespace_flooding_with_top_priority_gets_its_share_and_others_still_run(redis_url, raw):
    """The issue's attack: namespace a floods with priority 1000; b's runs still get running slots."""
    async def go():
        ledger = await _fair(redis_url, 4, 10, shares(running=2, queued=3))
        flood = [await ledger.admit(f"a{i}", f"a/r{i}", 1000) for i in range(6)]
        b1 = await ledger.admit("b1", "b/r1", 0)
        b2 = await ledger.admit("b2", "b/r2", 0)
        b3 = await ledger.admit("b3", "b/r3", 0)  # b at its share (the default, 2) and 4/4 taken: waits
        counts_full = counters(raw), ns_counts(raw)
        freed_b = await ledger.release("b1")  # a is at its share: b3 is promoted past a's queued runs
        freed_a = await ledger.release("a0")  # a is below its share again: its first queued run
        snap = await ledger.snapshot()
        await ledger.close()
        return flood, b1, b2, b3, counts_full, freed_b, freed_a, snap
    flood, b1, b2, b3, counts_full, freed_b, freed_a, snap = run(go())
    assert [r.state for r in flood] == ["running", "running", "queued", "queued", "queued", "rejected"]
    assert flood[2].limit == "namespace-running" and flood[2].namespace_running == 2
    assert flood[5].limit == "namespace-queued" and flood[5].namespace_queued == 3
    assert b1.state == b2.state == "running" and b1.namespace_running == 1
    assert b3.state == "queued" and b3.limit == "namespace-running" and b3.position == 4
    assert counts_full == ((4, 4), ({"a": 2, "b": 2}, {"a": 3, "b": 1}))
    assert [p.uid for p in freed_b.promoted] == ["b3"]
    assert [p.uid for p in freed_a.promoted] == ["a2"]
    assert snap.running == {"a1", "a2", "b2", "b3"} and [u for u, _ in snap.queue] == ["a3", "a4"]
    assert snap.namespace_running == {"a": 2, "b": 2} and snap.namespace_queued == {"a": 2}
    assert "a5" not in snap.refs  # a rejected run holds nothing


def test_strict_order_within_a_namespace_and_a_job_clamped_to_its_share(redis_url, raw):
    async def go():
        ledger = await _fair(redis_url, 6, 10, shares(a={"running": 3}))
        first = await ledger.admit("a-job1", "a/job1", 0, weight=2)  # a 2/3
        job = await ledger.admit("a-job2", "a/job2", 0, weight=2)  # would be 4/3: waits for a's share
        small = await ledger.admit("a-small", "a/small", 0)  # would fit (3/3), but may not overtake a-job2
        other = await ledger.admit("b1", "b/r1", 0)  # b has no limit: runs at once
        huge = await ledger.admit("a-huge", "a/huge", 0, weight=9)  # asks 9: at most a's share, 3
        released = await ledger.release("a-job1")  # a 0/3: a-job2 (2), then a-small (1)
        snap = await ledger.snapshot()
        await ledger.close()
        return first, job, small, other, huge, released, snap
    first, job, small, other, huge, released, snap = run(go())
    assert first.state == "running" and job.state == "queued" and job.limit == "namespace-running"
    assert small.state == "queued" and other.state == "running"
    assert huge.state == "queued" and huge.weight == 3
    assert [p.uid for p in released.promoted] == ["a-job2", "a-small"]
    assert snap.namespace_running == {"a": 3, "b": 1} and snap.namespace_queued == {"a": 1}
    assert counters(raw) == (4, 1)


def test_a_run_within_its_share_still_waits_in_global_order(redis_url, raw):
    """Namespaces within their share keep strict priority/FIFO order and the all-or-none grant."""
    async def go():
        ledger = await _fair(redis_url, 4, 10, shares(a={"running": 1}))
        await ledger.admit("a1", "a/r1", 0)  # a 1/1
        await ledger.admit("c1", "c/r1", 0)
        await ledger.admit("c2", "c/r2", 0)  # 3/4 used
        a2 = await ledger.admit("a2", "a/r2", 1000)  # over a's share: queued at the head
        job = await ledger.admit("b-job", "b/job", 0, weight=2)  # within b's share, 1 slot free: waits
        late = await ledger.admit("d1", "d/r1", 0)  # fits in the free slot, but b-job waits ahead of it
        freed = await ledger.release("c1")  # 2 free: a2 passed over (a at its share), b-job gets both
        await ledger.close()
        return a2, job, late, freed
    a2, job, late, freed = run(go())
    assert a2.state == "queued" and a2.position == 1 and a2.limit == "namespace-running"
    assert job.state == "queued" and job.limit == "running"
    assert late.state == "queued"
    assert [p.uid for p in freed.promoted] == ["b-job"]
    assert counters(raw) == (4, 2) and ns_counts(raw) == ({"a": 1, "b": 2, "c": 1}, {"a": 1, "d": 1})


def test_a_wiped_ledger_rebuilds_the_namespace_counts_and_recount_repairs_drift(redis_url, raw):
    async def go():
        ledger = Ledger(redis_url, 4, 10, fair_share=shares(running=2))
        ok, promoted = await ledger.rebuild(
            running=[("a-job", "a/job", 2), ("b1", "b/r1", 1), ("orphan", "", 1)],
            queued=[("a2", "a/r2", queue_score(0, 3), 1), ("b2", "b/r2", queue_score(0, 4), 1)],
            released=[], seq_floor=4)
        rebuilt = ns_counts(raw)
        raw.delete(KEYS[11], KEYS[12])  # a ledger written before fair share (an upgrade)
        await ledger.recount()
        recounted = ns_counts(raw)
        a3 = await ledger.admit("a3", "a/r3", 0)
        await ledger.close()
        return ok, promoted, rebuilt, recounted, a3
    ok, promoted, rebuilt, recounted, a3 = run(go())
    assert ok and [p.uid for p in promoted] == []  # a is at its share, the capacity is full (a2 waits)
    assert rebuilt == ({"a": 2, "b": 1, "": 1}, {"a": 1, "b": 1})
    assert recounted == rebuilt
    assert a3.state == "queued" and a3.limit == "namespace-running"


def test_concurrent_namespaces_never_exceed_their_shares(redis_url, raw):
    running_cap, n = 6, 60
    fair = shares(running=2, queued=4)
    peaks: dict[str, int] = {}

    async def client(i: int, ledger: Ledger) -> None:
        ns = f"ns{i % 4}"
        r = await ledger.admit(f"u{i}", f"{ns}/r{i}", 1000 if ns == "ns0" else 0, weight=1 + i % 2)
        for k, v in ns_counts(raw)[0].items():
            peaks[k] = max(peaks.get(k, 0), v)
        await asyncio.sleep(0.001 * (i % 5))
        if r.state in ("running", "queued"):
            await ledger.release(f"u{i}")

    async def go():
        ledgers = [Ledger(redis_url, running_cap, 100, fair_share=fair) for _ in range(4)]
        await ledgers[0].rebuild([], [], [], 0)
        await asyncio.gather(*(client(i, ledgers[i % 4]) for i in range(n)))
        for ledger in ledgers:
            await ledger.close()
    run(go())
    assert peaks and max(peaks.values()) <= 2
    assert counters(raw) == (0, 0) and ns_counts(raw) == ({}, {})


# ---------------------------------------------------------------- the engine tests' fake follows the Lua

SCENARIOS = {
    "flood": (shares(running=2, queued=2), 4, 10, [
        ("admit", "a1", "a/1", 1000, 1), ("admit", "a2", "a/2", 1000, 1), ("admit", "a3", "a/3", 1000, 1),
        ("admit", "a4", "a/4", 1000, 1), ("admit", "a5", "a/5", 1000, 1), ("admit", "b1", "b/1", 0, 1),
        ("admit", "b2", "b/2", 0, 1), ("admit", "b3", "b/3", 0, 1), ("release", "b1"), ("release", "a1"),
        ("admit", "a3", "a/3", 1000, 1), ("release", "a2"), ("release", "b2"), ("admit", "c1", "c/1", 5, 1)]),
    "jobs": (shares(a={"running": 3, "queued": 1}), 5, 3, [
        ("admit", "j1", "a/j1", 0, 2), ("admit", "j2", "a/j2", 0, 2), ("admit", "j3", "a/j3", 0, 1),
        ("admit", "b1", "b/1", 0, 4), ("admit", "c1", "c/1", 0, 1), ("admit", "c2", "c/2", 0, 1),
        ("admit", "c3", "c/3", 0, 1), ("release", "j1"), ("release", "b1"), ("release", "c1"),
        ("ensure", "lost", "a/lost", "queued", queue_score(0, 99), 1), ("release", "j2")]),
    "no limits": (FairShare(), 2, 2, [
        ("admit", "x", "a/x", 0, 1), ("admit", "y", "b/y", 0, 2), ("admit", "z", "c/z", 3, 1),
        ("admit", "w", "c/w", 0, 1), ("admit", "v", "c/v", 0, 1), ("release", "x"), ("release", "z")]),
}


async def _play(ledger, steps) -> list[tuple]:
    out = []
    for op, uid, *args in steps:
        if op == "admit":
            r = await ledger.admit(uid, *args)
            out.append((op, uid, r.state, r.position, r.running, r.queued, r.weight, r.namespace_running,
                        r.namespace_queued, str(r.limit), [p.uid for p in r.promoted]))
        elif op == "release":
            r = await ledger.release(uid)
            out.append((op, uid, r.removed, [p.uid for p in r.promoted]))
        else:
            state, promoted = await ledger.ensure(uid, *args)
            out.append((op, uid, state, [p.uid for p in promoted]))
    snap = await ledger.snapshot()
    out.append(("end", snap.running_count, snap.queued_count, sorted(snap.running), [u for u, _ in snap.queue],
                snap.namespace_running, snap.namespace_queued, snap.weights))
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fake_ledger_behaves_like_the_lua(redis_url, raw, name):
    fair, running_cap, queued_cap, steps = SCENARIOS[name]

    async def lua():
        ledger = await _fair(redis_url, running_cap, queued_cap, fair)
        try:
            return await _play(ledger, steps)
        finally:
            await ledger.close()

    async def fake():
        ledger = FakeLedger(running_cap, queued_cap, FakeClock(), fair)
        return await _play(ledger, steps)
    assert run(fake()) == run(lua())
