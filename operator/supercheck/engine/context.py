"""What one operator process shares between its runs: settings, ports, clock, metrics,
wake-ups, per-run locks and the ledger gate."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from supercheck.clock import Clock, SystemClock
from supercheck.config import Settings
from supercheck.metrics import Metrics
from supercheck.ports import Events, Kube, Ledger, Promotion, Store
from supercheck.tracing import RunTracer


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


class NoEvents:
    """An Event sink that drops everything (a process without Kopf's context)."""

    def post(self, body: dict[str, object], type_: str, reason: str, message: str) -> None:
        return None


@dataclass
class Engine:
    settings: Settings
    kube: Kube
    ledger: Ledger
    store: Store
    metrics: Metrics
    events: Events = field(default_factory=NoEvents)
    clock: Clock = field(default_factory=SystemClock)
    gate: Gate = field(default_factory=Gate)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    cancelling: set[str] = field(default_factory=set)
    network_policies: set[str] = field(default_factory=set)  # namespaces whose runner policy is kept
    rebuild_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tracer: RunTracer = field(default_factory=RunTracer)  # off unless OTEL_* says (supercheck.tracing)

    # --- wake-ups: events, not polling
    def wake_event(self, uid: str) -> asyncio.Event:
        ev = self.wakeups.get(uid)
        if ev is None:
            ev = self.wakeups[uid] = asyncio.Event()
        return ev

    def wake(self, uid: str | None) -> None:
        if uid and uid in self.wakeups:
            self.wakeups[uid].set()

    def wake_promoted(self, promoted: Iterable[Promotion]) -> None:
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

    def extra_labels(self, body: dict[str, object]) -> list[str]:
        """Values of the configured metric labels (METRICS_LABELS) for this run."""
        meta = body.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        return list(self.metrics.extra_labels(labels if isinstance(labels, dict) else None).values())
