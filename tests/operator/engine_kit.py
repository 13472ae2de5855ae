"""The run engine on in-memory ports: a World of fakes (tests/operator/fakes.py) and the steps
the engine tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fakes import FakeClock, FakeKube, FakeLedger, FakeStore, RecordingEvents
from prometheus_client import CollectorRegistry

from supercheck.config import Settings
from supercheck.engine.context import Engine
from supercheck.engine.run import RunHandle
from supercheck.engine.testrun import step
from supercheck.metrics import Metrics
from supercheck.pods import pod_view
from supercheck_contract import (
    ExitCode,
    FailureClass,
    RunnerResult,
    encode_termination_message,
)

K6 = {"type": "k6", "script": {"inline": "export default function () {}"}}
PLAYWRIGHT = {"type": "playwright", "script": {"inline": "import { test } from '@playwright/test';"}}


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = dict(running_capacity=2, queued_capacity=1, redis_url="redis://fake", database_url=None,
                                aws_access_key_id="AK", aws_secret_access_key="SK", s3_endpoint_url="http://s3",
                                retry_backoff_base_seconds=2.0, retry_backoff_max_seconds=60.0,
                                script_ref_grace_seconds=10.0, service_retry_seconds=2.0, metrics_port=0)
    return Settings(**{**base, **overrides})


@dataclass
class World:
    eng: Engine
    clock: FakeClock
    kube: FakeKube
    ledger: FakeLedger
    store: FakeStore
    events: RecordingEvents
    runs: dict[str, RunHandle] = field(default_factory=dict)

    def handle(self, name: str, kind: str = "TestRun", namespace: str = "ns") -> RunHandle:
        """The run as a Kopf daemon holds it: Kopf's latest view, and the pods index."""
        body = self.kube.jobrun(name, namespace) if kind == "JobRun" else self.kube.testrun(name, namespace)
        run = self.runs.get(name)
        if run is None or run.uid != body["metadata"]["uid"]:
            uid = body["metadata"]["uid"]
            run = self.runs[name] = RunHandle(self.eng, body, lambda: [
                v for v in (pod_view(p) for p in self.kube.pods(namespace)) if v.owner_uid == uid])
        run.live = body  # the watch delivered the newest version
        return run

    async def step(self, name: str, namespace: str = "ns") -> float | None:
        return await step(self.handle(name, namespace=namespace))

    async def settle(self, name: str, limit: int = 10, namespace: str = "ns") -> float | None:
        """Step until the run waits for something outside (an event, time) or is done."""
        delay: float | None = 0.0
        for _ in range(limit):
            delay = await self.step(name, namespace)
            if delay != 0.0:
                return delay
        raise AssertionError(f"{name} did not settle in {limit} steps")

    def status(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return self.kube.testrun(name, namespace).get("status") or {}

    def pod_names(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.kube.pods()]

    def metric(self, name: str, **labels: str) -> float:
        value = self.eng.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def world(**overrides: Any) -> World:
    clock = FakeClock()
    cfg = settings(**overrides)
    kube, store, events = FakeKube(clock), FakeStore(), RecordingEvents()
    ledger = FakeLedger(cfg.running_capacity, cfg.queued_capacity, clock, cfg.fair_share)
    eng = Engine(settings=cfg, kube=kube, ledger=ledger, store=store,
                 metrics=Metrics(cfg, registry=CollectorRegistry()), events=events, clock=clock)
    return World(eng, clock, kube, ledger, store, events)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())


def result(failure: FailureClass, code: ExitCode, message: str = "", **extra: Any) -> str:
    return encode_termination_message(RunnerResult(exitCode=int(code), failureClass=failure, message=message,
                                                   **extra))



async def running(w: World, name: str = "a", spec: dict[str, Any] = K6) -> None:
    w.kube.add_testrun(name, spec)
    await w.settle(name)
    w.kube.pod_running(f"{name}-a1")
    assert await w.settle(name) == 10.0  # the runner's log is read again in SUPERCHECK_PROGRESS_POLL_SECONDS


async def running_without_progress(w: World) -> None:
    w.kube.add_testrun("a", K6)
    await w.settle("a")
    w.kube.pod_running("a-a1")
    assert await w.settle("a") == 60.0


async def fail_attempt(w: World, name: str, attempt: int, how: str) -> float | None:
    pod = f"{name}-a{attempt}"
    w.kube.pod_running(pod)
    await w.settle(name)
    if how == "oom":
        w.kube.pod_terminated(pod, 137, reason="OOMKilled")
    elif how == "browser":
        w.kube.pod_terminated(pod, 13, result(FailureClass.BROWSER_CRASH, ExitCode.BROWSER_CRASH, "chromium died"))
    elif how == "network":
        w.kube.pod_terminated(pod, 15, result(FailureClass.NETWORK, ExitCode.NETWORK, "jslib.k6.io: no such host"))
    elif how == "infra":
        w.kube.pod_terminated(pod, 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 refused"))
    elif how == "lost":
        w.kube.remove_pod(pod)
    return await w.settle(name)
