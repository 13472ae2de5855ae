#!/usr/bin/env python3
"""Benchmark the operator's dispatch and slot-refill latency against a direct-pod baseline.

    source .dev/env && .venv/bin/python hack/bench_operator.py [--samples 30]

Needs the local environment with the operator running (make dev-up). Prints p50/p99 of

* dispatch latency: TestRun created -> its runner pod created, with free capacity;
* slot refill latency: a runner pod finished -> the next queued run's pod created;
* the baseline: the same pod created straight through the API,

each measured the same way (client clock; the pod's ADDED event seen on one watch), and the
ratio of each to the baseline. Not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
import uuid

from bench_kit import pct  # hack/: beside this script
from kubernetes import client, config, watch

from supercheck import podspec
from supercheck.config import Settings
from supercheck.models import TestRunSpec

GROUP, VERSION, PLURAL = "supercheck.io", "v1alpha1", "testruns"
QUICK_K6 = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"


class PodWatch:
    """Records when each pod of the namespace was first seen, and when it was first seen finished."""

    def __init__(self, core: client.CoreV1Api, namespace: str):
        self.core, self.namespace = core, namespace
        self.added: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(0.5)

    def _run(self) -> None:
        w = watch.Watch()
        while not self._stop:
            for ev in w.stream(self.core.list_namespaced_pod, self.namespace, timeout_seconds=5):
                now = time.monotonic()
                pod = ev["object"]
                name = pod.metadata.name
                with self.cond:
                    self.added.setdefault(name, now)
                    if pod.status.phase in ("Succeeded", "Failed"):
                        self.finished.setdefault(name, now)
                    self.cond.notify_all()
                if self._stop:
                    break

    def wait(self, predicate, timeout: float = 120):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting for pods")
                self.cond.wait(left)

    def stop(self) -> None:
        self._stop = True


def testrun(name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TestRun", "metadata": {"name": name},
            "spec": {"type": "k6", "script": {"inline": QUICK_K6}}}


def wait_terminal(custom, namespace: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tr = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        if (tr.get("status") or {}).get("phase") in ("Passed", "Failed", "Error", "TimedOut", "Rejected"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not finish")


def running_capacity() -> int:
    url = os.environ.get("SUPERCHECK_METRICS_URL", "http://127.0.0.1:18080/metrics")
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("supercheck_capacity_running_limit "):
            return int(float(line.split()[1]))
    raise RuntimeError("the operator does not report supercheck_capacity_running_limit")


def baseline(core, custom, pods: PodWatch, namespace: str, samples: int) -> list[float]:
    """The same runner pod the operator would build, created directly; it is pinned to no node
    (an unmatched nodeSelector) so it never runs: only the creation is measured."""
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        **testrun("baseline-owner"), "metadata": {"name": "baseline-owner", "annotations": {}}})
    # The owner runs through the operator too; wait for it so it does not disturb the baseline.
    wait_terminal(custom, namespace, "baseline-owner")
    run = podspec.RunRef(namespace, "baseline-owner", owner["metadata"]["uid"], {})
    spec = TestRunSpec.model_validate(owner["spec"])
    settings = Settings()
    out = []
    for i in range(samples):
        pod = podspec.runner_pod(run, spec, 100 + i, settings, podspec.resolve_resources(spec, settings))
        pod["spec"]["nodeSelector"] = {"supercheck.io/benchmark": "never-scheduled"}
        name = pod["metadata"]["name"]
        t0 = time.monotonic()
        core.create_namespaced_pod(namespace, pod)
        pods.wait(lambda name=name: name in pods.added)
        out.append(pods.added[name] - t0)
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    return out


def dispatch(custom, pods: PodWatch, namespace: str, samples: int) -> list[float]:
    out = []
    for i in range(samples):
        name = f"dispatch-{i:03d}"
        t0 = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, testrun(name))
        pod = podspec.pod_name(name, 1)
        pods.wait(lambda pod=pod: pod in pods.added)
        out.append(pods.added[pod] - t0)
        wait_terminal(custom, namespace, name)  # keep capacity free for the next sample
    return out


def refill(custom, pods: PodWatch, namespace: str, samples: int, capacity: int) -> list[float]:
    """Fill every running slot, queue `samples` more; the i-th finished pod frees the slot that
    the (capacity + i)-th pod takes."""
    names = [f"refill-{i:03d}" for i in range(capacity + samples)]
    for name in names:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, testrun(name))
    pod_names = [podspec.pod_name(n, 1) for n in names]
    pods.wait(lambda: all(p in pods.finished for p in pod_names), timeout=60 + 10 * len(names))
    created = sorted(pods.added[p] for p in pod_names)
    finished = sorted(pods.finished[p] for p in pod_names)
    out = []
    for i in range(samples):
        out.append(created[capacity + i] - finished[i])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 8
    client.Configuration.set_default(cfg)
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    capacity = running_capacity()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    for _ in range(100):
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.ApiException:
            time.sleep(0.1)
    pods = PodWatch(core, namespace)
    try:
        base = baseline(core, custom, pods, namespace, args.samples)
        disp = dispatch(custom, pods, namespace, args.samples)
        ref = refill(custom, pods, namespace, args.samples, capacity)
    finally:
        pods.stop()
        core.delete_namespace(namespace)
    if running_capacity() != capacity:
        print("the operator was restarted with another RUNNING_CAPACITY during the run; figures discarded",
              file=sys.stderr)
        return 1

    def row(label: str, values: list[float]) -> dict:
        return {"what": label, "n": len(values), "p50_ms": pct(values, 50) * 1000, "p99_ms": pct(values, 99) * 1000,
                "mean_ms": statistics.fmean(values) * 1000}

    b, d, r = row("baseline: pod created directly", base), row("dispatch: TestRun -> pod", disp), \
        row("refill: pod finished -> next pod", ref)
    print(f"running capacity {capacity}; {args.samples} samples each; client clock, one pod watch")
    print(f"{'':38} {'p50 ms':>9} {'p99 ms':>9} {'x base p50':>11} {'x base p99':>11}")
    for x in (b, d, r):
        print(f"{x['what']:38} {x['p50_ms']:9.1f} {x['p99_ms']:9.1f} "
              f"{x['p50_ms'] / b['p50_ms']:11.1f} {x['p99_ms'] / b['p99_ms']:11.1f}")
    if args.json:
        print(json.dumps([b, d, r]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
