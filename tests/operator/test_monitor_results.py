"""Monitor check rows (supercheck.monitorresults): the bounded queue, and the writer against a real,
throwaway PostgreSQL (as tests/operator/test_store_pg.py): batches, one row per due time, rows kept
while PostgreSQL is away and written when it is back, the retention sweep."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from operator_kit import free_port, throwaway_postgres

from supercheck.monitorresults import MonitorResultRow, MonitorResults, RowBuffer
from supercheck.store import Store

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def row(i: int, uid: str = "m1", ok: bool = True, at: datetime = T0,
        message: str = "HTTP 200 in 3 ms") -> MonitorResultRow:
    due = at + timedelta(seconds=10 * i)
    return MonitorResultRow(namespace="ns", name="shop", uid=uid, type="http", due_at=due,
                            checked_at=due + timedelta(milliseconds=4), ok=ok, latency_ms=3, message=message)


# ---------------------------------------------------------------- the queue (pure)


def test_a_full_buffer_drops_the_oldest_and_counts_them():
    buf = RowBuffer(3)
    for i in range(5):
        buf.add(row(i))
    assert len(buf) == 3 and [r.due_at for r in buf.peek(10)] == [row(i).due_at for i in (2, 3, 4)]
    assert buf.take_dropped() == 2 and buf.take_dropped() == 0


def test_rows_written_are_removed_even_if_some_were_dropped_meanwhile():
    buf = RowBuffer(3)
    for i in range(3):
        buf.add(row(i))
    batch = buf.peek(2)  # rows 0 and 1 go to PostgreSQL ...
    buf.add(row(3))  # ... while a new row pushes row 0 out
    buf.remove(batch)
    assert [r.due_at for r in buf.peek(10)] == [row(2).due_at, row(3).due_at]


def test_a_disabled_store_queues_nothing():
    results = MonitorResults(Store(None), retention_days=30, retry_seconds=0.1)
    results.add(row(0))
    assert len(results.buffer) == 0


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_url():
    with throwaway_postgres() as url:
        yield url


def table(pg_url: str, query: str = "SELECT uid, due_at, ok, latency_ms, message FROM monitor_results ORDER BY due_at"):
    with psycopg.connect(pg_url) as conn:
        return conn.execute(query).fetchall()


@pytest.mark.integration
def test_rows_are_written_in_batches_once_per_due_time(pg_url):
    async def go():
        results = MonitorResults(Store(pg_url), retention_days=30, retry_seconds=0.1)
        for i in range(7000):  # more than one batch
            results.add(row(i, uid="batch", ok=i % 10 != 0, message="x\x00y" if i == 1 else "HTTP 200 in 3 ms"))
        assert await results.flush() == 7000
        results.add(row(0, uid="batch", ok=False, message="written again after a restart"))
        await results.flush()
        await results.close()

    asyncio.run(go())
    rows = table(pg_url, "SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM monitor_results WHERE uid = 'batch'")
    assert rows == [(7000, 700)]
    first = table(pg_url, "SELECT ok, message FROM monitor_results WHERE uid = 'batch' ORDER BY due_at LIMIT 2")
    assert first == [(False, "HTTP 200 in 3 ms"), (True, "xy")]  # the first row stands; no NUL in text


@pytest.mark.integration
def test_rows_wait_while_postgres_is_away_and_are_written_when_it_is_back(pg_url, caplog):
    async def go():
        store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout=1)
        results = MonitorResults(store, retention_days=30, retry_seconds=0.1, flush_seconds=0.05, max_rows=50)
        writer = asyncio.create_task(results.run())
        for i in range(60):  # 10 more than the queue holds
            results.add(row(i, uid="outage"))
        await asyncio.sleep(1.5)  # tried, not written
        assert len(results.buffer) == 50 and results.written == 0
        store.url = pg_url  # PostgreSQL is back (where the operator looks for it)
        for _ in range(100):
            if results.written:
                break
            await asyncio.sleep(0.1)
        writer.cancel()
        await results.close()
        return results

    with caplog.at_level(logging.INFO, logger="supercheck.monitorresults"):
        results = asyncio.run(go())
    assert results.written == 50
    dues = [r[0] for r in table(pg_url, "SELECT due_at FROM monitor_results WHERE uid = 'outage' ORDER BY due_at")]
    assert dues == [row(i).due_at for i in range(10, 60)]  # the 10 oldest were dropped
    text = caplog.text
    assert "check rows wait in memory" in text and "10 check rows dropped" in text and "PostgreSQL is back" in text


@pytest.mark.integration
def test_the_sweep_deletes_rows_older_than_the_retention(pg_url):
    now = T0 + timedelta(days=40)

    async def go():
        results = MonitorResults(Store(pg_url), retention_days=30, retry_seconds=0.1, now=lambda: now)
        for day in range(40):
            results.add(row(0, uid="sweep", at=T0 + timedelta(days=day)))
        await results.flush()
        deleted = await results.sweep()
        kept = MonitorResults(Store(pg_url), retention_days=0, retry_seconds=0.1, now=lambda: now)
        assert await kept.sweep() == 0  # 0: kept forever
        await results.close()
        await kept.close()
        return deleted

    assert asyncio.run(go()) >= 10  # (and the other tests' rows, all older still)
    kept = table(pg_url, "SELECT count(*), min(checked_at) FROM monitor_results WHERE uid = 'sweep'")
    assert kept[0][0] == 30 and kept[0][1] >= now - timedelta(days=30)


@pytest.mark.integration
def test_the_sweep_deletes_in_batches(pg_url):
    async def go():
        store = Store(pg_url)
        results = MonitorResults(store, retention_days=30, retry_seconds=0.1)
        for i in range(25):
            results.add(row(i, uid="batches", at=T0 - timedelta(days=100)))
        await results.flush()
        deleted = await store.delete_monitor_results_before(T0, batch=10)
        await results.close()
        return deleted

    assert asyncio.run(go()) == 25
    assert table(pg_url, "SELECT count(*) FROM monitor_results WHERE uid = 'batches'") == [(0,)]
