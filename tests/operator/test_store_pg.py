"""Migrations and idempotent upserts against a real, throwaway PostgreSQL."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from operator_kit import free_port, throwaway_postgres

from supercheck.rows import Row
from supercheck.store import Store, StoreUnavailable, migrations

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url():
    with throwaway_postgres() as url:
        yield url


def row(**kw) -> Row:
    base = dict(namespace="ns", name="r", uid="u1", attempt=1, type="k6", phase="Running", final=False,
                started_at="2030-01-01T00:00:00.000000Z", labels={"team": "qa"})
    base.update(kw)
    return Row(**base)


def test_migrations_are_versioned_files():
    found = migrations()
    assert found and found[0][0] == "0001" and "CREATE TABLE IF NOT EXISTS runs" in found[0][1]


def test_migrate_upsert_and_final_rows_win(pg_url):
    async def go():
        store = Store(pg_url)
        assert await store.ready()
        await store.upsert([row()])
        await store.upsert([row(phase="Passed", final=True, completed_at="2030-01-01T00:00:05.500000Z",
                                summary={"total": 2, "passed": 2, "failed": 0, "flaky": 0, "skipped": 0},
                                artifacts={"bucket": "b", "prefix": "ns/r/u1/attempt-1", "report": "x"})])
        await store.upsert([row(phase="Running")])  # a late provisional write must not undo the final one
        await store.upsert([row(phase="Passed", final=True, completed_at="2030-01-01T00:00:05.500000Z")])
        await store.close()
        second = Store(pg_url)  # a second start: migrations are not applied twice
        assert await second.ready()
        await second.close()
    asyncio.run(go())
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT phase, final, duration_ms, artifacts_prefix, labels->>'team' FROM runs").fetchall()
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert rows == [("Passed", True, 5500, None, "qa")]
    assert versions == [(v,) for v, _ in migrations()]  # each applied once


def test_unreachable_database_raises_store_unavailable():
    async def go():
        store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)
        with pytest.raises(StoreUnavailable, match="PostgreSQL at 127.0.0.1"):
            await store.upsert([row()])
        assert not await store.ready()
    asyncio.run(go())
