"""Monitors on the local control plane: an HTTP monitor through an outage (one Down and one recovery
webhook, one MonitorDown Event, uptime, rows in PostgreSQL), a TCP monitor, and a synthetic Playwright
monitor (its TestRun passes, its artifacts are in playwright-monitor-artifacts, and it waits in the queue
like any run while the running capacity is full).

The sites are the test's own, on ports the OS chooses; runner pods share the host's network in the local
environment (docs/node-agent.md), so a synthetic check reaches them on 127.0.0.1 too."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes.client.rest import ApiException
from operator_kit import GROUP, SLEEPY_K6, VERSION, create, event_reasons, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

MONITORS = "monitors"
PAGE = b"<!doctype html><title>Demo Shop</title><h1>Welcome to the Demo Shop</h1>"


# ---------------------------------------------------------------- the test's own servers


class Site:
    """A local HTTP site on an OS-chosen port; stop() and start() again keep the port (an outage)."""

    def __init__(self) -> None:
        self.port = 0
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Site:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)  # reuses the address
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class Receiver:
    """A webhook receiver: records every POSTed JSON body."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        received = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"

    def states(self) -> list[str]:
        return [p["state"] for p in self.posts]


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site().start()
    yield s
    s.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


# ---------------------------------------------------------------- Monitors through the API


def monitor(name: str, spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Monitor", "metadata": {"name": name}, "spec": spec}


def create_monitor(custom_objects, namespace: str, body: dict) -> dict:
    return custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, MONITORS, body)


def get_monitor(custom_objects, namespace: str, name: str) -> dict | None:
    try:
        return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, MONITORS, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def mstatus(custom_objects, namespace: str, name: str) -> dict:
    return (get_monitor(custom_objects, namespace, name) or {}).get("status") or {}


def wait_state(custom_objects, namespace: str, name: str, state: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (s := mstatus(custom_objects, namespace, name)).get("state") == state and s,
                    timeout, 0.2, f"Monitor {name} {state}")


def count_events(core_v1, namespace: str, name: str, reason: str) -> int:
    evs = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return sum((e.count or 1) for e in evs if e.reason == reason)


# ---------------------------------------------------------------- HTTP and TCP


def test_an_http_monitor_through_an_outage(namespace, core_v1, custom_objects, db_conn, site, receiver):
    create_monitor(custom_objects, namespace, monitor("shop", {
        "interval": "2s", "failureThreshold": 2,
        "http": {"url": site.url, "bodyContains": "Welcome", "timeoutSeconds": 2},
        "notify": [{"url": receiver.url}]}))
    st = wait_state(custom_objects, namespace, "shop", "Up")
    assert st["lastResult"].startswith("HTTP 200 in") and receiver.posts == []  # Unknown -> Up: no news

    site.stop()
    t0 = time.monotonic()
    st = wait_state(custom_objects, namespace, "shop", "Down", 20)
    assert 1.5 < time.monotonic() - t0 < 15  # two failed checks, 2 s apart
    assert st["lastFailure"]["message"] == "connection refused" and st["consecutiveFailures"] >= 2
    assert st["incidentStartedAt"] == st["since"]
    wait_for(lambda: receiver.states() == ["Down"], 15, what="the Down webhook")
    time.sleep(5)  # two more failed checks: no second message
    assert receiver.states() == ["Down"]
    down = receiver.posts[0]
    assert (down["kind"], down["name"], down["namespace"], down["previousState"]) == \
        ("Monitor", "shop", namespace, "Up")
    event_reasons(core_v1, namespace, "shop", "MonitorDown")
    assert count_events(core_v1, namespace, "shop", "MonitorDown") == 1

    site.start()  # the same port
    st = wait_state(custom_objects, namespace, "shop", "Up", 20)
    wait_for(lambda: receiver.states() == ["Down", "Up"], 15, what="the recovery webhook")
    time.sleep(5)
    assert receiver.states() == ["Down", "Up"]
    up = receiver.posts[1]
    assert up["previousState"] == "Down" and up["downtimeSeconds"] > 0
    # notifiedState is written after the delivery, in a write of its own: read the status again
    st = wait_for(lambda: (s := mstatus(custom_objects, namespace, "shop")).get("notifiedState") == "Up" and s,
                  10, 0.2, "notifiedState Up after the recovery POST")
    assert st["state"] == "Up" and st["uptime"]["last24h"] < 100
    assert "s3cret" not in json.dumps(st)
    assert count_events(core_v1, namespace, "shop", "MonitorDown") == 1
    event_reasons(core_v1, namespace, "shop", "MonitorUp")
    assert count_events(core_v1, namespace, "shop", "MonitorUp") == 2  # Unknown -> Up, then the recovery

    def rows():
        return db_conn.execute("SELECT ok, type, message FROM monitor_results WHERE namespace = %s AND name = %s"
                               " ORDER BY due_at", (namespace, "shop")).fetchall()

    # rows are written about every second: wait for the recovery's
    found = wait_for(lambda: (r := rows()) and len(r) >= 6 and r[-1][0] is True and r, 15, what="monitor_results rows")
    oks = [ok for ok, _, _ in found]
    assert oks[0] is True and False in oks and oks[-1] is True
    assert {t for _, t, _ in found} == {"http"}
    assert "connection refused" in {m for ok, _, m in found if not ok}


def test_a_tcp_monitor_up_and_down(namespace, custom_objects):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        create_monitor(custom_objects, namespace, monitor("db", {
            "interval": "2s", "failureThreshold": 1, "tcp": {"host": "127.0.0.1", "port": port, "timeoutSeconds": 2}}))
        st = wait_state(custom_objects, namespace, "db", "Up")
        assert st["lastResult"].startswith("TCP connect in")
    finally:
        stop.set()
        time.sleep(0.3)
        listener.close()
    st = wait_state(custom_objects, namespace, "db", "Down", 20)
    assert st["lastFailure"]["message"] == "connection refused"


# ---------------------------------------------------------------- a synthetic Playwright check

PLAYWRIGHT_CHECK = """import { test, expect } from '@playwright/test';

test('the shop greets its visitors', async ({ page }) => {
  await page.goto(process.env.SITE_URL);
  await expect(page.locator('h1')).toHaveText('Welcome to the Demo Shop');
});
"""


def test_a_synthetic_playwright_monitor_queues_like_any_run_and_stores_its_artifacts(
        operator_ctl, namespace, custom_objects, s3_client, site):
    operator_ctl.start(RUNNING_CAPACITY="1", SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    # Another run holds the only running slot.
    create(custom_objects, namespace, make_run("blocker", SLEEPY_K6, env=[{"name": "SLEEP", "value": "15"}]))
    wait_for(lambda: phase(get_run(custom_objects, namespace, "blocker")) == "Running", 90, what="blocker running")

    create_monitor(custom_objects, namespace, monitor("journey", {
        "interval": "10m", "failureThreshold": 1,
        "playwright": {"script": {"inline": PLAYWRIGHT_CHECK}, "timeoutSeconds": 90,
                       "env": [{"name": "SITE_URL", "value": site.url}], "options": {"retries": 0}}}))
    name = wait_for(lambda: mstatus(custom_objects, namespace, "journey").get("lastRun"), 30,
                    what="the synthetic check's TestRun")
    run = wait_for(lambda: get_run(custom_objects, namespace, name), 10, what=f"TestRun {name}")
    assert run["metadata"]["labels"]["supercheck.io/monitor"] == "journey"
    assert run["metadata"]["ownerReferences"][0]["kind"] == "Monitor"
    assert run["spec"]["priority"] == 100  # SUPERCHECK_MONITOR_PRIORITY's default
    # It counts against the running capacity like any run: queued behind the blocker.
    wait_for(lambda: phase(get_run(custom_objects, namespace, name)) == "Queued", 20, what=f"{name} queued")
    assert phase(get_run(custom_objects, namespace, "blocker")) == "Running"

    run = wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and
                   phase(r) in {"Passed", "Failed", "Error", "TimedOut", "Rejected", "Cancelled"} and r,
                   180, 0.5, f"{name} terminal")
    st = run["status"]
    assert st["phase"] == "Passed", st
    art = st["artifacts"]
    assert art["bucket"] == "playwright-monitor-artifacts"
    listed = s3_client.list_objects_v2(Bucket=art["bucket"], Prefix=art["prefix"] + "/").get("Contents", [])
    assert any(o["Key"].endswith("/result.json") for o in listed), [o["Key"] for o in listed]

    mst = wait_state(custom_objects, namespace, "journey", "Up", 30)
    assert mst["checks"] == 1 and mst["lastResult"].startswith(f"TestRun {name} Passed")
    assert mst["lastLatencyMs"] > 0
