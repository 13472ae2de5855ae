"""Helpers for the operator's tests: TestRun manifests, waiting, sampling the cluster; throwaway
Redis and PostgreSQL servers, and free ports for what the tests start themselves."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import redis
from kubernetes.client.rest import ApiException

from tests.conftest import wait_until

GROUP, VERSION, PLURAL = "supercheck.io", "v1alpha1", "testruns"
TERMINAL = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}
RUNNER_SELECTOR = "app.kubernetes.io/managed-by=supercheck"

QUICK_K6 = """export const options = { vus: 1, iterations: 1 };
export default function () {}
"""
SLEEPY_K6 = """import { sleep } from 'k6';
export const options = { vus: 1, iterations: 1 };
export default function () { sleep(Number(__ENV.SLEEP || 2)); }
"""


def make_run(name: str, script: str = QUICK_K6, priority: int = 0, **spec) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TestRun",
        "metadata": {"name": name},
        "spec": {"type": "k6", "script": {"inline": script}, "priority": priority, **spec},
    }
    return body


def create(custom_objects, namespace: str, body: dict) -> dict:
    return custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def list_runs(custom_objects, namespace: str) -> list[dict]:
    return custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def get_run(custom_objects, namespace: str, name: str) -> dict | None:
    try:
        return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def phase(run: dict | None) -> str | None:
    return ((run or {}).get("status") or {}).get("phase")


# One polling helper for every cluster test.
wait_for = wait_until


def wait_all_terminal(custom_objects, namespace: str, count: int, timeout: float = 300) -> list[dict]:
    def done():
        runs = list_runs(custom_objects, namespace)
        return runs if len(runs) == count and all(phase(r) in TERMINAL for r in runs) else None

    def describe():
        runs = list_runs(custom_objects, namespace)
        return {r["metadata"]["name"]: phase(r) for r in runs if phase(r) not in TERMINAL}

    try:
        return wait_for(done, timeout, 0.5, "every TestRun terminal")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not terminal: {describe()}") from None


def ledger_counts(redis_client) -> tuple[int, int]:
    running, queued = redis_client.mget("supercheck:capacity:running", "supercheck:capacity:queued")
    return int(running or 0), int(queued or 0)


def wait_ledger_zero(redis_client, timeout: float = 30) -> None:
    wait_for(lambda: ledger_counts(redis_client) == (0, 0), timeout, 0.25, "the ledger back to zero")


@dataclass
class Sampler:
    """Samples the runner pods (and the ledger) in the background while a burst runs."""

    core_v1: object
    namespace: str
    redis_client: object | None = None
    interval: float = 0.1
    max_running: int = 0
    max_running_per_run: int = 0
    max_ledger_running: int = 0
    samples: int = 0
    pods_seen: dict[str, set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core_v1.list_namespaced_pod(self.namespace, label_selector=RUNNER_SELECTOR).items
                # Conservative: a pod being deleted still counts while its phase says Running.
                running = [p for p in pods if p.status.phase == "Running"]
                per_run: dict[str, int] = {}
                for p in running:
                    run = p.metadata.labels.get("supercheck.io/testrun", "")
                    per_run[run] = per_run.get(run, 0) + 1
                for p in pods:
                    run = p.metadata.labels.get("supercheck.io/testrun", "")
                    self.pods_seen.setdefault(run, set()).add(p.metadata.name)
                self.max_running = max(self.max_running, len(running))
                self.max_running_per_run = max([self.max_running_per_run, *per_run.values()])
                if self.redis_client is not None:
                    try:
                        self.max_ledger_running = max(self.max_ledger_running, ledger_counts(self.redis_client)[0])
                    except Exception:  # noqa: BLE001 - Redis may be restarting on purpose
                        pass
                self.samples += 1
            except Exception as exc:  # noqa: BLE001 - keep sampling through API hiccups
                self.errors.append(str(exc))
            self._stop.wait(self.interval)


def rows_for(db_conn, namespace: str) -> list[tuple]:
    try:
        return db_conn.execute(
            "SELECT name, attempt, phase, final FROM runs WHERE namespace = %s ORDER BY name, attempt",
            (namespace,)).fetchall()
    except Exception:  # noqa: BLE001 - PostgreSQL may be stopped on purpose
        return []


def events_for(core_v1, namespace: str, name: str) -> list[tuple[str, str]]:
    evs = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [(e.reason, e.message) for e in evs]


def event_reasons(core_v1, namespace: str, name: str, *expected: str, timeout: float = 15) -> list[str]:
    """The reasons of the run's Events once each of ``expected`` is among them (Kopf posts Events in
    the background, so they may land just after the status that announces them); on timeout, what is
    there, for the caller's assertion to show."""
    reasons: list[str] = []

    def posted() -> bool:
        reasons[:] = [r for r, _ in events_for(core_v1, namespace, name)]
        return all(e in reasons for e in expected)

    try:
        wait_for(posted, timeout, 0.25, f"Events {expected} of {name}")
    except AssertionError:
        pass
    return reasons


@contextlib.contextmanager
def throwaway_redis(directory: str) -> Iterator[str]:
    """A redis-server of its own on a free port (no persistence) for tests that need no cluster; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), 5, f"redis-server on port {port} to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


TEST_PORTS = range(18700, 18800)  # servers the tests start (the local environment keeps its own ports)
PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    """A port of TEST_PORTS nothing listens on now (tried in random order: tests run side by side)."""
    for port in random.sample(TEST_PORTS, len(TEST_PORTS)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {TEST_PORTS.start}-{TEST_PORTS.stop - 1}")


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (initdb in a temporary folder, fsync off) on a free port; its URL."""
    root = tempfile.mkdtemp(prefix="sc-pg-")
    os.chmod(root, 0o777)
    data = os.path.join(root, "data")
    port = free_port()
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
    try:
        for _ in range(100):
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None:
                    raise RuntimeError(f"postgres on port {port} exited with {proc.returncode}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)
