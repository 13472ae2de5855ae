"""Monitor checks to PostgreSQL (``monitor_results``): one row per check, written in batches.

A check only queues its row (:meth:`MonitorResults.add`, no I/O); a background task writes the queue
about every second, up to :data:`BATCH_ROWS` rows in one pipelined statement
(``Store.insert_monitor_results``). While PostgreSQL is away the rows wait in the queue and are written
when it is back, oldest first; the queue holds at most ``max_rows`` (:data:`MAX_BUFFERED_ROWS` by
default: 1,000 monitors at 10 s fill it in about 17 minutes), beyond which the oldest rows are dropped,
with a log line saying how many. An hourly sweep deletes the rows older than
``SUPERCHECK_MONITOR_RESULTS_RETENTION_DAYS``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from supercheck.clock import now_utc
from supercheck.ports import StoreUnavailable

log = logging.getLogger(__name__)

MAX_BUFFERED_ROWS = 100_000
BATCH_ROWS = 5_000
FLUSH_SECONDS = 1.0
SWEEP_SECONDS = 3600.0


@dataclass(frozen=True)
class MonitorResultRow:
    namespace: str
    name: str
    uid: str
    type: str  # http, tcp, playwright, k6
    due_at: datetime
    checked_at: datetime
    ok: bool
    latency_ms: int | None
    message: str


class MonitorRowsStore(Protocol):
    """What the writer needs of :class:`supercheck.store.Store`."""

    @property
    def enabled(self) -> bool: ...
    async def insert_monitor_results(self, rows: Sequence[MonitorResultRow]) -> None: ...
    async def delete_monitor_results_before(self, cutoff: datetime, batch: int = 10_000) -> int: ...
    async def close(self) -> None: ...


class RowBuffer:
    """A bounded FIFO of rows: adding to a full one drops the oldest (and counts them)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max(1, max_rows)
        self._rows: collections.deque[MonitorResultRow] = collections.deque()
        self.dropped = 0  # since the last time someone looked (take_dropped)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: MonitorResultRow) -> None:
        if len(self._rows) >= self.max_rows:
            self._rows.popleft()
            self.dropped += 1
        self._rows.append(row)

    def peek(self, n: int) -> list[MonitorResultRow]:
        return [self._rows[i] for i in range(min(n, len(self._rows)))]

    def remove(self, rows: Sequence[MonitorResultRow]) -> None:
        """Remove ``rows`` (a batch taken with :meth:`peek`) now that they are written. Rows dropped
        meanwhile (the buffer overflowed during the write) are not there any more: only those still at
        the front are removed."""
        written = {id(r) for r in rows}
        while self._rows and id(self._rows[0]) in written:
            self._rows.popleft()

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class MonitorResults:
    """The queue of rows and its writer (:meth:`run`, a background task)."""

    def __init__(self, store: MonitorRowsStore, *, retention_days: float, retry_seconds: float,
                 max_rows: int = MAX_BUFFERED_ROWS, flush_seconds: float = FLUSH_SECONDS,
                 now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.retention_days = retention_days
        self.retry_seconds = retry_seconds
        self.flush_seconds = flush_seconds
        self.buffer = RowBuffer(max_rows)
        self._now = now
        self._wake = asyncio.Event()
        self._away_since: datetime | None = None
        self.written = 0

    @property
    def enabled(self) -> bool:
        return self.store.enabled

    def add(self, row: MonitorResultRow) -> None:
        if not self.store.enabled:
            return
        self.buffer.add(row)
        if len(self.buffer) >= BATCH_ROWS:
            self._wake.set()

    def _clock(self) -> datetime:
        return self._now() if self._now is not None else now_utc()

    async def flush(self) -> int:
        """Write what is queued, batch by batch; the rows written. StoreUnavailable when PostgreSQL is
        away (the rows stay queued)."""
        total = 0
        while True:
            dropped = self.buffer.take_dropped()
            if dropped:
                log.warning("monitor_results: %d check rows dropped (PostgreSQL away and %d rows queued); "
                            "the oldest go first", dropped, self.buffer.max_rows)
            batch = self.buffer.peek(BATCH_ROWS)
            if not batch:
                return total
            await self.store.insert_monitor_results(batch)
            self.buffer.remove(batch)
            total += len(batch)
            self.written += len(batch)
            if self._away_since is not None:
                log.info("monitor_results: PostgreSQL is back; queued check rows written")
                self._away_since = None

    async def sweep(self) -> int:
        """Delete the rows older than the retention (0: keep them all); the number deleted."""
        if self.retention_days <= 0 or not self.store.enabled:
            return 0
        cutoff = self._clock() - timedelta(days=self.retention_days)
        deleted = await self.store.delete_monitor_results_before(cutoff)
        if deleted:
            log.info("monitor_results: %d rows older than %g days deleted", deleted, self.retention_days)
        return deleted

    async def run(self) -> None:
        """Flush about every second (at once when a batch is full); sweep every hour."""
        if not self.store.enabled:
            return
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            delay = self.flush_seconds
            try:
                await self.flush()
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + SWEEP_SECONDS
            except StoreUnavailable as exc:
                if self._away_since is None:
                    self._away_since = self._clock()
                    log.warning("monitor_results: %s; %d check rows wait in memory", exc, len(self.buffer))
                delay = self.retry_seconds
            except Exception:  # a bug must not stop the writer: logged, tried again
                log.exception("monitor_results: writing failed")
                delay = self.retry_seconds
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def close(self, timeout: float = 5.0) -> None:
        """A last flush (bounded: a shutdown does not wait for an absent PostgreSQL), then the connection."""
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        if len(self.buffer):
            log.warning("monitor_results: %d check rows not written at shutdown", len(self.buffer))
        await self.store.close()
