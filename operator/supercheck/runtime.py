"""What one operator process shares between its handlers: clients, wake-ups, locks, the ledger gate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from supercheck.config import Settings
from supercheck.kube import AlreadyExists, Kube
from supercheck.ledger import Ledger, LedgerUnavailable, NeedsRebuild, Promotion
from supercheck.lifecycle import PodView
from supercheck.metrics import Metrics
from supercheck import podspec, repair
from supercheck.store import Store

log = logging.getLogger(__name__)

PROMOTIONS_CHANNEL = "supercheck:ledger:promoted"


class Gate:
    """Readers: a ledger change plus the status patch that records it. Writer: a ledger rebuild.

    A rebuild reads the cluster and installs it in Redis; it must not run between an admission
    and the status patch that makes the admission visible in the cluster, or the rebuilt
    ledger would miss a slot that a pod is about to use.
    """

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._cond = asyncio.Condition()
        self._held: contextvars.ContextVar[bool] = contextvars.ContextVar("gate_held", default=False)

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        if self._held.get():  # re-entered by the same task: already counted
            yield
            return
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        token = self._held.set(True)
        try:
            yield
        finally:
            self._held.reset(token)
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._writer = True
            await self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    ledger: Ledger
    store: Store
    metrics: Metrics
    gate: Gate = field(default_factory=Gate)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    cancelling: set[str] = field(default_factory=set)
    pods_by_owner: Callable[[str], list[PodView]] = lambda uid: []
    s3_secrets: set[str] = field(default_factory=set)
    _rebuild_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- wake-ups: events, not polling
    def wake_event(self, uid: str) -> asyncio.Event:
        ev = self.wakeups.get(uid)
        if ev is None:
            ev = self.wakeups[uid] = asyncio.Event()
        return ev

    def wake(self, uid: str | None) -> None:
        if uid and uid in self.wakeups:
            self.wakeups[uid].set()

    def wake_promoted(self, promoted: tuple[Promotion, ...] | list[Promotion]) -> None:
        for p in promoted:
            self.wake(p.uid)

    def lock(self, uid: str) -> asyncio.Lock:
        lk = self.locks.get(uid)
        if lk is None:
            lk = self.locks[uid] = asyncio.Lock()
        return lk

    def forget(self, uid: str) -> None:
        self.wakeups.pop(uid, None)
        self.locks.pop(uid, None)
        self.cancelling.discard(uid)

    # --- objects owned by runs
    async def ensure_s3_secret(self, namespace: str) -> str | None:
        secret = podspec.s3_secret(namespace, self.settings)
        if secret is None:
            return None
        if namespace in self.s3_secrets:
            return podspec.S3_SECRET_NAME
        try:
            await self.kube.create(secret)
        except AlreadyExists:
            existing = await self.kube.get_secret(namespace, podspec.S3_SECRET_NAME)
            want = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
            if existing is not None and (existing.get("data") or {}) != want:
                secret["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self.kube.replace_secret(secret)
        self.s3_secrets.add(namespace)
        return podspec.S3_SECRET_NAME

    # --- ledger rebuild and repair
    async def rebuild_ledger(self) -> None:
        """Rebuild from the cluster when Redis lost the ledger. Single-flight per process."""
        async with self._rebuild_lock:
            if await self.ledger.epoch() is not None:
                return
            async with self.gate.exclusive():
                testruns = await self.kube.list_testruns()
                pods = await self.kube.list_pods(f"{podspec.MANAGED_BY}={podspec.MANAGER}")
                desired = repair.desired_ledger(testruns, pods)
                running, queued, released, seq_floor = repair.rebuild_args(desired)
                rebuilt, promoted = await self.ledger.rebuild(running, queued, released, seq_floor)
            if rebuilt:
                log.warning("capacity ledger rebuilt from the cluster: %d running, %d queued",
                            len(running), len(queued))
                self.metrics.ledger_rebuilds.inc()
                self.metrics.slots_repaired.labels("rebuild").inc(len(running) + len(queued))
            self.wake_promoted(promoted)
            for uid in list(self.wakeups):
                self.wake(uid)

    async def reconcile_ledger(self) -> None:
        """Remove stale entries, restore missing ones, wake runs granted a slot but still waiting."""
        try:
            snapshot = await self.ledger.snapshot()
            if snapshot.epoch is None:
                await self.rebuild_ledger()
                return
            testruns = await self.kube.list_testruns()
            pods = await self.kube.list_pods(f"{podspec.MANAGED_BY}={podspec.MANAGER}")
        except (LedgerUnavailable, NeedsRebuild) as exc:
            log.info("ledger reconcile skipped: %s", exc)
            return
        desired = repair.desired_ledger(testruns, pods)
        statuses = {tr["metadata"]["uid"]: repair._status(tr) for tr in testruns}
        plan = repair.repair_plan(snapshot, desired, statuses)
        for uid in plan.stale:
            async with self.gate.shared():
                result = await self.ledger.release(uid)
            if result.removed != "none":
                log.warning("repaired a leaked %s slot of run %s", result.removed, uid)
                self.metrics.slots_repaired.labels(f"stale_{result.removed}").inc()
            self.wake_promoted(result.promoted)
        for uid, ref, kind, score in plan.missing:
            async with self.gate.shared():
                state, promoted = await self.ledger.ensure(uid, ref, kind, score)
            if state == "added":
                log.warning("restored a missing %s entry of run %s (%s)", kind, uid, ref)
                self.metrics.slots_repaired.labels(f"missing_{kind}").inc()
            self.wake_promoted(promoted)
        for uid in plan.promoted_waiting:
            self.wake(uid)
        await self.ledger.prune_released()


def body_ref(body: Any) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"
