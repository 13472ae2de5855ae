"""The Redis ledger's Lua scripts against a real, throwaway redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis
from operator_kit import throwaway_redis

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
