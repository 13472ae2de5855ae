"""The JobRun engine on in-memory ports: all-or-none admission of its slots, shards and their
retries, live progress from the runners' logs, the merge, the end, cancellation."""

from __future__ import annotations

from typing import Any

from engine_kit import World, result, run, world
from fakes import FakeLedger

from supercheck.engine import jobrun
from supercheck.engine.run import RunHandle
from supercheck_contract import ArtifactLocation, ExitCode, FailureClass, TestEnded, TestOutcome, TestSummary

FILES = ["about.spec.ts", "api.spec.ts", "basket.spec.ts", "home.spec.ts", "stock.spec.ts"]


def suite_cm(w: World, name: str = "suite", files: list[str] = FILES) -> None:
    data = {f: "import { test } from '@playwright/test';" for f in files}
    data["fixtures.ts"] = "export const x = 1;"
    w.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"},
                "data": data})


def job_spec(**extra: Any) -> dict[str, Any]:
    return {"type": "playwright", "testsFrom": {"configMapRef": {"name": "suite"}}, "parallelism": 2,
            "timeoutSeconds": 600, **extra}


def handle(w: World, name: str) -> RunHandle:
    return w.handle(name, "JobRun")


async def settle(w: World, name: str, limit: int = 20) -> float | None:
    for _ in range(limit):
        delay = await jobrun.step(handle(w, name))
        if delay != 0.0:
            return delay
    raise AssertionError(f"{name} did not settle")


def status(w: World, name: str = "j") -> dict[str, Any]:
    return w.kube.jobrun(name).get("status") or {}


def ended(file: str, outcome: TestOutcome = TestOutcome.PASSED) -> str:
    return TestEnded(file=file, outcome=outcome, durationMs=100, cases=1).line()


def shard_done(w: World, pod: str, failure: FailureClass = FailureClass.NONE) -> None:
    code = ExitCode.PASSED if failure == FailureClass.NONE else ExitCode.TEST_FAILED
    w.kube.pod_terminated(pod, int(code), result(failure, code, "shard ended"), reason="Completed")


async def started(w: World, name: str = "j", spec: dict[str, Any] | None = None) -> None:
    suite_cm(w)
    w.kube.add_jobrun(name, spec or job_spec())
    await settle(w, name)


def test_a_job_takes_its_slots_at_once_and_runs_one_pod_per_shard():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        st = status(w)
        assert st["phase"] == "Running" and st["slots"] == 2 and w.ledger.used() == 2
        assert sorted(w.pod_names()) == ["j-s1-a1", "j-s2-a1"]
        assert [sh["tests"] for sh in st["shards"]] == [3, 2]
        assert st["progress"] == {"total": 5, "completed": 0, "passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
        assert st["progressText"] == "0/5"
        # Each pod gets the whole suite and its shard of it.
        env = {e["name"]: e.get("value") for e in w.kube.pods()[0]["spec"]["containers"][0]["env"]}
        assert env["SUPERCHECK_SHARD_INDEX"] == "1" and env["SUPERCHECK_SHARD_COUNT"] == "2"
        assert env["SUPERCHECK_BUCKET"] == "playwright-job-artifacts"
        assert w.kube.pods()[0]["metadata"]["labels"]["supercheck.io/jobrun"] == "j"
    run(go)


def test_a_job_records_videos_only_when_asked():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        suite_cm(w)
        w.kube.add_jobrun("quiet", job_spec(parallelism=1))
        w.kube.add_jobrun("filmed", job_spec(parallelism=1, playwright={"video": "retain-on-failure"}))
        await settle(w, "quiet")
        await settle(w, "filmed")
        video = {p["metadata"]["name"]: {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
                 ["SUPERCHECK_PLAYWRIGHT_VIDEO"] for p in w.kube.pods()}
        assert video == {"quiet-s1-a1": "off", "filmed-s1-a1": "retain-on-failure"}
    run(go)


def test_progress_follows_the_runners_logs_and_the_merged_report_ends_the_job():
    async def go():
        w = world(running_capacity=4, queued_capacity=5, database_url="postgresql://fake")
        await started(w)
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        w.kube.pod_prints("j-s1-a1", "[supercheck] validation passed", ended("about.spec.ts"))
        w.clock.advance(5)
        await settle(w, "j")
        assert status(w)["progressText"] == "1/5"
        w.kube.pod_prints("j-s1-a1", ended("basket.spec.ts", TestOutcome.FAILED), ended("stock.spec.ts"))
        w.kube.pod_prints("j-s2-a1", ended("api.spec.ts"), ended("home.spec.ts", TestOutcome.FLAKY))
        shard_done(w, "j-s1-a1", FailureClass.TEST_FAILURE)
        shard_done(w, "j-s2-a1")
        await settle(w, "j")
        st = status(w)
        assert st["progressText"] == "5/5" and st["merge"]["state"] == "Pending" and st["phase"] == "Uploading"
        await settle(w, "j")
        assert "j-merge-a1" in w.pod_names()
        merge_env = {e["name"]: e.get("value") for e in w.kube._pod("j-merge-a1", "ns")["spec"]["containers"][0]["env"]}
        assert merge_env["SUPERCHECK_MODE"] == "merge" and "TARGET_URL" not in merge_env
        uid = w.kube.jobrun("j")["metadata"]["uid"]
        w.kube.pod_terminated("j-merge-a1", 0, result(
            FailureClass.NONE, ExitCode.PASSED, "merged", summary=TestSummary(total=5, passed=3, failed=1, flaky=1),
            artifacts=ArtifactLocation(bucket="playwright-job-artifacts", prefix=f"ns/j/{uid}",
                                       report=f"ns/j/{uid}/report/index.html")), reason="Completed")
        assert await settle(w, "j") is None
        st = status(w)
        assert st["phase"] == "Failed" and st["reason"] == "TestsFailed"
        assert st["progress"] == {"total": 5, "completed": 5, "passed": 3, "failed": 1, "flaky": 1, "skipped": 0}
        assert st["result"] == "3/5 passed, 1 failed, 1 flaky"
        assert st["artifacts"]["report"].endswith("report/index.html")
        assert st["summary"] == {"total": 5, "passed": 3, "failed": 1, "flaky": 1, "skipped": 0}  # the test cases
        assert "basket.spec.ts" in st["message"]
        assert w.ledger.used() == 0 and st["recorded"] is True
        job, tests = w.store.jobs[uid], w.store.job_tests[uid]
        assert job.phase == "Failed" and job.failed == 1 and len(tests) == 5 and tests["basket.spec.ts"].shard == 1
    run(go)


def test_a_shard_killed_for_memory_is_retried_once_and_reruns_only_its_tests():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        w.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k6suite", "namespace": "ns"},
                    "data": {"a.test.js": "x", "b.test.js": "y", "lib.js": "z"}})
        w.kube.add_jobrun("j2", job_spec(type="k6", testsFrom={"configMapRef": {"name": "k6suite"}}))
        await settle(w, "j2")
        w.kube.pod_running("j2-s1-a1")
        w.kube.pod_prints("j2-s1-a1", ended("a.test.js"))
        w.kube.pod_terminated("j2-s1-a1", 137, reason="OOMKilled")
        delay = await settle(w, "j2")
        st = status(w, "j2")
        assert st["shards"][0]["state"] == "Retrying" and delay == 2.0
        assert [t.get("outcome") for t in st["tests"] if t["shard"] == 1] == [None]  # it runs again
        w.clock.advance(2)
        await settle(w, "j2")
        assert "j2-s1-a2" in w.pod_names()
        for pod in ("j2-s1-a2", "j2-s2-a1"):
            w.kube.pod_prints(pod, ended("a.test.js" if pod.startswith("j2-s1") else "b.test.js"))
            shard_done(w, pod)
        assert await settle(w, "j2") is None
        st = status(w, "j2")
        assert st["phase"] == "Passed" and st["progressText"] == "2/2" and "merge" not in st
        assert st["shards"][0]["attempts"] == 2 and w.ledger.used() == 0
    run(go)


def test_an_invalid_file_ends_the_job_error_and_stops_the_other_shards():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        w.kube.pod_running("j-s2-a1")
        w.kube.pod_terminated("j-s1-a1", int(ExitCode.VALIDATION), result(
            FailureClass.VALIDATION, ExitCode.VALIDATION, "invalid script: basket.spec.ts:3: unknown module 'fs'"))
        await settle(w, "j")
        assert "j-s2-a1" not in w.pod_names()  # stopped
        assert await settle(w, "j") is None
        st = status(w)
        assert st["phase"] == "Error" and st["reason"] == "InvalidScript" and "basket.spec.ts:3" in st["message"]
        assert w.ledger.used() == 0
    run(go)


def test_the_job_timeout_keeps_the_ended_tests_and_lists_the_rest_as_not_run():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w, spec=job_spec(timeoutSeconds=60))
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        w.kube.pod_prints("j-s1-a1", ended("about.spec.ts"))
        await settle(w, "j")
        w.clock.advance(61)
        await settle(w, "j")
        assert w.pod_names() == []
        assert await settle(w, "j") is None
        st = status(w)
        assert st["phase"] == "TimedOut" and st["progress"]["passed"] == 1 and st["progress"]["completed"] == 1
        assert sum(1 for t in st["tests"] if t["outcome"] == "notRun") == 4
        assert w.ledger.used() == 0
    run(go)


def test_deleting_a_job_stops_its_shards_and_releases_its_slots():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        h = handle(w, "j")
        from supercheck.engine.testrun import StillStopping
        try:
            await jobrun.cancel(h)
            raise AssertionError("the pods were still there")
        except StillStopping:
            pass
        await jobrun.cancel(h)  # the fake deletes pods at once
        st = status(w)
        assert st["phase"] == "Cancelled" and w.ledger.used() == 0 and w.pod_names() == []
    run(go)


def test_a_job_waits_for_all_its_slots_and_nothing_overtakes_it():
    async def go():
        w = world(running_capacity=2, queued_capacity=5)
        w.kube.add_testrun("t1", {"type": "k6", "script": {"inline": "export default function () {}"}})
        await w.settle("t1")
        await started(w)
        assert status(w)["phase"] == "Queued" and status(w)["slots"] == 2
        w.kube.add_testrun("t2", {"type": "k6", "script": {"inline": "export default function () {}"}})
        await w.settle("t2")
        assert w.status("t2")["phase"] == "Queued"  # a free slot, but the job is ahead
        w.kube.pod_terminated("t1-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("t1")
        await settle(w, "j")
        assert status(w)["phase"] == "Running" and w.ledger.used() == 2
        assert isinstance(w.ledger, FakeLedger)
    run(go)


def test_a_suite_without_test_files_is_refused_naming_what_it_has():
    async def go():
        w = world()
        suite_cm(w, files=[])
        w.kube.add_jobrun("j", job_spec())
        w.clock.advance(11)
        assert await settle(w, "j") is None
        st = status(w)
        assert st["phase"] == "Error" and st["reason"] == "KeyNotFound" and "fixtures.ts" in st["message"]
    run(go)


def test_the_job_shows_uploading_while_every_shard_at_work_stores_its_files():
    async def go():
        from supercheck_contract import UPLOADING, Progress
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        line = Progress(phase=UPLOADING, reason="Uploading", message="uploading 12 files").line()
        w.kube.pod_prints("j-s1-a1", line)
        w.clock.advance(5)
        await settle(w, "j")
        st = status(w)
        assert st["phase"] == "Running" and [sh["state"] for sh in st["shards"]] == ["Uploading", "Running"]
        w.kube.pod_prints("j-s2-a1", line)
        w.clock.advance(5)
        await settle(w, "j")
        st = status(w)
        assert st["phase"] == "Uploading" and "uploading 12 files" in st["message"]
    run(go)


def test_a_job_waits_for_redis_and_says_so_then_starts():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec())
        w.ledger.down = True
        assert await settle(w, "j") == 2.0
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Pending", "LedgerUnavailable") and "Redis" in st["message"]
        assert w.pod_names() == [] and "LedgerUnavailable" in w.events.reasons()
        w.ledger.down = False
        await settle(w, "j")
        assert status(w)["phase"] == "Running" and w.ledger.used() == 2
    run(go)
