"""One trace, two processes, a real OpenTelemetry Collector (hack/otelcol, built from the Go module
proxy; the local environment's trace sink): the operator's spans of a run from this process, the
runner's from another process given the environment its pod gets (TRACEPARENT and the OTLP
endpoint), both exported over OTLP/HTTP and read back from the collector's file exporter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from operator_kit import free_port

from supercheck import tracing
from supercheck.tracing import RunTrace
from supercheck_localenv import otelcol

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC) - timedelta(seconds=30)

RUNNER = """
import time
from supercheck_runner import tracing
phases = tracing.start(__import__("os").environ, {"supercheck.attempt": 1})
assert phases.enabled
for name in tracing.PHASES:
    phases.enter(name)
    time.sleep(0.01)
phases.close()
"""


@pytest.fixture
def collector(tmp_path):
    binary = otelcol.binary()  # builds it the first time (minutes; `make deps` does it already)
    c = otelcol.Collector(tmp_path / "otel", free_port(), free_port())
    c.write_config()
    with open(tmp_path / "otelcol.log", "wb") as log:
        proc = subprocess.Popen(c.argv(binary), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not c.ready():
            assert proc.poll() is None, (tmp_path / "otelcol.log").read_text()
            assert time.monotonic() < deadline, "the collector did not open its ports in 30 s"
            time.sleep(0.1)
        yield c
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spans_of(c: otelcol.Collector, trace_id: str, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in otelcol.read_spans(c.traces_file) if s["traceId"] == trace_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_operators_and_the_runners_spans_make_one_trace_in_the_collector(collector):
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
    tracer = tracing.from_env(environ)
    assert tracer.enabled
    trace = RunTrace.for_run("3f1c7a52-0000-4000-8000-000000000001")
    at = [T0 + timedelta(seconds=s) for s in range(6)]
    # What the engine records of a run queued for a while, then run once (supercheck.engine.traces).
    tracer.record(trace, tracing.admission_span(trace, at[0], at[0], "queued", 1))
    tracer.record(trace, tracing.queue_wait_span(trace, at[0], at[1]))
    tracer.record(trace, tracing.dispatch_span(trace, 1, at[1], at[2], "a-a1"))
    # The pod: the runner in its own process with the environment the operator gives it.
    pod_env = tracer.runner_env(trace, 1)
    assert pod_env["TRACEPARENT"] == trace.traceparent_of("attempt 1")
    subprocess.run([sys.executable, "-c", RUNNER], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **pod_env},
                   check=True, timeout=60)
    tracer.record(trace, tracing.attempt_span(trace, 1, at[2], at[4], "a-a1", "none", 0, "passed"))
    tracer.record(trace, tracing.run_span(trace, "ns", "a", "uid", "k6", at[0], at[5], "Passed", "TestsPassed"))
    assert tracer.flush(10)

    spans = spans_of(collector, trace.trace_id, 8)
    by_name = {s["name"]: s for s in spans}
    assert sorted(by_name) == ["admission", "attempt 1", "dispatch", "execution", "queue wait", "run", "upload",
                               "validation"], spans
    assert len(spans) == 8  # each once
    root, attempt = by_name["run"], by_name["attempt 1"]
    assert root["parentSpanId"] == "" and root["spanId"] == trace.root_span_id
    for name in ("admission", "queue wait", "dispatch", "attempt 1"):
        assert by_name[name]["parentSpanId"] == root["spanId"], name
        assert by_name[name]["service"] == "supercheck-operator"
    for name in tracing.RUNNER_PHASES:
        assert by_name[name]["parentSpanId"] == attempt["spanId"], name
        assert by_name[name]["service"] == "supercheck-runner"
    assert root["end"] - root["start"] == 5 * 10**9
    assert by_name["admission"]["attributes"]["supercheck.queue.position"] == 1
