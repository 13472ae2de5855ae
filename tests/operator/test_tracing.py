"""One trace per run (supercheck.tracing, supercheck.engine.traces): ids and traceparent, the choice of
exporter, the spans of a run as the engine records them (the SDK's in-memory exporter), the status
fields, the runner pod's environment and the ``runs`` row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from engine_kit import K6, result, run, running, world
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from supercheck import tracing
from supercheck.tracing import RunTrace, format_traceparent, parse_traceparent
from supercheck_contract import TRACEPARENT_ENV, ExitCode, FailureClass
from supercheck_contract.reserved import reserved_env

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14318"}


# ---------------------------------------------------------------- ids and traceparent

def test_traceparent_is_w3c_and_round_trips():
    tp = format_traceparent("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert tp == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(tp) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert format_traceparent("0" * 31 + "1", "0" * 15 + "1", sampled=False).endswith("-00")


@pytest.mark.parametrize("bad", [None, "", "junk", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                 "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-"
                                 + "0" * 16 + "-01", "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01"])
def test_traceparent_refuses_what_is_not_one(bad):
    assert parse_traceparent(bad) is None


def test_a_runs_trace_is_fixed_by_its_uid_and_kept_from_its_status():
    a = RunTrace.for_run("uid-1")
    assert a == RunTrace.for_run("uid-1") != RunTrace.for_run("uid-2")  # any operator process derives the same
    assert len(a.trace_id) == 32 and len(a.root_span_id) == 16
    assert a.span_id("attempt 1") == RunTrace.for_run("uid-1").span_id("attempt 1") != a.span_id("attempt 2")
    assert a.status_fields() == {"traceId": a.trace_id, "traceParent": a.traceparent}
    stored = format_traceparent("1" * 32, "2" * 16)
    assert RunTrace.for_run("uid-1", stored) == RunTrace("1" * 32, "2" * 16)  # the status wins
    assert RunTrace.for_run("uid-1", "garbage") == a


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("environ,choice", [
    ({}, None),
    (OTLP, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "otlp"),
    ({**OTLP, "OTEL_TRACES_EXPORTER": "none"}, None),
    ({**OTLP, "OTEL_SDK_DISABLED": "true"}, None),
    ({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None),  # only the HTTP exporter is installed
    ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, None),  # no endpoint: off rather than a guess at localhost
])
def test_the_standard_variables_choose_the_exporter(environ, choice):
    assert tracing.exporter_choice(environ)[0] == choice
    assert tracing.from_env(environ).enabled == (choice is not None)


def test_runner_env_passes_traceparent_and_the_otlp_settings_but_no_headers():
    trace = RunTrace.for_run("u")
    environ = {**OTLP, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer secret", "OTEL_SERVICE_NAME": "op"}
    env = tracing.runner_env(environ, trace, 2)
    assert env == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14318", "OTEL_SERVICE_NAME": "supercheck-runner",
                   TRACEPARENT_ENV: format_traceparent(trace.trace_id, trace.span_id("attempt 2"))}
    moved = tracing.runner_env({**environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://op-only/v1/traces",
                                tracing.RUNNER_ENDPOINT_ENV: "http://collector.monitoring:4318"}, trace, 1)
    assert moved["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.monitoring:4318"
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in moved


def test_a_run_may_not_set_the_trace_variables():
    for name in ("TRACEPARENT", "TRACESTATE", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"):
        assert reserved_env(name), name
    assert reserved_env("TRACE_LEVEL") is None


# ---------------------------------------------------------------- spans through the SDK

def memory_tracer(environ=None):
    exporter = InMemorySpanExporter()
    return tracing.tracer_with(SimpleSpanProcessor(exporter), {**OTLP, **(environ or {})}), exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def hex_ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    parent = span.parent
    return (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}",
            f"{parent.span_id:016x}" if parent is not None else None)


def test_a_record_is_exported_with_its_own_ids_times_and_status():
    tracer, exporter = memory_tracer()
    trace = RunTrace.for_run("u")
    tracer.record(trace, tracing.attempt_span(trace, 1, T0, T0 + timedelta(seconds=7), "a-a1", "oom", 137, "OOMKilled"))
    tracer.record(trace, tracing.run_span(trace, "ns", "a", "u", "k6", T0 - timedelta(seconds=1),
                                          T0 + timedelta(seconds=8), "Error", "OutOfMemory"))
    spans = by_name(exporter.get_finished_spans())
    attempt, root = spans["attempt 1"], spans["run"]
    assert hex_ids(attempt) == (trace.trace_id, trace.span_id("attempt 1"), trace.root_span_id)
    assert hex_ids(root) == (trace.trace_id, trace.root_span_id, None)
    assert attempt.start_time == int(T0.timestamp() * 1e9) and attempt.end_time - attempt.start_time == 7 * 10**9
    assert attempt.status.status_code == StatusCode.ERROR and attempt.attributes["supercheck.exit_code"] == 137
    assert root.attributes["supercheck.phase"] == "Error" and root.resource.attributes["service.name"] == \
        "supercheck-operator"


def test_a_span_never_ends_before_it_starts():
    trace = RunTrace.for_run("u")
    span = tracing.queue_wait_span(trace, T0, T0 - timedelta(seconds=1))  # two writers' clocks a little apart
    assert span.end == span.start == T0


def test_a_failed_test_is_not_an_error_span():
    trace = RunTrace.for_run("u")
    assert tracing.run_span(trace, "ns", "a", "u", "k6", T0, T0, "Failed", "TestsFailed").error is None
    assert tracing.attempt_span(trace, 1, T0, T0, "p", "test_failure", 10, "1 failed").error is None
    assert tracing.run_span(trace, "ns", "a", "u", "k6", T0, T0, "TimedOut", "DeadlineExceeded").error


def test_disabled_tracer_records_nothing_and_gives_pods_nothing():
    off = tracing.RunTracer()
    trace = RunTrace.for_run("u")
    off.record(trace, tracing.queue_wait_span(trace, T0, T0))  # no error, no effect
    assert not off.enabled and off.runner_env(trace, 1) == {} and off.flush()


# ---------------------------------------------------------------- a run through the engine

def traced_world(**overrides):
    w = world(**overrides)
    w.eng.tracer, exporter = memory_tracer()
    return w, exporter


def pod_env(w, name: str) -> dict[str, str]:
    pod = next(p for p in w.kube.pods() if p["metadata"]["name"] == name)
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_a_run_admitted_at_once_has_one_trace_with_its_spans_and_its_pod_joins_it():
    async def go():
        w, exporter = traced_world(database_url="postgresql://fake")
        await running(w)
        st = w.status("a")
        trace = RunTrace.for_run(w.kube.testrun("a")["metadata"]["uid"])
        assert (st["traceId"], st["traceParent"]) == (trace.trace_id, trace.traceparent)
        env = pod_env(w, "a-a1")
        assert env[TRACEPARENT_ENV] == trace.traceparent_of("attempt 1")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTLP["OTEL_EXPORTER_OTLP_ENDPOINT"]
        w.clock.advance(5)
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") is None
        spans = by_name(exporter.get_finished_spans())
        assert sorted(spans) == ["admission", "attempt 1", "dispatch", "run"]  # no queue: no queue wait
        for name, span in spans.items():
            want_parent = None if name == "run" else trace.root_span_id
            assert hex_ids(span)[0] == trace.trace_id and hex_ids(span)[2] == want_parent, name
        assert hex_ids(spans["attempt 1"])[1] == trace.span_id("attempt 1")  # the pod's TRACEPARENT's parent
        assert spans["admission"].attributes["supercheck.admission"] == "running"
        assert spans["run"].end_time - spans["run"].start_time == 5 * 10**9  # creation to completedAt
        assert spans["run"].status.status_code != StatusCode.ERROR
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].trace_id == trace.trace_id
    run(go)


def test_a_queued_run_records_its_wait_and_a_retried_run_one_span_per_attempt():
    async def go():
        w, exporter = traced_world(running_capacity=1, queued_capacity=2)
        await running(w, "a")
        w.kube.add_testrun("b", K6)
        await w.settle("b")
        assert w.status("b")["phase"] == "Queued" and w.status("b")["traceId"]
        w.clock.advance(4)
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("a")
        await w.settle("b")
        w.kube.pod_running("b-a1")
        await w.settle("b")
        w.kube.pod_terminated("b-a1", 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 refused"))
        delay = await w.settle("b")
        assert delay and delay > 0
        w.clock.advance(delay)
        await w.settle("b")
        assert "b-a2" in w.pod_names()
        trace_b = RunTrace.for_run(w.kube.testrun("b")["metadata"]["uid"])
        assert pod_env(w, "b-a2")[TRACEPARENT_ENV] == trace_b.traceparent_of("attempt 2")
        b = [s for s in exporter.get_finished_spans() if hex_ids(s)[0] == trace_b.trace_id]
        names = sorted(s.name for s in b)
        assert names == ["admission", "attempt 1", "dispatch", "dispatch", "queue wait"]
        wait = next(s for s in b if s.name == "queue wait")
        assert wait.end_time - wait.start_time == 4 * 10**9
        assert next(s for s in b if s.name == "attempt 1").status.status_code == StatusCode.ERROR
        assert next(s for s in b if s.name == "admission").attributes["supercheck.admission"] == "queued"
    run(go)


def test_a_rejected_run_has_its_admission_and_root_spans():
    async def go():
        w, exporter = traced_world(running_capacity=1, queued_capacity=0)
        await running(w, "a")
        w.kube.add_testrun("b", K6)
        await w.settle("b")
        st = w.status("b")
        assert st["phase"] == "Rejected" and st["traceId"]
        spans = [s for s in exporter.get_finished_spans() if hex_ids(s)[0] == st["traceId"]]
        assert sorted(s.name for s in spans) == ["admission", "run"]
        assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    run(go)


def test_tracing_off_leaves_the_status_and_the_pod_as_before():
    async def go():
        w = world()
        await running(w)
        assert "traceId" not in w.status("a")
        assert not [k for k in pod_env(w, "a-a1") if k.startswith("OTEL_") or k == TRACEPARENT_ENV]
    run(go)
