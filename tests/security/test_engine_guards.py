"""Refused pods, large scripts, snapshots and secrets in messages, against the real thing
(docs/security.md, "Refused pods, large scripts, and secrets in messages").

The issue's attacks, each stopped:

* **A slot held forever.** A spec the API server refuses as a Pod used to leave the run Pending,
  holding a running slot, its pod re-sent every 2 s. A namespace whose ResourceQuota allows no
  pods refuses every runner pod with 403: the TestRun and the JobRun end Error (PodRejected) with
  the quota's message, and the ledger is back to zero.
* **Large scripts.** A 300 KB inline script overflowed Kopf's last-handled-configuration annotation
  (256 KiB for all of them) and the run could never be deleted. A TestRun at the CRD's maximum
  (1,000,000 characters) and a JobRun with large inline tests pass, and ``kubectl delete`` completes.
* **A user's own ConfigMap named ``<run>-script``** was mounted instead of the operator's snapshot;
  now the run ends Error (SnapshotConflict), the ConfigMap untouched and no pod created.
* **Secrets in messages.** Redis and PostgreSQL passwords given as ``?password=``, in the user info
  or in a keyword DSN reached status messages and Events. The engine (in-memory API server, the
  real ledger and store adapters against a real Redis that wants a password and a real PostgreSQL)
  shows the errors of those services without them, in the status, the Events, the log and the rows.

The cluster tests (marked ``cluster``) run on the local environment; the others start their own
redis-server and PostgreSQL on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client
from prometheus_client import CollectorRegistry

from supercheck.config import Settings
from supercheck.engine.context import Engine
from supercheck.engine.run import RunHandle
from supercheck.engine.testrun import step
from supercheck.ledger import Ledger
from supercheck.metrics import Metrics
from supercheck.rows import Row
from supercheck.store import Store
from tests.conftest import wait_until
from tests.operator.fakes import FakeClock, FakeKube, FakeLedger, RecordingEvents
from tests.operator.operator_kit import (
    GROUP,
    QUICK_K6,
    VERSION,
    create,
    free_port,
    get_run,
    ledger_counts,
    make_run,
    phase,
    throwaway_postgres,
    wait_ledger_zero,
)

TERMINAL = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}
JOBRUNS = "jobruns"

# ---------------------------------------------------------------- secrets in messages (integration)

REDIS_PASSWORD = "Redis-Secret-7f3a"
PG_PASSWORD = "Pg Secret 9c1e"  # with spaces: quoted in a keyword DSN
SSL_PASSWORD = "Ssl-Secret-4b2d"
SECRETS = (REDIS_PASSWORD, PG_PASSWORD, SSL_PASSWORD, "Pg%20Secret%209c1e", "Pg+Secret+9c1e")


@contextlib.contextmanager
def redis_with_password() -> Iterator[int]:
    """A redis-server of its own that wants REDIS_PASSWORD; its port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sc-redis-") as directory:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory, "--requirepass", REDIS_PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            probe = redis.Redis(port=port, password=REDIS_PASSWORD)
            wait_until(lambda: _pings(probe), 5, what=f"redis-server on port {port}")
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def _pings(c: redis.Redis) -> bool:
    try:
        return bool(c.ping())
    except redis.RedisError:
        return False


def engine(ledger: Any, store: Any) -> tuple[Engine, FakeKube, RecordingEvents]:
    clock = FakeClock()
    cfg = Settings(running_capacity=2, queued_capacity=2, redis_url="redis://unused", database_url="postgresql://x",
                   metrics_port=0, service_retry_seconds=2.0, script_ref_grace_seconds=10.0)
    kube, events = FakeKube(clock), RecordingEvents()
    eng = Engine(settings=cfg, kube=kube, ledger=ledger, store=store,
                 metrics=Metrics(cfg, registry=CollectorRegistry()), events=events, clock=clock)
    return eng, kube, events


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {text!r}"


def said(kube: FakeKube, events: RecordingEvents, caplog: pytest.LogCaptureFixture) -> tuple[str, str, str]:
    return (json.dumps(kube.testrun("a").get("status") or {}), json.dumps(events.posted), caplog.text)


@pytest.mark.integration
@pytest.mark.parametrize("form", [
    "redis://:{pw}@127.0.0.1:{port}/0",
    "redis://default:{pw}@127.0.0.1:{port}/0",
    "redis://127.0.0.1:{port}/0?password={pw}",
])
def test_a_redis_password_in_any_url_form_is_not_in_status_events_or_log(form, caplog):
    """Redis refuses the password (WRONGPASS) and, once stopped, the connection: the run waits for the
    ledger and says why, in its status and an Event, without the password."""
    async def go(port: int, password: str) -> None:
        ledger = Ledger(form.format(pw=password, port=port), 2, 2, timeout=1.0)
        eng, kube, events = engine(ledger, None)
        kube.add_testrun("a", {"type": "k6", "script": {"inline": QUICK_K6}})
        try:
            assert await step(RunHandle(eng, kube.testrun("a"))) == 2.0
        finally:
            await ledger.close()
        st = kube.testrun("a")["status"]
        assert (st["phase"], st["reason"]) == ("Pending", "LedgerUnavailable")
        assert f"127.0.0.1:{port}/0" in st["message"]  # where, not how to get in
        assert_no_secret(*said(kube, events, caplog))

    caplog.set_level(logging.INFO)
    with redis_with_password() as port:
        asyncio.run(go(port, REDIS_PASSWORD[::-1]))  # a wrong password: WRONGPASS
    asyncio.run(go(port, REDIS_PASSWORD))  # the right one, Redis gone: connection refused


@pytest.fixture(scope="module")
def pg_url():
    with throwaway_postgres() as url:
        yield url


def _pg_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.integration
@pytest.mark.parametrize("form", [
    "postgresql://postgres:{pw_url}@127.0.0.1:{port}/missing?sslpassword={ssl}",
    "postgresql://postgres@127.0.0.1:{port}/missing?password={pw_url}",
    "host=127.0.0.1 port={port} dbname=missing user=postgres password='{pw}' sslpassword={ssl}",
])
def test_a_postgresql_password_in_any_form_is_not_in_status_events_or_log(form, pg_url, caplog):
    """PostgreSQL refuses the connection (no such database): the run's rows wait, and its condition and
    Event say why without the password."""
    dsn = form.format(pw=PG_PASSWORD, pw_url=PG_PASSWORD.replace(" ", "%20"), ssl=SSL_PASSWORD,
                      port=_pg_port(pg_url))

    async def go() -> None:
        store = Store(dsn, connect_timeout=2)
        eng, kube, events = engine(FakeLedger(2, 2, FakeClock()), store)
        kube.add_testrun("a", {"type": "k6", "script": {"inline": QUICK_K6}, "resources": {"cpu": "64"}})
        try:
            assert await step(RunHandle(eng, kube.testrun("a"))) == 2.0  # refused (resources); rows wait
        finally:
            await store.close()
        st = kube.testrun("a")["status"]
        recorded = next(c for c in st["conditions"] if c["type"] == "ResultsRecorded")
        assert (recorded["status"], recorded["reason"]) == ("False", "DatabaseUnavailable")
        assert "missing" in recorded["message"] and "does not exist" in recorded["message"]
        assert "DatabaseUnavailable" in events.reasons()
        assert_no_secret(*said(kube, events, caplog))

    caplog.set_level(logging.INFO)
    asyncio.run(go())


@pytest.mark.integration
def test_rows_in_postgresql_carry_no_password(pg_url):
    async def go() -> None:
        store = Store(pg_url)
        await store.upsert([Row(namespace="ns", name="r", uid="u1", attempt=1, type="k6", phase="Error", final=True,
                                message=f"a test said: connect redis://:{REDIS_PASSWORD}@cache:6379 and "
                                        f"host=db password='{PG_PASSWORD}' failed")])
        await store.close()

    asyncio.run(go())
    with psycopg.connect(pg_url) as conn:
        (message,) = conn.execute("SELECT message FROM runs WHERE uid = 'u1'").fetchone()
    assert "redis://:***@cache:6379" in message and "password='***'" in message
    assert_no_secret(message)


# ---------------------------------------------------------------- on the local environment (cluster)


def terminal(get, timeout: float = 180) -> dict:
    return wait_until(lambda: (r := get()) and phase(r) in TERMINAL and r, timeout, what="the run terminal")


def get_job(custom_objects, namespace: str, name: str) -> dict | None:
    try:
        return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, JOBRUNS, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def create_job(custom_objects, namespace: str, name: str, spec: dict) -> dict:
    return custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, JOBRUNS, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "JobRun",
                                             "metadata": {"name": name}, "spec": spec})


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start(RUNNING_CAPACITY="4")
    return operator_ctl


@pytest.mark.cluster
def test_pods_refused_by_a_resourcequota_end_the_runs_error_and_free_their_slots(
        operator, namespace, core_v1, custom_objects, redis_client, db_conn):
    core_v1.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})))
    wait_until(lambda: (core_v1.read_namespaced_resource_quota("no-pods", namespace).status.hard or {}).get("pods"),
               30, what="the quota's status")
    create(custom_objects, namespace, make_run("wedge"))
    create_job(custom_objects, namespace, "wedge-job", {
        "type": "k6", "parallelism": 2,
        "tests": [{"name": "one", "script": {"inline": QUICK_K6}}, {"name": "two", "script": {"inline": QUICK_K6}}]})
    st = terminal(lambda: get_run(custom_objects, namespace, "wedge"), 60)["status"]
    assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "PodRejected", 1), st
    assert "exceeded quota: no-pods" in st["message"] and "(403)" in st["message"], st["message"]
    assert "slot" not in st or st["slot"] is None
    job = terminal(lambda: get_job(custom_objects, namespace, "wedge-job"), 60)["status"]
    assert (job["phase"], job["reason"]) == ("Error", "PodRejected"), job
    assert job["message"].startswith("shard ") and "exceeded quota: no-pods" in job["message"]
    wait_ledger_zero(redis_client)
    assert ledger_counts(redis_client) == (0, 0)
    assert core_v1.list_namespaced_pod(namespace).items == []
    wait_until(lambda: "PodRejected" in [e.reason for e in core_v1.list_namespaced_event(
        namespace, field_selector="involvedObject.name=wedge").items], 15, what="the PodRejected Event")
    rows = wait_until(lambda: db_conn.execute(
        "SELECT phase, reason FROM runs WHERE namespace = %s AND name = 'wedge'", (namespace,)).fetchall(), 30,
        what="wedge's row")
    assert rows == [("Error", "PodRejected")]


def padded_k6(total: int) -> str:
    """A passing k6 script of exactly ``total`` ASCII characters (a comment makes up the size)."""
    head = QUICK_K6 + "// "
    return head + "x" * (total - len(head))


def kubectl_delete(kubectl, namespace: str, kind: str, name: str) -> None:
    out = kubectl("delete", kind, name, "-n", namespace, "--timeout=90s", timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.cluster
def test_a_script_at_the_crds_maximum_runs_and_its_testrun_can_be_deleted(
        operator, namespace, custom_objects, kubectl, redis_client):
    script = padded_k6(1_000_000)
    assert len(script) == 1_000_000  # the CRD's maxLength for spec.script.inline
    create(custom_objects, namespace, make_run("big", script))
    run = terminal(lambda: get_run(custom_objects, namespace, "big"), 240)
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Passed", "TestsPassed"), run["status"]
    annotations = run["metadata"].get("annotations") or {}
    assert "supercheck.io/last-handled-configuration" not in annotations  # Kopf keeps no copy of the spec
    kubectl_delete(kubectl, namespace, "testrun", "big")
    assert get_run(custom_objects, namespace, "big") is None  # the finalizer was removed
    wait_ledger_zero(redis_client)


@pytest.mark.cluster
def test_a_jobrun_with_large_inline_tests_runs_and_can_be_deleted(
        operator, namespace, custom_objects, kubectl, redis_client):
    tests = [{"name": name, "script": {"inline": padded_k6(450_000)}} for name in ("first", "second")]
    create_job(custom_objects, namespace, "bigjob", {"type": "k6", "parallelism": 2, "tests": tests})
    job = terminal(lambda: get_job(custom_objects, namespace, "bigjob"), 240)
    assert job["status"]["phase"] == "Passed", job["status"]
    kubectl_delete(kubectl, namespace, "jobrun", "bigjob")
    assert get_job(custom_objects, namespace, "bigjob") is None
    wait_ledger_zero(redis_client)


@pytest.mark.cluster
def test_a_users_configmap_named_like_the_snapshot_is_never_mounted(
        operator, namespace, core_v1, custom_objects, redis_client):
    theirs = "import http from 'k6/http';\nexport default function () { http.get('http://169.254.169.254/'); }\n"
    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="mine-script"), data={"mine.js": theirs}))
    create(custom_objects, namespace, make_run("mine"))
    st = terminal(lambda: get_run(custom_objects, namespace, "mine"), 60)["status"]
    assert (st["phase"], st["reason"]) == ("Error", "SnapshotConflict"), st
    assert "rename or delete ConfigMap 'mine-script'" in st["message"]
    assert core_v1.list_namespaced_pod(namespace).items == []
    assert core_v1.read_namespaced_config_map("mine-script", namespace).data == {"mine.js": theirs}
    wait_ledger_zero(redis_client)
