#!/usr/bin/env python3
"""Benchmark Supercheck at scale: N short k6 runs through the capacity ledger, against the same N
workloads as one Indexed Job (and, optionally, as N plain Jobs queued by Kueue).

    source .dev/env && .venv/bin/python hack/bench_scale.py [--runs 1000] [--capacity 6] [--skip-kueue]

Needs the local environment (make dev-up). It restarts the environment's operator with
RUNNING_CAPACITY=<capacity> and QUEUED_CAPACITY=max(1000, runs), and puts the default configuration
back at the end. Each workload is one `k6 run` of the same script (one iteration, one constant check,
no network). Per system, on the client's clock (one pod watch per namespace):

* makespan: the first create -> the last run terminal (TestRuns: their phase; the Job: Complete);
* ideal makespan: N x the median run time / capacity (run time: the runner pod's container, from
  Running seen to terminal seen on the watch) and the overhead over it;
* dispatch: the moment a pod could have been created (its run created and, past the first
  <capacity> pods, the slot it takes freed) -> the pod created; with N >> capacity the plain
  "created -> pod" figure is mostly queue wait, so it is printed apart;
* refill: the i-th runner pod terminated -> the (capacity + i)-th pod created;
* API requests per run: the kube-apiserver's apiserver_request_total before/after, every client
  (operator, controllers, scheduler, node agent) less this script's own requests, WATCH excluded
  (long-lived connections are counted when they end, not per run);

and for Supercheck alone: the slot held per run (pod created -> the run's completedAt), the
invariants (never more than <capacity> runner pods non-terminal, checked on every pod event in
the watch's order; the Redis ledger sampled every 100 ms and back to zero; N final rows in
PostgreSQL), the operator's RSS and CPU seconds. Not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench_kit import cpu_profile, cpu_snapshot, pct  # hack/: beside this script
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "supercheck.io", "v1alpha1", "testruns"
TERMINAL_RUN = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}
TERMINAL_POD = {"Succeeded", "Failed"}
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
QUEUED_RSS_AFTER_SECONDS = 12.0  # after the last create: the operator's RSS with the runs queued
SETTLED_RSS_AFTER_SECONDS = 45.0  # ... and once the burst's events are handled (the queue still long)
SCRIPT = """import { check } from 'k6';

export const options = { vus: 1, iterations: 1 };

export default function () {
  check(1, { 'one is one': (v) => v === 1 });
}
"""


# ---------------------------------------------------------------- the pure core: figures from timestamps


def parse_time(text: str) -> float:
    """A Kubernetes or Supercheck timestamp (RFC 3339, 'Z' or an offset, with or without fractions)
    as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ideal_makespan(runs: int, run_seconds: float, capacity: int) -> float:
    """What N runs of ``run_seconds`` each take on ``capacity`` slots with no overhead at all
    (every slot always busy)."""
    if runs <= 0 or capacity <= 0:
        return 0.0
    return runs * run_seconds / capacity


def overhead_pct(makespan: float, ideal: float) -> float:
    return (makespan / ideal - 1) * 100 if ideal > 0 else float("nan")


def refill_latencies(finished: Iterable[float], created: Iterable[float], capacity: int) -> list[float]:
    """The i-th pod to finish frees the slot the (capacity + i)-th pod to be created takes."""
    f, c = sorted(finished), sorted(created)
    return [c[capacity + i] - f[i] for i in range(min(len(f), len(c) - capacity))]


def dispatch_latencies(pods: Iterable[tuple[float, float]], finished: Iterable[float], capacity: int) -> list[float]:
    """``pods``: (its run created, the pod created). A pod could be created once its run existed and,
    for the k-th pod past the first ``capacity``, once the (k - capacity)-th pod finished."""
    f = sorted(finished)
    out = []
    for k, (owner_created, pod_created) in enumerate(sorted(pods, key=lambda p: p[1])):
        ready = owner_created
        if k >= capacity and k - capacity < len(f):
            ready = max(ready, f[k - capacity])
        out.append(pod_created - ready)
    return out


def max_concurrent(intervals: Iterable[tuple[int, int | None]]) -> int:
    """The most intervals open at once; each is (start, end) in event order (ends before starts
    on a tie: one event cannot both end a pod and start another); ``None``: still open."""
    points: list[tuple[int, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        if end is not None:
            points.append((end, -1))
    points.sort(key=lambda p: (p[0], p[1]))
    now = peak = 0
    for _, delta in points:
        now += delta
        peak = max(peak, now)
    return peak


def request_totals(metrics_text: str) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` of a kube-apiserver's /metrics, summed per (verb, resource[/sub])
    over codes, groups, versions and scopes. Non-resource requests (/metrics, /healthz) are left out."""
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":  # the parser strips the counter's _total
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            resource = sample.labels.get("resource", "")
            if not resource:
                continue
            sub = sample.labels.get("subresource", "")
            out[(sample.labels.get("verb", ""), f"{resource}/{sub}" if sub else resource)] += int(sample.value)
    return out


def requests_made(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]],
                  own: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """What the cluster's clients made between two scrapes, less this script's own requests;
    WATCH left out (a watch is counted when it ends, whenever that is)."""
    out: Counter[tuple[str, str]] = Counter()
    for key in set(before) | set(after):
        if key[0] == "WATCH":
            continue
        n = after.get(key, 0) - before.get(key, 0) - own.get(key, 0)
        if n > 0:
            out[key] = n
    return out


@dataclass
class Result:
    """One system's figures (seconds; NaN where a figure does not apply)."""

    system: str
    runs: int
    capacity: int
    makespan: float
    run_seconds: float
    dispatch: list[float]
    refill: list[float]
    waited: list[float] = field(default_factory=list)  # created -> pod, queue wait included
    api_requests: int = 0
    api_split: Counter[tuple[str, str]] = field(default_factory=Counter)
    not_passed: int = 0
    create_seconds: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per component (bench_kit.cpu_profile)
    max_pods: int = 0  # workload pods non-terminal at once (at most the capacity, or the quota is not held)

    @property
    def ideal(self) -> float:
        return ideal_makespan(self.runs, self.run_seconds, self.capacity)

    @property
    def throughput(self) -> float:
        return self.runs / self.makespan if self.makespan > 0 else float("nan")

    @property
    def api_per_run(self) -> float:
        return self.api_requests / self.runs if self.runs else float("nan")


@dataclass
class SupercheckExtras:
    slot_held: list[float]
    rss_queued_mb: float
    rss_peak_mb: float
    rss_settled_mb: float
    queued_at_settled: int
    cpu_seconds: float
    idle_cpu_pct: float
    idle_seconds: float
    max_pods: int
    max_ledger_running: int
    ledger_end: tuple[int, int]
    pg_rows: int

    def violations(self, runs: int, capacity: int) -> list[str]:
        out = []
        if self.max_pods > capacity:
            out.append(f"{self.max_pods} runner pods non-terminal at once (capacity {capacity})")
        if self.max_ledger_running > capacity:
            out.append(f"the ledger counted {self.max_ledger_running} running (capacity {capacity})")
        if self.ledger_end != (0, 0):
            out.append(f"the ledger ended at running={self.ledger_end[0]} queued={self.ledger_end[1]}")
        if self.pg_rows != runs:
            out.append(f"{self.pg_rows} final rows in PostgreSQL for {runs} runs")
        return out


def _ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:.0f}"  # NaN: not measured


def _num(x: float, fmt: str) -> str:
    return "-" if x != x else format(x, fmt)


def format_table(results: list[Result], skipped: dict[str, str]) -> str:
    """The systems side by side; a system that did not run is a line saying why."""
    head = (f"{'':12} {'makespan s':>10} {'runs/s':>7} {'run s':>6} {'ideal s':>8} {'overhead %':>10} "
            f"{'dispatch p50/p99 ms':>20} {'refill p99 ms':>13} {'API req/run':>11}")
    lines = [head, "-" * len(head)]
    for r in results:
        dispatch = f"{_ms(pct(r.dispatch, 50))}/{_ms(pct(r.dispatch, 99))}"
        lines.append(
            f"{r.system:12} {_num(r.makespan, '.1f'):>10} {_num(r.throughput, '.2f'):>7} "
            f"{_num(r.run_seconds, '.2f'):>6} {_num(r.ideal, '.1f'):>8} "
            f"{_num(overhead_pct(r.makespan, r.ideal), '.0f'):>10} {dispatch:>20} "
            f"{_ms(pct(r.refill, 99)):>13} {_num(r.api_per_run, '.1f'):>11}")
    for system, why in skipped.items():
        lines.append(f"{system:12} not run: {why}")
    return "\n".join(lines)


def format_extras(r: Result, x: SupercheckExtras) -> str:
    bad = x.violations(r.runs, r.capacity)
    return "\n".join([
        f"Supercheck slot held per run (pod created -> run completed) p50/p99: "
        f"{_ms(pct(x.slot_held, 50))}/{_ms(pct(x.slot_held, 99))} ms",
        f"Supercheck operator RSS: {x.rss_queued_mb:.0f} MB {QUEUED_RSS_AFTER_SECONDS:.0f} s after the last create "
        f"({r.runs} runs queued or running), {x.rss_settled_mb:.0f} MB at {SETTLED_RSS_AFTER_SECONDS:.0f} s "
        f"({x.queued_at_settled} still queued), peak {x.rss_peak_mb:.0f} MB",
        f"Supercheck operator CPU: {x.cpu_seconds / r.runs * 1000:.1f} s per 1,000 runs "
        f"({x.cpu_seconds:.1f} s for {r.runs}); idle {x.idle_cpu_pct:.2f} % of a core over {x.idle_seconds:.0f} s",
        f"Supercheck invariants: {'OK' if not bad else 'VIOLATED: ' + '; '.join(bad)} "
        f"(max runner pods at once {x.max_pods}, max ledger running {x.max_ledger_running}, "
        f"ledger at the end {x.ledger_end}, {x.pg_rows} PostgreSQL rows)",
    ])


def format_details(r: Result) -> str:
    top = ", ".join(f"{verb} {res} {n / r.runs:.2f}" for (verb, res), n in r.api_split.most_common()
                    if n / r.runs >= 0.05)
    extra = f"; {r.not_passed} runs did not pass" if r.not_passed else ""
    create = f"; {r.runs} creates took {r.create_seconds:.1f} s" if r.create_seconds == r.create_seconds else ""
    return (f"{r.system}: created -> pod (queue wait included) p50/p99 {_ms(pct(r.waited, 50))}/"
            f"{_ms(pct(r.waited, 99))} ms{create}{extra}; at most {r.max_pods} pods at once\n"
            f"  API requests per run: {top or '-'}")


def format_cpu(results: list[Result]) -> str:
    """Where the machine's CPU went, per run (ms), the systems side by side: which cost is whose."""
    measured = [r for r in results if r.cpu]
    if not measured:
        return ""
    names = sorted({k for r in measured for k in r.cpu}, key=lambda k: (k in ("other", "machine"), k))
    head = f"{'CPU ms per run':24}" + "".join(f"{r.system:>13}" for r in measured)
    lines = [head, "-" * len(head)]
    for name in names:
        label = {"pods": "pods (runner/k6 trees)", "machine": "machine (all cores)",
                 "other": "other (this script, ...)"}.get(name, name)
        lines.append(f"{label:24}" + "".join(f"{_num(r.cpu.get(name, math.nan) / r.runs * 1000, '.0f'):>13}"
                                             for r in measured))
    lines.append(f"{'machine busy %':24}" + "".join(
        f"{_num(r.cpu.get('machine', math.nan) / r.makespan / (os.cpu_count() or 1) * 100, '.0f'):>13}"
        for r in measured))
    return "\n".join(lines)


def ratio_line(results: list[Result]) -> str | None:
    by = {r.system: r for r in results}
    if "Supercheck" not in by or "Indexed Job" not in by:
        return None
    ratio = by["Supercheck"].throughput / by["Indexed Job"].throughput
    return f"throughput Supercheck / Indexed Job: {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})"


# ---------------------------------------------------------------- the imperative shell: the cluster


class Own:
    """This script's own API requests, to take out of the apiserver's counts."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def reset(self) -> None:
        """From the apiserver's "before" scrape on: what came earlier is in both scrapes."""
        with self.lock:
            self.counts.clear()

    def add(self, verb: str, resource: str, n: int = 1) -> None:
        with self.lock:
            self.counts[(verb, resource)] += n


@dataclass
class PodTimes:
    added: float
    added_seq: int
    owner: str
    running: float | None = None
    terminal: float | None = None
    terminal_seq: int | None = None
    container: tuple[float, float] | None = None  # the container's startedAt/finishedAt (whole seconds)


def watch_forever(list_fn: Callable, namespace: str, resource: str, own: Own, stop: threading.Event,
                  ready: threading.Event, on_event: Callable[[dict], None]) -> None:
    """Watch one kind in a namespace until ``stop``: each event to ``on_event``; a watch that ends is
    resumed from its last resourceVersion, one that expired (410) from now."""
    from kubernetes import watch
    from kubernetes.client import ApiException

    rv = None
    while not stop.is_set():
        w = watch.Watch()
        own.add("WATCH", resource)
        try:
            kwargs = {"resource_version": rv} if rv else {}
            ready.set()
            for ev in w.stream(list_fn, namespace, timeout_seconds=300, **kwargs):
                on_event(ev)
                rv = w.resource_version
                if stop.is_set():
                    return
        except ApiException as exc:
            if exc.status == 410:
                rv = None
                continue
            if not stop.is_set():
                time.sleep(0.2)


class PodWatch:
    """Every pod of a namespace: when it was first seen, seen Running, seen terminal (or deleted);
    ``owner_label`` names the run it belongs to. One event counter orders all of it."""

    def __init__(self, core, namespace: str, owner_label: str, own: Own) -> None:
        self.core, self.namespace, self.owner_label, self.own = core, namespace, owner_label, own
        self.pods: dict[str, PodTimes] = {}
        self.seq = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        watch_forever(self.core.list_namespaced_pod, self.namespace, "pods", self.own, self._stop, self._ready,
                      lambda ev: self._event(ev["type"], ev["object"]))

    def _event(self, kind: str, pod) -> None:
        now = time.time()
        with self.cond:
            self.seq += 1
            name = pod.metadata.name
            t = self.pods.get(name)
            if t is None:
                t = self.pods[name] = PodTimes(now, self.seq, (pod.metadata.labels or {}).get(self.owner_label, ""))
            phase = pod.status.phase if pod.status else None
            if phase == "Running" and t.running is None:
                t.running = now
            if (phase in TERMINAL_POD or kind == "DELETED") and t.terminal is None:
                t.terminal, t.terminal_seq = now, self.seq
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                term = cs.state.terminated if cs.state else None
                if term is not None and term.started_at and term.finished_at:
                    t.container = (term.started_at.timestamp(), term.finished_at.timestamp())
            self.cond.notify_all()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, PodTimes]:
        with self.cond:
            return {k: PodTimes(**vars(v)) for k, v in self.pods.items()}

    def run_seconds(self) -> float:
        """The median container time: Running seen -> terminal seen; the container's own (whole
        seconds) times for a pod never seen Running."""
        times = []
        for t in self.snapshot().values():
            if t.running is not None and t.terminal is not None:
                times.append(t.terminal - t.running)
            elif t.container is not None:
                times.append(t.container[1] - t.container[0])
        return statistics.median(times) if times else float("nan")

    def max_non_terminal(self) -> int:
        return max_concurrent((t.added_seq, t.terminal_seq) for t in self.snapshot().values())


class ObjectWatch:
    """The latest version of each object of one kind in a namespace, and when each was first seen
    ``done`` (a predicate on the object as a dict)."""

    def __init__(self, list_fn: Callable, namespace: str, done: Callable[[dict], bool], own: Own,
                 resource: str) -> None:
        self.list_fn, self.namespace, self.done, self.own, self.resource = list_fn, namespace, done, own, resource
        self.objects: dict[str, dict] = {}
        self.done_at: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        watch_forever(self.list_fn, self.namespace, self.resource, self.own, self._stop, self._ready, self._event)

    def _event(self, ev: dict) -> None:
        obj = ev["object"]
        obj = obj if isinstance(obj, dict) else obj.to_dict()
        now = time.time()
        with self.cond:
            name = obj["metadata"]["name"]
            self.objects[name] = obj
            if name not in self.done_at and self.done(obj):
                self.done_at[name] = now
            self.cond.notify_all()

    def wait_done(self, count: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.done_at) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what}: {len(self.done_at)} of {count} done after {timeout:.0f} s")
                self.cond.wait(min(left, 1.0))

    def stop(self) -> None:
        self._stop.set()


def run_terminal(obj: dict) -> bool:
    return ((obj.get("status") or {}).get("phase")) in TERMINAL_RUN


def job_finished(obj: dict) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


class Cluster:
    """The API clients, the apiserver's request counts, namespaces."""

    def __init__(self, threads: int) -> None:
        from kubernetes import client, config

        config.load_kube_config()
        cfg = client.Configuration.get_default_copy()
        cfg.connection_pool_maxsize = threads + 8
        client.Configuration.set_default(cfg)
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def request_totals(self) -> Counter[tuple[str, str]]:
        resp = self.api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
                                 _return_http_data_only=True)
        return request_totals(resp.data.decode())

    def namespace(self, name: str, own: Own) -> None:
        from kubernetes.client import ApiException

        self.core.create_namespace({"metadata": {"name": name, "labels": {"supercheck.io/benchmark": "scale"}}})
        own.add("POST", "namespaces")
        for _ in range(100):  # pods need the default ServiceAccount, which a controller adds
            try:
                self.core.read_namespaced_service_account("default", name)
                own.add("GET", "serviceaccounts")
                return
            except ApiException:
                own.add("GET", "serviceaccounts")
                time.sleep(0.1)
        raise TimeoutError(f"no default ServiceAccount in {name}")

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.core.delete_namespace(name)


def create_all(make: Callable[[int], None], n: int, threads: int) -> tuple[float, float]:
    """Calls ``make(i)`` for i < n on a thread pool; (when the first began, when the last returned)."""
    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(make, range(n)))
    return started, time.time()


# ---------------------------------------------------------------- Supercheck


def restart_operator(config_env: dict[str, str]):
    """The environment's operator with this configuration (as tests/conftest.py's OperatorCtl does);
    its psutil.Process."""
    from bench_kit import operator_process

    from supercheck_localenv import cli
    from supercheck_localenv.layout import default_layout

    cli.start_operator(default_layout(), cli.operator_config(config_env), force=True)
    return operator_process()


def bench_supercheck(cluster: Cluster, namespace: str, runs: int, capacity: int, threads: int,
                     idle_seconds: float) -> tuple[Result, SupercheckExtras]:
    import redis
    from bench_kit import PeakRss

    own = Own()
    proc = restart_operator({"RUNNING_CAPACITY": str(capacity), "QUEUED_CAPACITY": str(max(1000, runs))})
    rdb = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"))
    cluster.namespace(namespace, own)
    pods = PodWatch(cluster.core, namespace, "supercheck.io/testrun", own)
    trs = ObjectWatch(lambda ns, **kw: cluster.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw),
                      namespace, run_terminal, own, PLURAL)
    ledger_max = [0]
    stop_ledger = threading.Event()

    def sample_ledger() -> None:
        while not stop_ledger.is_set():
            with contextlib.suppress(Exception):
                ledger_max[0] = max(ledger_max[0], int(rdb.get("supercheck:capacity:running") or 0))
            stop_ledger.wait(0.1)

    threading.Thread(target=sample_ledger, daemon=True).start()
    created: dict[str, float] = {}
    names = [f"scale-{i:05d}" for i in range(runs)]

    def make(i: int) -> None:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TestRun", "metadata": {"name": names[i]},
            "spec": {"type": "k6", "script": {"inline": SCRIPT}}})
        created[names[i]] = time.time()

    before = cluster.request_totals()
    own.reset()
    machine0 = cpu_snapshot()
    cpu0 = sum(proc.cpu_times()[:2])
    peak = PeakRss(proc, interval=0.5)
    first, last_created = create_all(make, runs, threads)
    own.add("POST", PLURAL, runs)
    # The operator has seen them (every run past the running ones is queued) and given the burst's
    # freed memory back (SUPERCHECK_MALLOC_TRIM_SECONDS, 10): the RSS a queue of this size holds.
    time.sleep(QUEUED_RSS_AFTER_SECONDS)
    rss_queued = proc.memory_info().rss
    # The burst's watch events and first status writes take the operator ~30 s to work through;
    # after them the queue is still long (capacity x run time drains ~100 runs in 45 s here).
    time.sleep(max(0.0, last_created + SETTLED_RSS_AFTER_SECONDS - time.time()))
    rss_settled, queued_at_settled = proc.memory_info().rss, ledger_counts(rdb)[1]
    trs.wait_done(runs, timeout=120 + 10 * runs / capacity, what="TestRuns terminal")
    end = max(trs.done_at.values())
    cpu_busy = sum(proc.cpu_times()[:2]) - cpu0
    machine = cpu_profile(machine0, cpu_snapshot())
    rss_peak = peak.stop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ledger_counts(rdb) != (0, 0):
        time.sleep(0.25)
    stop_ledger.set()
    ledger_end = ledger_counts(rdb)
    pg_rows = final_rows(namespace)
    time.sleep(2)  # the last runs' clean-up (pods, ConfigMaps) lands in the after-count
    after = cluster.request_totals()
    cpu1 = sum(proc.cpu_times()[:2])
    time.sleep(idle_seconds)
    idle_cpu = sum(proc.cpu_times()[:2]) - cpu1
    pods.stop()
    trs.stop()

    snap = pods.snapshot()
    finished = [t.terminal for t in snap.values() if t.terminal is not None]
    dispatch = dispatch_latencies(((created[t.owner], t.added) for t in snap.values() if t.owner in created),
                                  finished, capacity)
    statuses = {n: (o.get("status") or {}) for n, o in trs.objects.items()}
    slot_held = [parse_time(statuses[t.owner]["completedAt"]) - t.added for t in snap.values()
                 if statuses.get(t.owner, {}).get("completedAt")]
    split = requests_made(before, after, own.counts)
    result = Result(
        "Supercheck", runs, capacity, makespan=end - first, run_seconds=pods.run_seconds(), dispatch=dispatch,
        refill=refill_latencies(finished, [t.added for t in snap.values()], capacity),
        waited=[t.added - created[t.owner] for t in snap.values() if t.owner in created],
        api_requests=sum(split.values()), api_split=split,
        not_passed=sum(1 for s in statuses.values() if s.get("phase") != "Passed"),
        create_seconds=last_created - first, cpu=machine, max_pods=pods.max_non_terminal())
    extras = SupercheckExtras(
        slot_held=slot_held, rss_queued_mb=rss_queued / 2**20, rss_peak_mb=rss_peak / 2**20,
        rss_settled_mb=rss_settled / 2**20, queued_at_settled=queued_at_settled, cpu_seconds=cpu_busy,
        idle_cpu_pct=idle_cpu / idle_seconds * 100 if idle_seconds else float("nan"), idle_seconds=idle_seconds,
        max_pods=pods.max_non_terminal(), max_ledger_running=ledger_max[0], ledger_end=ledger_end, pg_rows=pg_rows)
    return result, extras


def ledger_counts(rdb) -> tuple[int, int]:
    running, queued = rdb.mget("supercheck:capacity:running", "supercheck:capacity:queued")
    return int(running or 0), int(queued or 0)


def final_rows(namespace: str) -> int:
    import psycopg

    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:15432/supercheck")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(DISTINCT name) FROM runs WHERE namespace = %s AND final",
                           (namespace,)).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------- the peers: the same k6 run in plain pods


def k6_path() -> str:
    beside = REPO / ".venv" / "bin" / "k6"  # the node agent's "image" is this machine
    return str(beside) if beside.exists() else (shutil.which("k6") or "k6")


def workload_pod_spec() -> dict:
    """A pod that runs `k6 run` of the script from a ConfigMap, with the runner pod's user, security
    context and resources (built by the operator's own podspec), and nothing else of a run."""
    from supercheck import podspec
    from supercheck.config import Settings
    from supercheck.models import TestRunSpec

    settings = Settings()
    spec = TestRunSpec.model_validate({"type": "k6", "script": {"inline": SCRIPT}})
    template = podspec.runner_pod(podspec.RunRef("x", "x", "x", {}), spec, 1, settings,
                                  podspec.resolve_resources(spec, settings))
    runner = template["spec"]["containers"][0]
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": template["spec"]["securityContext"],
        "containers": [{
            "name": "k6",
            "image": runner["image"],
            "imagePullPolicy": runner["imagePullPolicy"],
            "command": [k6_path(), "run", "--quiet", "--no-usage-report", "/scripts/bench.js"],
            "workingDir": "/tmp",
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "K6_NO_USAGE_REPORT", "value": "true"}],
            "resources": runner["resources"],
            "securityContext": runner["securityContext"],
            "volumeMounts": [{"name": "script", "mountPath": "/scripts", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "script", "configMap": {"name": "bench-script"}}, {"name": "tmp", "emptyDir": {}}],
    }


def peer_result(system: str, pods: PodWatch, runs: int, capacity: int, first: float, end: float,
                created_at: Callable[[PodTimes], float], split: Counter[tuple[str, str]], failed: int,
                cpu: dict[str, float]) -> Result:
    snap = pods.snapshot()
    finished = [t.terminal for t in snap.values() if t.terminal is not None]
    return Result(
        system, runs, capacity, makespan=end - first, run_seconds=pods.run_seconds(),
        dispatch=dispatch_latencies(((created_at(t), t.added) for t in snap.values()), finished, capacity),
        refill=refill_latencies(finished, [t.added for t in snap.values()], capacity),
        waited=[t.added - created_at(t) for t in snap.values()],
        api_requests=sum(split.values()), api_split=split, not_passed=failed, cpu=cpu,
        max_pods=pods.max_non_terminal())


def bench_indexed_job(cluster: Cluster, namespace: str, runs: int, capacity: int) -> Result:
    own = Own()
    cluster.namespace(namespace, own)
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "bench-script"},
                                                          "data": {"bench.js": SCRIPT}})
    own.add("POST", "configmaps")
    pods = PodWatch(cluster.core, namespace, "batch.kubernetes.io/job-completion-index", own)
    jobs = ObjectWatch(cluster.batch.list_namespaced_job, namespace, job_finished, own, "jobs")
    before = cluster.request_totals()
    own.reset()
    machine0 = cpu_snapshot()
    first = time.time()
    cluster.batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench"},
        "spec": {"completionMode": "Indexed", "completions": runs, "parallelism": capacity,
                 "backoffLimit": runs, "template": {"spec": workload_pod_spec()}}})
    own.add("POST", "jobs")
    jobs.wait_done(1, timeout=120 + 10 * runs / capacity, what="the Indexed Job")
    end = jobs.done_at["bench"]
    machine = cpu_profile(machine0, cpu_snapshot())
    time.sleep(2)
    after = cluster.request_totals()
    pods.stop()
    jobs.stop()
    status = (jobs.objects["bench"].get("status") or {})
    return peer_result("Indexed Job", pods, runs, capacity, first, end, lambda t: first,
                       requests_made(before, after, own.counts), int(status.get("failed") or 0), machine)


# ---------------------------------------------------------------- Kueue (optional)


class KueueNotRun(Exception):
    """Why Kueue could not be benchmarked (printed as the Kueue row)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True)


# Kueue's manager reads its metrics server's certificate from this fixed path (what its Deployment
# mounts from a Secret) whenever its internal certificate management is off.
KUEUE_METRICS_CERTS = Path("/etc/kueue/metrics/certs")
# Of the webhooks Kueue's module ships, those of the integration benchmarked (batch/v1 Jobs) and of
# Kueue's own objects; the others (pods, Deployments, Ray, Kubeflow...) would hold up every pod of the
# cluster without a framework to serve.
KUEUE_WEBHOOK_GROUPS = {"batch", KUEUE_GROUP}


def kueue_webhooks(manifests: str, url: str, ca_pem: bytes) -> list[dict]:
    """Kueue's webhook configurations (its module's manifests.yaml, service references as kustomize
    would fill them in) pointed at ``url`` (the manager's webhook server) with ``ca_pem`` trusted,
    only the webhooks whose rules all name groups in KUEUE_WEBHOOK_GROUPS."""
    import base64

    import yaml

    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc:
            continue
        hooks = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups or not groups <= KUEUE_WEBHOOK_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hooks.append({**hook, "clientConfig": {"url": url.rstrip("/") + path,
                                                   "caBundle": base64.b64encode(ca_pem).decode()}})
        if hooks:
            out.append({**doc, "metadata": {"name": "kueue-" + doc["metadata"]["name"]}, "webhooks": hooks})
    return out


@contextlib.contextmanager
def kueue_manager(work: Path, cluster: Cluster) -> Iterator[int]:
    """Kueue's manager as a local process against the environment's API server: its CRDs applied,
    batch/job integration, its webhooks registered with the API server by URL (its serving
    certificate names 127.0.0.1, the only address both share here; a cluster reaches it through a
    Service), visibility server off. Its metrics certificate goes where its image expects it
    (KUEUE_METRICS_CERTS, removed again when this script made it). Yields the manager's pid."""
    from kubernetes.client import AdmissionregistrationV1Api

    built = subprocess.run([str(REPO / "hack" / "build-kueue.sh"), "--cached"], capture_output=True, text=True)
    if built.returncode != 0:
        raise KueueNotRun("not built (hack/build-kueue.sh builds it from the Go module proxy)")
    binary = Path(built.stdout.strip().splitlines()[-1])
    res = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(binary.parent / "crds"))
    if res.returncode != 0:
        raise KueueNotRun(f"its CRDs were not applied: {res.stderr.strip()[-300:]}")
    res = kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(binary.parent / "crds"))
    if res.returncode != 0:
        raise KueueNotRun(f"its CRDs were not established: {res.stderr.strip()[-300:]}")
    kubectl("create", "namespace", "kueue-system")
    certs = work / "certs"
    certs.mkdir(parents=True)
    res = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                          "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise KueueNotRun(f"no serving certificate for its webhook server: {res.stderr.strip()[-300:]}")
    # The outermost folder this script makes, removed again at the end (a folder there before is kept).
    made = next((p for p in reversed(KUEUE_METRICS_CERTS.parents) if not p.exists()), None)
    if made is None and not KUEUE_METRICS_CERTS.exists():
        made = KUEUE_METRICS_CERTS
    try:
        KUEUE_METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(certs / name, KUEUE_METRICS_CERTS / name)
    except OSError as exc:
        raise KueueNotRun(f"its metrics certificate cannot go to {KUEUE_METRICS_CERTS}: {exc}") from exc
    health, webhook_port = free_port(), free_port()
    conf = work / "config.yaml"
    conf.write_text(json.dumps({
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration", "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": ["batch/job"]},
    }))
    admission = AdmissionregistrationV1Api(cluster.api)
    registered: list[tuple[str, str]] = []
    log = (work / "kueue.log").open("wb")
    proc = subprocess.Popen([str(binary), f"--config={conf}", "--feature-gates=VisibilityOnDemand=false",
                             f"--visibility-server-port={free_port()}"],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                tail = (work / "kueue.log").read_text(errors="replace")[-600:]
                raise KueueNotRun(f"the manager exited ({proc.returncode}): {tail}")
            with contextlib.suppress(OSError):
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise KueueNotRun("the manager was not ready after 90 s (see its log)")
            time.sleep(0.5)
        manifests = (binary.parent / "webhooks.yaml").read_text()
        ca = (certs / "tls.crt").read_bytes()
        for conf_obj in kueue_webhooks(manifests, f"https://127.0.0.1:{webhook_port}", ca):
            kind = conf_obj["kind"]
            conf_obj["apiVersion"] = "admissionregistration.k8s.io/v1"
            if kind == "MutatingWebhookConfiguration":
                admission.create_mutating_webhook_configuration(conf_obj)
            else:
                admission.create_validating_webhook_configuration(conf_obj)
            registered.append((kind, conf_obj["metadata"]["name"]))
        yield proc.pid
    finally:
        for kind, name in registered:
            with contextlib.suppress(Exception):
                if kind == "MutatingWebhookConfiguration":
                    admission.delete_mutating_webhook_configuration(name)
                else:
                    admission.delete_validating_webhook_configuration(name)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def bench_kueue(cluster: Cluster, namespace: str, runs: int, capacity: int, threads: int) -> Result:
    own = Own()
    with tempfile.TemporaryDirectory() as tmp, kueue_manager(Path(tmp), cluster) as manager:
        cluster.namespace(namespace, own)
        cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "bench-script"},
                                                              "data": {"bench.js": SCRIPT}})
        own.add("POST", "configmaps")
        flavor, queue = f"{namespace}-flavor", f"{namespace}-cq"
        c = cluster.custom
        c.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "resourceflavors", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "ResourceFlavor", "metadata": {"name": flavor}})
        c.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "ClusterQueue", "metadata": {"name": queue},
            # Kueue admits a Workload only if the queue covers every resource its pods request: those
            # without a limit that matters, pods at the capacity.
            "spec": {"namespaceSelector": {}, "resourceGroups": [{
                "coveredResources": ["cpu", "memory", "ephemeral-storage", "pods"], "flavors": [{
                    "name": flavor, "resources": [
                        {"name": "cpu", "nominalQuota": "10000"}, {"name": "memory", "nominalQuota": "10000Gi"},
                        {"name": "ephemeral-storage", "nominalQuota": "100000Gi"},
                        {"name": "pods", "nominalQuota": capacity}]}]}]}})
        c.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, "localqueues", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "LocalQueue", "metadata": {"name": "bench"},
            "spec": {"clusterQueue": queue}})
        own.add("POST", "resourceflavors")
        own.add("POST", "clusterqueues")
        own.add("POST", "localqueues")
        try:
            pods = PodWatch(cluster.core, namespace, "job-name", own)
            jobs = ObjectWatch(cluster.batch.list_namespaced_job, namespace, job_finished, own, "jobs")
            created: dict[str, float] = {}
            template = workload_pod_spec()

            def job(name: str) -> dict:
                # Not suspended: Kueue's Job webhook suspends a queued Job, as a user would rely on.
                return {"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": "bench"}},
                        "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 0,
                                 "template": {"spec": template}}}

            probe = cluster.batch.create_namespaced_job(namespace, job("probe"), dry_run="All")
            if not probe.spec.suspend:
                raise KueueNotRun("its Job webhook did not suspend a queued Job (dry run)")

            def make(i: int) -> None:
                name = f"bench-{i:05d}"
                cluster.batch.create_namespaced_job(namespace, job(name))
                created[name] = time.time()

            before = cluster.request_totals()
            own.reset()
            machine0 = cpu_snapshot({"kueue-manager": manager})
            first, _ = create_all(make, runs, threads)
            own.add("POST", "jobs", runs)
            try:
                jobs.wait_done(runs, timeout=120 + 10 * runs / capacity, what="Kueue's Jobs")
            except TimeoutError as exc:
                raise KueueNotRun(f"its Jobs did not finish: {exc}") from exc
            end = max(jobs.done_at.values())
            machine = cpu_profile(machine0, cpu_snapshot({"kueue-manager": manager}))
            time.sleep(2)
            after = cluster.request_totals()
            pods.stop()
            jobs.stop()
            failed = sum(1 for o in jobs.objects.values() if (o.get("status") or {}).get("failed"))
            return peer_result("Kueue", pods, runs, capacity, first, end, lambda t: created.get(t.owner, first),
                               requests_made(before, after, own.counts), failed, machine)
        finally:
            for plural, name in (("clusterqueues", queue), ("resourceflavors", flavor)):
                with contextlib.suppress(Exception):
                    c.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, name)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=6)
    parser.add_argument("--threads", type=int, default=16, help="API creates in flight at once")
    parser.add_argument("--idle-seconds", type=float, default=10, help="how long the operator's idle CPU is sampled")
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--skip-kueue", action="store_true")
    parser.add_argument("--namespace", default="bench-scale", help="prefix of the namespaces it creates")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    cluster = Cluster(args.threads)
    suffix = uuid.uuid4().hex[:5]
    namespaces = []
    results: list[Result] = []
    skipped: dict[str, str] = {}
    extras = None
    try:
        ns = f"{args.namespace}-sc-{suffix}"
        namespaces.append(ns)
        print(f"Supercheck: {args.runs} TestRuns, capacity {args.capacity} ...", flush=True)
        sc, extras = bench_supercheck(cluster, ns, args.runs, args.capacity, args.threads, args.idle_seconds)
        results.append(sc)
        if args.skip_job:
            skipped["Indexed Job"] = "--skip-job"
        else:
            ns = f"{args.namespace}-job-{suffix}"
            namespaces.append(ns)
            print(f"Indexed Job: {args.runs} completions, parallelism {args.capacity} ...", flush=True)
            results.append(bench_indexed_job(cluster, ns, args.runs, args.capacity))
        if args.skip_kueue:
            skipped["Kueue"] = "--skip-kueue"
        else:
            ns = f"{args.namespace}-kueue-{suffix}"
            namespaces.append(ns)
            print(f"Kueue: {args.runs} Jobs, a ClusterQueue of {args.capacity} pods ...", flush=True)
            try:
                results.append(bench_kueue(cluster, ns, args.runs, args.capacity, args.threads))
            except KueueNotRun as exc:
                skipped["Kueue"] = str(exc)
                print(f"Kueue: not run: {exc}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            restart_operator({})  # the environment as make dev-up left it: default configuration
        for ns in namespaces:
            cluster.delete_namespace(ns)
    print(f"\n{args.runs} k6 runs (one iteration each), capacity {args.capacity}; client clock")
    print(format_table(results, skipped))
    if extras is not None:
        print(format_extras(results[0], extras))
    for r in results:
        print(format_details(r))
    if any(r.cpu for r in results):
        print(format_cpu(results))
    line = ratio_line(results)
    if line:
        print(line)
    if args.json:
        print(json.dumps([{**{k: v for k, v in vars(r).items() if k != "api_split"}, "ideal": r.ideal,
                           "throughput": r.throughput} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
