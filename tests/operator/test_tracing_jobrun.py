"""One trace per JobRun (docs/tracing.md): its admission, queue wait, each shard attempt's dispatch and
pod, the merge pod, the root; the status fields, the pods' TRACEPARENT and the ``jobs`` row, through
the JobRun engine on in-memory ports and the SDK's in-memory exporter."""

from __future__ import annotations

import pytest
from engine_kit import result, run, world
from opentelemetry.trace import StatusCode
from test_engine_jobrun import ended, job_spec, settle, shard_done, started, status, suite_cm
from test_tracing import OTLP, hex_ids, memory_tracer, pod_env

from supercheck import tracing
from supercheck.engine import jobrun
from supercheck.engine.testrun import StillStopping
from supercheck.tracing import RunTrace
from supercheck_contract import TRACEPARENT_ENV, ArtifactLocation, ExitCode, FailureClass, TestSummary


def traced_world(**overrides):
    w = world(**overrides)
    w.eng.tracer, exporter = memory_tracer()
    return w, exporter


def trace_of(w, name: str = "j") -> RunTrace:
    return RunTrace.for_run(w.kube.jobrun(name)["metadata"]["uid"])


def spans_of(exporter, trace: RunTrace):
    return [s for s in exporter.get_finished_spans() if hex_ids(s)[0] == trace.trace_id]


def k6_suite(w) -> None:
    w.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k6suite", "namespace": "ns"},
                "data": {"a.test.js": "x", "b.test.js": "y"}})


def k6_job(**extra):
    return job_spec(type="k6", testsFrom={"configMapRef": {"name": "k6suite"}}, **extra)


def test_the_keys_of_a_jobs_attempts_name_their_shard():
    assert tracing.attempt_key(2) == "attempt 2"  # a TestRun's, as before
    assert tracing.attempt_key(2, "1") == "shard 1 attempt 2"
    assert tracing.attempt_key(1, "merge") == "merge attempt 1"
    assert tracing.dispatch_key(1, "2") == "shard 2 dispatch 1" != tracing.dispatch_key(1, "1")
    trace = RunTrace.for_run("u")
    env = tracing.runner_env(OTLP, trace, 1, "2")
    assert env[TRACEPARENT_ENV] == trace.traceparent_of("shard 2 attempt 1")


def test_a_job_is_one_trace_its_shards_and_merge_under_its_root_and_their_pods_join_it():
    async def go():
        w, exporter = traced_world(running_capacity=4, queued_capacity=5, database_url="postgresql://fake")
        await started(w)
        trace = trace_of(w)
        st = status(w)
        assert (st["traceId"], st["traceParent"]) == (trace.trace_id, trace.traceparent)
        for shard in (1, 2):
            env = pod_env(w, f"j-s{shard}-a1")
            assert env[TRACEPARENT_ENV] == trace.traceparent_of(f"shard {shard} attempt 1")
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTLP["OTEL_EXPORTER_OTLP_ENDPOINT"]
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        w.clock.advance(5)
        shard_done(w, "j-s1-a1")
        shard_done(w, "j-s2-a1")
        await settle(w, "j")
        await settle(w, "j")
        assert pod_env(w, "j-merge-a1")[TRACEPARENT_ENV] == trace.traceparent_of("merge attempt 1")
        w.clock.advance(2)
        uid = w.kube.jobrun("j")["metadata"]["uid"]
        w.kube.pod_terminated("j-merge-a1", 0, result(
            FailureClass.NONE, ExitCode.PASSED, "merged", summary=TestSummary(total=5, passed=5),
            artifacts=ArtifactLocation(bucket="playwright-job-artifacts", prefix=f"ns/j/{uid}")), reason="Completed")
        assert await settle(w, "j") is None
        spans = spans_of(exporter, trace)
        assert sorted(s.name for s in spans) == ["admission", "dispatch", "dispatch", "merge attempt 1", "run",
                                                 "shard 1 attempt 1", "shard 2 attempt 1"]
        assert len(exporter.get_finished_spans()) == len(spans)  # nothing outside the job's trace
        by_name = {s.name: s for s in spans}
        for s in spans:
            assert hex_ids(s)[2] == (None if s.name == "run" else trace.root_span_id), s.name
        for name in ("shard 1 attempt 1", "shard 2 attempt 1", "merge attempt 1"):
            assert hex_ids(by_name[name])[1] == trace.span_id(name)  # the span its pod's runner names as parent
            assert by_name[name].status.status_code != StatusCode.ERROR
        assert by_name["shard 2 attempt 1"].attributes["supercheck.shard"] == "2"
        assert by_name["merge attempt 1"].attributes["supercheck.shard"] == "merge"
        dispatched = sorted((s.attributes["supercheck.shard"], s.attributes["k8s.pod.name"], hex_ids(s)[1])
                            for s in spans if s.name == "dispatch")
        assert dispatched == [("1", "j-s1-a1", trace.span_id("shard 1 dispatch 1")),
                              ("2", "j-s2-a1", trace.span_id("shard 2 dispatch 1"))]
        assert by_name["admission"].attributes["supercheck.admission"] == "running"
        root = by_name["run"]
        assert root.attributes["supercheck.kind"] == "JobRun" and root.attributes["supercheck.phase"] == "Passed"
        assert root.end_time - root.start_time == 7 * 10**9  # creation to completedAt
        assert w.store.jobs[uid].trace_id == trace.trace_id
    run(go)


def test_a_queued_job_records_its_wait_and_a_retried_shard_one_span_per_attempt():
    async def go():
        w, exporter = traced_world(running_capacity=1, queued_capacity=2)
        k6_suite(w)
        w.kube.add_jobrun("a", k6_job())
        await settle(w, "a")
        w.kube.add_jobrun("b", k6_job())
        await settle(w, "b")
        assert status(w, "b")["phase"] == "Queued" and status(w, "b")["traceId"] == trace_of(w, "b").trace_id
        w.clock.advance(4)
        shard_done(w, "a-s1-a1")
        assert await settle(w, "a") is None
        await settle(w, "b")
        trace = trace_of(w, "b")
        assert pod_env(w, "b-s1-a1")[TRACEPARENT_ENV] == trace.traceparent_of("shard 1 attempt 1")
        w.kube.pod_running("b-s1-a1")
        w.kube.pod_prints("b-s1-a1", ended("a.test.js"))
        w.kube.pod_terminated("b-s1-a1", 137, reason="OOMKilled")
        delay = await settle(w, "b")
        assert delay and delay > 0
        w.clock.advance(delay)
        await settle(w, "b")
        assert pod_env(w, "b-s1-a2")[TRACEPARENT_ENV] == trace.traceparent_of("shard 1 attempt 2")
        spans = spans_of(exporter, trace)
        assert sorted(s.name for s in spans) == ["admission", "dispatch", "dispatch", "queue wait",
                                                 "shard 1 attempt 1"]
        by_name = {s.name: s for s in spans}
        assert by_name["admission"].attributes["supercheck.admission"] == "queued"
        assert by_name["queue wait"].end_time - by_name["queue wait"].start_time == 4 * 10**9
        oom = by_name["shard 1 attempt 1"]
        assert oom.status.status_code == StatusCode.ERROR and oom.attributes["supercheck.failure_class"] == "oom"
        assert {hex_ids(s)[1] for s in spans if s.name == "dispatch"} == {
            trace.span_id("shard 1 dispatch 1"), trace.span_id("shard 1 dispatch 2")}
    run(go)


def test_a_timed_out_job_ends_its_running_shards_attempts_as_errors():
    async def go():
        w, exporter = traced_world(running_capacity=4, queued_capacity=5)
        await started(w, spec=job_spec(timeoutSeconds=60))
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        w.clock.advance(61)
        await settle(w, "j")
        assert await settle(w, "j") is None
        spans = {s.name: s for s in spans_of(exporter, trace_of(w))}
        for name in ("shard 1 attempt 1", "shard 2 attempt 1"):
            assert spans[name].status.status_code == StatusCode.ERROR, name
            assert spans[name].attributes["supercheck.failure_class"] == "timeout"
        assert spans["run"].attributes["supercheck.phase"] == "TimedOut"
        assert spans["run"].status.status_code == StatusCode.ERROR
    run(go)


def test_a_rejected_job_and_a_refused_one_have_their_trace_in_the_status():
    async def go():
        w, exporter = traced_world(running_capacity=1, queued_capacity=0)
        k6_suite(w)
        w.kube.add_jobrun("a", k6_job())
        await settle(w, "a")
        w.kube.add_jobrun("b", k6_job())
        await settle(w, "b")
        st = status(w, "b")
        assert st["phase"] == "Rejected" and st["traceId"] == trace_of(w, "b").trace_id
        spans = spans_of(exporter, trace_of(w, "b"))
        assert sorted(s.name for s in spans) == ["admission", "run"]
        assert all(s.status.status_code == StatusCode.ERROR for s in spans)

        w.kube.add_jobrun("c", job_spec(testsFrom={"configMapRef": {"name": "nowhere"}}))
        w.clock.advance(3600)  # past the grace for a reference created after the job
        await settle(w, "c")
        st = status(w, "c")
        assert st["phase"] == "Error" and st["traceId"] == trace_of(w, "c").trace_id
        assert [s.name for s in spans_of(exporter, trace_of(w, "c"))] == ["run"]
    run(go)


def test_deleting_a_job_ends_its_running_shards_attempts_and_its_root():
    async def go():
        w, exporter = traced_world(running_capacity=4, queued_capacity=5)
        await started(w)
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        handle = w.handle("j", "JobRun")
        with pytest.raises(StillStopping):
            await jobrun.cancel(handle)  # the pods are asked to stop first
        await jobrun.cancel(handle)  # the fake deletes pods at once
        spans = {s.name: s for s in spans_of(exporter, trace_of(w))}
        assert spans["run"].attributes["supercheck.phase"] == "Cancelled"
        assert spans["shard 1 attempt 1"].attributes["supercheck.failure_class"] == "stopped"
        assert "shard 2 attempt 1" in spans
    run(go)


def test_tracing_off_leaves_a_jobs_status_and_pods_as_before():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec())
        await settle(w, "j")
        assert "traceId" not in status(w)
        for pod in ("j-s1-a1", "j-s2-a1"):
            assert not [k for k in pod_env(w, pod) if k.startswith("OTEL_") or k == TRACEPARENT_ENV]
    run(go)
