"""The capacity ledger in Redis: atomic admission, release with promotion, repair and rebuild.

Every change is one Lua script (``lua/*.lua``), so the contract's counters
``supercheck:capacity:running`` / ``supercheck:capacity:queued`` always equal the size of
the membership they count, whatever runs concurrently (other handlers, other replicas).
Every script is idempotent per run uid: admitting twice holds one slot, releasing twice
frees one.

Redis is not the truth, the cluster is: when Redis comes back empty the epoch key is gone,
every script answers ``rebuild``, and the operator rebuilds the ledger from the TestRuns
and their pods (:mod:`supercheck.repair`) before anything else is admitted.

Fair share: the scripts that admit or promote also receive the cluster admin's per-namespace
running and queued shares (:class:`supercheck.fairshare.FairShare`) and keep each namespace's
running slots and queued runs beside the global counters, in the same atomic step.

Every Redis name comes from :mod:`supercheck.vocabulary`; the scripts receive them in ``KEYS``
and, for the promotions channel, from :func:`lua_preamble`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from supercheck.fairshare import FairShare
from supercheck.ports import (
    AdmitResult,
    LedgerUnavailable,
    NeedsRebuild,
    Promotion,
    ReleaseResult,
    Snapshot,
    queue_score,
)
from supercheck.redact import location, redact
from supercheck.vocabulary import LEDGER_PREFIX as PREFIX
from supercheck.vocabulary import PROMOTIONS_CHANNEL, AdmitState, CapacityLimit
from supercheck.vocabulary import REDIS_NAMESPACE_QUEUED_KEY as NAMESPACE_QUEUED_KEY
from supercheck.vocabulary import REDIS_NAMESPACE_RUNNING_KEY as NAMESPACE_RUNNING_KEY
from supercheck.vocabulary import REDIS_QUEUED_KEY as QUEUED_KEY
from supercheck.vocabulary import REDIS_RUNNING_KEY as RUNNING_KEY

__all__ = ["KEYS", "QUEUED_KEY", "RUNNING_KEY", "Ledger", "LedgerUnavailable", "NeedsRebuild", "queue_score"]

KEYS = [
    RUNNING_KEY,
    QUEUED_KEY,
    PREFIX + "running",
    PREFIX + "queue",
    PREFIX + "runs",
    PREFIX + "seq",
    PREFIX + "epoch",
    PREFIX + "released",
    PREFIX + "granted",
    PREFIX + "stats",
    PREFIX + "weights",
    NAMESPACE_RUNNING_KEY,
    NAMESPACE_QUEUED_KEY,
]
TOMBSTONE_TTL_MS = 24 * 3600 * 1000


def lua_preamble() -> str:
    """Names the scripts use besides their KEYS, from the one vocabulary."""
    return f"local PROMOTIONS_CHANNEL = {json.dumps(PROMOTIONS_CHANNEL)}\n"


def _load(name: str) -> str:
    return resources.files("supercheck").joinpath("lua", name).read_text()


def _promotions(items: list[Any]) -> tuple[Promotion, ...]:
    out = []
    for i in range(0, len(items) - 1, 2):
        out.append(Promotion(_s(items[i]), _s(items[i + 1])))
    return tuple(out)


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Ledger:
    def __init__(self, url: str, running_capacity: int, queued_capacity: int, *, timeout: float = 2.0,
                 fair_share: FairShare | None = None):
        self.url = url
        self.running_capacity = running_capacity
        self.queued_capacity = queued_capacity
        self.fair_share = fair_share or FairShare()
        self._limits = self.fair_share.ledger_json()
        self.redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                       health_check_interval=5)
        common = lua_preamble() + _load("common.lua")
        self._scripts = {
            name: self.redis.register_script(common + "\n" + _load(f"{name}.lua"))
            for name in ("admit", "release", "ensure", "rebuild", "recount")
        }
        # One operator's calls reach Redis in the order they were made (asyncio locks are FIFO),
        # so runs created one after the other are queued one after the other.
        self._order = asyncio.Lock()

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, name: str, *args: object) -> list[Any]:
        try:
            async with self._order:
                return list(await self._scripts[name](keys=KEYS, args=[str(a) for a in args]))
        except (RedisError, OSError) as exc:
            raise LedgerUnavailable(redact(f"Redis at {self._where()} is unreachable: {exc}")) from exc

    def _where(self) -> str:
        return location(self.url)

    async def admit(self, uid: str, ref: str, priority: int, weight: int = 1) -> AdmitResult:
        """``priority``: the run's, already at most its namespace's maximum (FairShare.priority)."""
        out = await self._run("admit", uid, ref, priority, self.running_capacity, self.queued_capacity, weight,
                              self._limits)
        if _s(out[0]) == "rebuild":
            raise NeedsRebuild("the capacity ledger is empty (Redis restarted?)")
        state = AdmitState(_s(out[0]))
        a, b, running, queued, w, ns_running, ns_queued = (int(_s(x)) for x in out[1:8])
        granted_ms, seq, position = (a, 0, 0) if state == AdmitState.RUNNING else (0, a, b)
        return AdmitResult(state, seq=seq, position=position, granted_ms=granted_ms, running=running, queued=queued,
                           promoted=_promotions(out[9:]), weight=w, namespace_running=ns_running,
                           namespace_queued=ns_queued, limit=CapacityLimit(_s(out[8])))

    async def release(self, uid: str, duration_ms: int | None = None) -> ReleaseResult:
        out = await self._run("release", uid, self.running_capacity, duration_ms or 0, self._limits)
        removed = _s(out[0])
        if removed == "rebuild":
            raise NeedsRebuild("the capacity ledger is empty (Redis restarted?)")
        return ReleaseResult(removed, _promotions(out[1:]))

    async def ensure(self, uid: str, ref: str, kind: str, score: int = 0,
                     weight: int = 1) -> tuple[str, tuple[Promotion, ...]]:
        out = await self._run("ensure", uid, ref, kind, score, self.running_capacity, weight, self._limits)
        state = _s(out[0])
        if state == "rebuild":
            raise NeedsRebuild("the capacity ledger is empty (Redis restarted?)")
        return state, _promotions(out[1:])

    async def rebuild(self, running: Sequence[tuple[str, str, int]], queued: Sequence[tuple[str, str, int, int]],
                      released: Sequence[str], seq_floor: int) -> tuple[bool, tuple[Promotion, ...]]:
        """Install the cluster's truth; False when the ledger was valid already (someone else rebuilt).
        ``running``: (uid, ref, weight); ``queued``: (uid, ref, score, weight)."""
        args: list[object] = [uuid.uuid4().hex, self.running_capacity, seq_floor, self._limits, len(running)]
        for uid, ref, weight in running:
            args += [uid, ref, weight]
        args.append(len(queued))
        for uid, ref, score, weight in queued:
            args += [uid, ref, score, weight]
        args.append(len(released))
        args += released
        out = await self._run("rebuild", *args)
        return _s(out[0]) == "rebuilt", _promotions(out[1:])

    async def recount(self) -> None:
        """Recompute the per-namespace counts from the membership (the leak repair found them off)."""
        out = await self._run("recount")
        if _s(out[0]) == "rebuild":
            raise NeedsRebuild("the capacity ledger is empty (Redis restarted?)")

    async def snapshot(self) -> Snapshot:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(KEYS[6])
                pipe.get(RUNNING_KEY)
                pipe.get(QUEUED_KEY)
                pipe.smembers(KEYS[2])
                pipe.zrange(KEYS[3], 0, -1, withscores=True)
                pipe.hgetall(KEYS[4])
                pipe.zrange(KEYS[7], 0, -1)
                pipe.hgetall(KEYS[10])
                pipe.hgetall(KEYS[11])
                pipe.hgetall(KEYS[12])
                epoch, running, queued, members, queue, refs, released, weights, ns_running, ns_queued = \
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            raise LedgerUnavailable(redact(f"Redis at {self._where()} is unreachable: {exc}")) from exc
        return Snapshot(
            epoch=_s(epoch) if epoch is not None else None,
            running_count=int(running or 0),
            queued_count=int(queued or 0),
            running={_s(m) for m in members},
            queue=[(_s(m), int(s)) for m, s in queue],
            refs={_s(k): _s(v) for k, v in refs.items()},
            released={_s(m) for m in released},
            weights={_s(k): int(_s(v)) for k, v in weights.items()},
            namespace_running={_s(k): int(_s(v)) for k, v in ns_running.items()},
            namespace_queued={_s(k): int(_s(v)) for k, v in ns_queued.items()},
        )

    async def epoch(self) -> str | None:
        try:
            value = await self.redis.get(KEYS[6])
        except (RedisError, OSError) as exc:
            raise LedgerUnavailable(redact(f"Redis at {self._where()} is unreachable: {exc}")) from exc
        return _s(value) if value is not None else None

    async def avg_run_seconds(self) -> float | None:
        try:
            value = await self.redis.hget(KEYS[9], "avg_run_ms")
        except (RedisError, OSError):
            return None
        return int(value) / 1000 if value is not None else None

    async def prune_released(self, older_than_ms: int = TOMBSTONE_TTL_MS) -> int:
        try:
            cutoff = int(time.time() * 1000) - older_than_ms
            return int(await self.redis.zremrangebyscore(KEYS[7], "-inf", cutoff))
        except (RedisError, OSError) as exc:
            raise LedgerUnavailable(redact(str(exc))) from exc
