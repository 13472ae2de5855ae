"""The runner's spans (supercheck_runner.tracing): on only with TRACEPARENT and an endpoint, one phase
after the other, children of the attempt span the operator named (the SDK's in-memory exporter)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from supercheck_runner import tracing

TRACE_ID, ATTEMPT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{ATTEMPT_SPAN}-01"
ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14318"}


@pytest.mark.parametrize("environ,on", [
    ({}, False),
    ({"TRACEPARENT": PARENT}, False),  # nowhere to send spans
    (ENDPOINT, False),  # no trace to join
    ({"TRACEPARENT": PARENT, **ENDPOINT}, True),
    ({"TRACEPARENT": PARENT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, True),
    ({"TRACEPARENT": PARENT, **ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
    ({"TRACEPARENT": PARENT, **ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
])
def test_tracing_is_on_only_with_a_parent_and_an_endpoint(environ, on):
    assert tracing.wanted(environ) == on
    assert tracing.start(environ).enabled == on


def test_the_endpoint_follows_the_specification():
    assert tracing.traces_endpoint(ENDPOINT) == "http://127.0.0.1:14318/v1/traces"
    assert tracing.traces_endpoint({**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/t"}) == "http://x/t"


def test_phases_are_siblings_under_the_attempt_span_and_a_failure_is_marked():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "supercheck-runner"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = TraceContextTextMapPropagator().extract({"traceparent": PARENT})
    phases = tracing.Phases(provider.get_tracer("t"), parent, provider, {"supercheck.attempt": 1})
    phases.enter("validation")
    phases.fail("validation: invalid script")
    phases.enter("execution")
    phases.enter("upload")
    phases.close(1.0)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["validation", "execution", "upload"]
    for s in spans:
        assert f"{s.context.trace_id:032x}" == TRACE_ID and s.parent is not None
        assert f"{s.parent.span_id:016x}" == ATTEMPT_SPAN and s.attributes["supercheck.attempt"] == 1
    assert spans[0].status.status_code == StatusCode.ERROR and spans[1].status.status_code == StatusCode.UNSET
    assert spans[0].end_time <= spans[1].start_time <= spans[1].end_time <= spans[2].start_time


def test_a_runner_without_tracing_does_nothing():
    phases = tracing.Phases()
    phases.enter("validation")
    phases.fail("x")
    phases.close()
    assert not phases.enabled
