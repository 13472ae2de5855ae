#!/usr/bin/env python3
"""Benchmark the operator's live run streams: its CPU and memory idle, and holding N idle SSE streams.

    source .dev/env && .venv/bin/python hack/bench_sse.py [--streams 500] [--seconds 60] [--stream namespace|run]

Needs the local environment with the operator running (make dev-up). Makes a namespace of its own with a
ServiceAccount allowed to watch its TestRuns and JobRuns (a Role and RoleBinding) and a token for it
(TokenRequest), then measures the operator's process for ``--seconds``:

1. idle, no stream open;
2. with ``--streams`` streams open (one token, all at once: the review cache makes that one TokenReview and
   one SubjectAccessReview per resource), each idle but for the heartbeats.

It prints, for each window, the CPU share (CPU seconds of the process per wall second; 1.0 = one core) and
the RSS (peak of samples every 2 s), and the ratios and the memory per stream. Then it deletes the namespace.
Not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

import aiohttp
import psutil
from bench_kit import PeakRss, operator_process  # hack/: beside this script
from kubernetes import client, config

from supercheck_localenv.layout import default_layout


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def window(proc: psutil.Process, seconds: float) -> dict[str, float]:
    """The operator's CPU share and peak RSS over ``seconds`` (the event loop keeps the streams read)."""
    rss = PeakRss(proc)
    cpu0, t0 = cpu_seconds(proc), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(proc), time.monotonic()
    return {"cpu_share": (cpu1 - cpu0) / (t1 - t0), "rss_mib": rss.stop() / 2**20}


def setup(namespace: str) -> str:
    """The namespace, a ServiceAccount that may watch its runs, and a token for it."""
    core, rbac = client.CoreV1Api(), client.RbacAuthorizationV1Api()
    core.create_namespace({"metadata": {"name": namespace}})
    deadline = time.monotonic() + 30
    while True:  # the namespace's ServiceAccount admission needs the namespace ready
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": "bench"}})
            break
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "bench"}, "rules": [
        {"apiGroups": ["supercheck.io"], "resources": ["testruns", "jobruns"], "verbs": ["watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bench"},
        "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": namespace}]})
    req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    return core.create_namespaced_service_account_token("bench", namespace, req).status.token


class Streams:
    """N open streams, each read to the end in a task of its own (heartbeats are read, and counted)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, n: int) -> None:
        self.session, self.url, self.token, self.n = session, url, token, n
        self.opened = 0
        self.failures: list[str] = []
        self.heartbeats = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.all_open = asyncio.Event()

    async def _one(self) -> None:
        try:
            async with self.session.get(self.url, headers={"Authorization": f"Bearer {self.token}"},
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status != 200:
                    self.failures.append(f"{resp.status} {await resp.text()}")
                    return
                self.opened += 1
                if self.opened == self.n:
                    self.all_open.set()
                async for line in resp.content:
                    if line.startswith(b":"):
                        self.heartbeats += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted and shown
            self.failures.append(repr(exc))
        finally:
            if self.opened + len(self.failures) >= self.n:
                self.all_open.set()

    def open(self) -> None:
        self.tasks = [asyncio.create_task(self._one()) for _ in range(self.n)]

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def bench(args: argparse.Namespace, base: str, namespace: str, token: str) -> dict[str, object]:
    proc = operator_process()
    path = (f"/api/v1/namespaces/{namespace}/events" if args.stream == "namespace"
            else f"/api/v1/namespaces/{namespace}/testruns/idle/events")
    await asyncio.sleep(args.settle)
    idle = await window(proc, args.seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = Streams(session, base + path, token, args.streams)
        t0 = time.monotonic()
        streams.open()
        await asyncio.wait_for(streams.all_open.wait(), 120)
        open_seconds = time.monotonic() - t0
        await asyncio.sleep(args.settle)
        held = await window(proc, args.seconds)
        open_at_end = streams.opened - sum(t.done() for t in streams.tasks)
        await streams.close()
    return {
        "streams": args.streams, "stream": args.stream, "window_seconds": args.seconds,
        "opened": streams.opened, "failures": streams.failures[:5], "failures_total": len(streams.failures),
        "still_open_at_end": open_at_end, "seconds_to_open_all": round(open_seconds, 2),
        "heartbeats_read": streams.heartbeats,
        "idle": {k: round(v, 4) for k, v in idle.items()},
        "with_streams": {k: round(v, 4) for k, v in held.items()},
        "cpu_ratio": round(held["cpu_share"] / idle["cpu_share"], 2) if idle["cpu_share"] else None,
        "rss_ratio": round(held["rss_mib"] / idle["rss_mib"], 3) if idle["rss_mib"] else None,
        "kib_per_stream": round((held["rss_mib"] - idle["rss_mib"]) * 1024 / args.streams, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="each measuring window")
    parser.add_argument("--settle", type=float, default=5.0, help="pause before each window")
    parser.add_argument("--stream", choices=("namespace", "run"), default="namespace")
    args = parser.parse_args()
    base = os.environ.get("SUPERCHECK_API_URL", "http://127.0.0.1:18082")
    config.load_kube_config(os.environ.get("KUBECONFIG", str(default_layout().kubeconfig)))
    namespace = f"bench-sse-{uuid.uuid4().hex[:6]}"
    token = setup(namespace)
    try:
        result = asyncio.run(bench(args, base, namespace, token))
    finally:
        client.CoreV1Api().delete_namespace(namespace)
    print(json.dumps(result, indent=2))
    return 0 if not result["failures_total"] else 1


if __name__ == "__main__":
    sys.exit(main())
