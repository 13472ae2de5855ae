#!/usr/bin/env python3
"""Benchmark the operator's HTTP monitors: N Monitors checking a local server every interval.

    source .dev/env && .venv/bin/python hack/bench_monitors.py [--monitors 1000] [--interval 10s] [--minutes 2]

Needs the local environment with the operator running (make dev-up). Starts a local HTTP server (aiohttp,
on a port the OS chooses), creates the Monitors in a namespace of its own (concurrent API calls), lets
them run for a warm-up interval and then for ``--minutes``, and prints for that window:

* the operator's CPU share (its process's CPU seconds / wall seconds; 1.0 = one core) and CPU per check;
* its RSS (peak of samples every 2 s);
* checks done (``monitor_results`` rows in the window, and ``supercheck_monitor_checks_total``), against
  the N * window / interval expected, and the requests the server answered;
* check lag p50 / p99 (due time -> check start: ``checked_at - due_at`` of the rows; the lag histogram's
  p99 bucket as a cross-check);
* status writes per check (MODIFIED events of the Monitors, seen on one watch).

Then deletes the namespace (the Monitors with it). Not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import psutil
import psycopg
from aiohttp import web
from bench_kit import PeakRss, operator_process, pct  # hack/: beside this script
from kubernetes import client, config, watch

from supercheck.durations import parse_duration

GROUP, VERSION, PLURAL = "supercheck.io", "v1alpha1", "monitors"


# ---------------------------------------------------------------- the checked server


class Server:
    """An aiohttp server in a thread of its own: 200 and a small page to every request."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text="<h1>ok</h1>", content_type="text/html")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        self.loop.run_until_complete(site.start())
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()


# ---------------------------------------------------------------- the operator, its metrics




def metrics_text() -> str:
    url = os.environ.get("SUPERCHECK_METRICS_URL", "http://127.0.0.1:18080/metrics")
    return urllib.request.urlopen(url, timeout=5).read().decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        labels: dict[str, str] = {}
        if "{" in head:
            for part in head[head.index("{") + 1:-1].split(","):
                if "=" in part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        out.append((labels, float(value)))
    return out


def checks_total(text: str) -> float:
    return sum(v for labels, v in samples(text, "supercheck_monitor_checks_total") if labels.get("type") == "http")


def lag_buckets(text: str) -> dict[float, float]:
    return {float(labels["le"]) if labels["le"] != "+Inf" else math.inf: v
            for labels, v in samples(text, "supercheck_monitor_check_lag_seconds_bucket")}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of the observations between two scrapes."""
    delta = sorted((le, after.get(le, 0) - before.get(le, 0)) for le in after)
    total = delta[-1][1] if delta else 0
    for le, count in delta:
        if total and count >= q * total:
            return le
    return math.nan



def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


# ---------------------------------------------------------------- the Monitors


class Writes:
    """Counts the MODIFIED events of the namespace's Monitors (status writes, mostly) on one watch."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        self.modified = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        w = watch.Watch()
        while not self._stop:
            try:
                for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                                   timeout_seconds=30):
                    if ev["type"] == "MODIFIED":
                        self.modified += 1
                    if self._stop:
                        break
            except Exception:  # noqa: BLE001 - a broken watch is opened again
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop = True


def monitor(name: str, url: str, interval: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Monitor", "metadata": {"name": name},
            "spec": {"interval": interval, "http": {"url": url, "timeoutSeconds": 5}}}


def create_all(custom: client.CustomObjectsApi, namespace: str, url: str, n: int, interval: str,
               workers: int) -> float:
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                               monitor(f"m-{i:05d}", url, interval)) for i in range(n)]
        for f in futures:
            f.result()
    return time.monotonic() - t0


def wait_gone(core: client.CoreV1Api, namespace: str, timeout: float = 180) -> None:
    """Wait for the namespace to go (the operator removes each Monitor's finalizer as its daemon stops), so
    that what runs next does not share the operator with a thousand deletions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(1)
    print(f"namespace {namespace} still there after {timeout:.0f} s", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=32, help="concurrent API calls creating the Monitors")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    interval = parse_duration(args.interval)
    database_url = os.environ.get("DATABASE_URL")

    config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = args.workers + 4
    client.Configuration.set_default(cfg)
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    operator = operator_process()
    server = Server()
    url = f"http://127.0.0.1:{server.port}/"

    namespace = f"bench-mon-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    writes = Writes(custom, namespace)
    try:
        created_in = create_all(custom, namespace, url, args.monitors, args.interval, args.workers)
        print(f"{args.monitors} Monitors created in {created_in:.1f} s; warming up for {interval + 5:.0f} s",
              flush=True)
        time.sleep(interval + 5)  # every monitor checked once at once, then on its own phase

        before_text, before_cpu, before_writes = metrics_text(), cpu_seconds(operator), writes.modified
        before_requests = server.requests
        start_wall, start_utc = time.monotonic(), datetime.now(UTC)
        sampler = PeakRss(operator)
        time.sleep(args.minutes * 60)
        wall = time.monotonic() - start_wall
        end_utc = datetime.now(UTC)
        cpu = cpu_seconds(operator) - before_cpu
        after_text, window_writes = metrics_text(), writes.modified - before_writes
        requests = server.requests - before_requests
        sampler.stop()

        checks_metric = checks_total(after_text) - checks_total(before_text)
        lag_hist_p99 = bucket_quantile(lag_buckets(before_text), lag_buckets(after_text), 0.99)
        lags: list[float] = []
        if database_url:
            time.sleep(3)  # the rows are written about every second
            with psycopg.connect(database_url) as conn:
                lags = [r[0] for r in conn.execute(
                    "SELECT extract(epoch FROM checked_at - due_at)::float8 FROM monitor_results"
                    " WHERE namespace = %s AND checked_at >= %s AND checked_at < %s",
                    (namespace, start_utc, end_utc)).fetchall()]
        checks = len(lags) if lags else checks_metric
        expected = args.monitors * wall / interval
        figures = {
            "monitors": args.monitors, "interval_s": interval, "window_s": round(wall, 1),
            "checks": int(checks), "checks_metric": int(checks_metric), "checks_expected": round(expected),
            "server_requests": requests,
            "operator_cpu_share": round(cpu / wall, 4), "operator_cpu_ms_per_check": round(cpu * 1000 / checks, 3)
            if checks else None, "operator_rss_mib": round(sampler.peak / 2**20, 1),
            "lag_p50_ms": round(pct(lags, 50) * 1000, 1), "lag_p99_ms": round(pct(lags, 99) * 1000, 1),
            "lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
            "lag_histogram_p99_le_s": lag_hist_p99,
            "status_writes": window_writes,
            "status_writes_per_check": round(window_writes / checks, 4) if checks else None,
            "checks_per_second": round(checks / wall, 1),
        }
    finally:
        writes.stop()
        core.delete_namespace(namespace)
        wait_gone(core, namespace)

    print(f"{figures['monitors']} HTTP Monitors at {args.interval} against a local server; "
          f"{figures['window_s']} s measured after a warm-up")
    print(f"  checks               {figures['checks']} (expected {figures['checks_expected']}; metric "
          f"{figures['checks_metric']}; server saw {figures['server_requests']}) = "
          f"{figures['checks_per_second']}/s")
    print(f"  operator CPU share   {figures['operator_cpu_share']:.3f} of one core "
          f"({figures['operator_cpu_ms_per_check']} ms CPU per check)")
    print(f"  operator RSS         {figures['operator_rss_mib']} MiB (peak)")
    print(f"  check lag            p50 {figures['lag_p50_ms']} ms, p99 {figures['lag_p99_ms']} ms, "
          f"max {figures['lag_max_ms']} ms (histogram p99 <= {figures['lag_histogram_p99_le_s']} s)")
    print(f"  status writes        {figures['status_writes']} = {figures['status_writes_per_check']} per check")
    if not database_url:
        print("  (DATABASE_URL unset: checks and lag from the metrics only)")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
