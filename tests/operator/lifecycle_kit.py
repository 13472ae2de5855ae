"""TestRuns and JobRuns in each phase, as the operator's own engine writes them (on the in-memory
ports of engine_kit): the objects the kstatus and Argo CD health tests judge. Nothing here is
written by hand: every status is the engine's."""

from __future__ import annotations

import asyncio
from typing import Any

from engine_kit import K6, World, result, world

from supercheck.engine import jobrun
from supercheck_contract import ExitCode, FailureClass, TestEnded, TestOutcome

GENERATION = 3  # as if the spec had been edited twice before the operator saw it
K6_REF = {"type": "k6", "script": {"configMapRef": {"name": "scripts", "key": "smoke.js"}}}
K6_SUITE = {"type": "k6", "testsFrom": {"configMapRef": {"name": "k6suite"}}, "parallelism": 1,
            "timeoutSeconds": 600}


def _generation(w: World, kind: str, name: str) -> None:
    w.kube.objects[(kind, "ns", name)]["metadata"]["generation"] = GENERATION


async def _testruns() -> dict[str, dict[str, Any]]:
    w = world(running_capacity=1, queued_capacity=1)
    for name, spec in (("pending", K6_REF), ("running", K6), ("queued", K6), ("rejected", K6)):
        w.kube.add_testrun(name, spec)
        _generation(w, "TestRun", name)
        await w.settle(name)
    w.kube.pod_running("running-a1")
    await w.settle("running")
    out = {"Pending": w.kube.testrun("pending"), "Queued": w.kube.testrun("queued"),
           "Running": w.kube.testrun("running"), "Rejected": w.kube.testrun("rejected")}
    w.kube.pod_terminated("running-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
    await w.settle("running")
    out["Passed"] = w.kube.testrun("running")
    await w.settle("queued")  # promoted to the slot "running" released
    w.kube.pod_running("queued-a1")
    await w.settle("queued")
    w.kube.pod_terminated("queued-a1", int(ExitCode.TEST_FAILED),
                          result(FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "1 of 2 checks failed"))
    await w.settle("queued")
    out["Failed"] = w.kube.testrun("queued")
    w.clock.advance(11)  # the missing ConfigMap's grace runs out
    await w.settle("pending")
    out["Error"] = w.kube.testrun("pending")
    return out


async def _jobruns() -> dict[str, dict[str, Any]]:
    w = world(running_capacity=1, queued_capacity=1)

    async def settle(name: str) -> None:
        for _ in range(20):
            if await jobrun.step(w.handle(name, "JobRun")) != 0.0:
                return
        raise AssertionError(f"{name} did not settle")

    w.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k6suite", "namespace": "ns"},
                "data": {"a.test.js": "x"}})
    missing = {**K6_SUITE, "testsFrom": {"configMapRef": {"name": "absent"}}}
    for name, spec in (("pending", missing), ("running", K6_SUITE), ("queued", K6_SUITE), ("rejected", K6_SUITE)):
        w.kube.add_jobrun(name, spec)
        _generation(w, "JobRun", name)
        await settle(name)
    w.kube.pod_running("running-s1-a1")
    await settle("running")
    w.kube.pod_prints("running-s1-a1", TestEnded(file="a.test.js", outcome=TestOutcome.PASSED, durationMs=100,
                                                 cases=1).line())
    out = {"Pending": w.kube.jobrun("pending"), "Queued": w.kube.jobrun("queued"),
           "Running": w.kube.jobrun("running"), "Rejected": w.kube.jobrun("rejected")}
    w.kube.pod_terminated("running-s1-a1", 0, result(FailureClass.NONE, ExitCode.PASSED, "shard ended"),
                          reason="Completed")
    await settle("running")
    out["Passed"] = w.kube.jobrun("running")
    await settle("queued")
    w.kube.pod_running("queued-s1-a1")
    await settle("queued")
    w.kube.pod_prints("queued-s1-a1", TestEnded(file="a.test.js", outcome=TestOutcome.FAILED, durationMs=100,
                                                cases=1).line())
    w.kube.pod_terminated("queued-s1-a1", int(ExitCode.TEST_FAILED),
                          result(FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "shard ended"), reason="Completed")
    await settle("queued")
    out["Failed"] = w.kube.jobrun("queued")
    w.clock.advance(11)
    await settle("pending")
    out["Error"] = w.kube.jobrun("pending")
    return out


def lifecycle_testruns() -> dict[str, dict[str, Any]]:
    """Phase -> the whole TestRun object (metadata, spec, status) in that phase."""
    return asyncio.run(_testruns())


def lifecycle_jobruns() -> dict[str, dict[str, Any]]:
    """Phase -> the whole JobRun object in that phase."""
    return asyncio.run(_jobruns())
