"""Migrations and idempotent upserts against a real, throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

from supercheck.rows import Row
from supercheck.store import Store, StoreUnavailable, migrations

PG_BIN = "/usr/lib/postgresql/15/bin"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def pg_url():
    root = tempfile.mkdtemp(prefix="sc-pg-")
    os.chmod(root, 0o777)
    data = os.path.join(root, "data")
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(_as_postgres(f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"),
                   check=True, capture_output=True)
    proc = subprocess.Popen(
        _as_postgres(f"{PG_BIN}/postgres", "-D", data, "-p", str(port), "-k", root, "-c", "listen_addresses=127.0.0.1",
                     "-c", "fsync=off"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(100):
        try:
            psycopg.connect(url).close()
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(20)
    shutil.rmtree(root, ignore_errors=True)


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
    assert versions == [("0001",)]


def test_unreachable_database_raises_store_unavailable():
    async def go():
        store = Store(f"postgresql://postgres@127.0.0.1:{_free_port()}/x", connect_timeout=1)
        with pytest.raises(StoreUnavailable, match="PostgreSQL at 127.0.0.1"):
            await store.upsert([row()])
        assert not await store.ready()
    asyncio.run(go())
