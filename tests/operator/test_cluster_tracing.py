"""Tracing in the local environment (docs/tracing.md): with SUPERCHECK_TRACING=1 the operator exports to
the environment's OpenTelemetry Collector, and so does the runner pod, given TRACEPARENT and the
endpoint; one trace in the collector's file holds both processes' spans, parents right, and its id is
the TestRun's status.traceId and the `runs` row's trace_id. A 2-shard k6 JobRun likewise: one trace with
both shards' attempts, the runner's spans under each, its id the JobRun's status.traceId and the `jobs`
row's trace_id."""

from __future__ import annotations

import pytest
from operator_kit import QUICK_K6, create, get_run, make_run, phase, wait_for
from test_cluster_jobrun import create_job, job, suite_configmap, wait_job

from supercheck_localenv import otelcol
from supercheck_localenv import services as dev_services

pytestmark = pytest.mark.cluster

OPERATOR_SPANS = ("run", "admission", "dispatch", "attempt 1")
RUNNER_SPANS = ("validation", "execution", "upload")


def test_a_k6_run_is_one_trace_across_the_operator_and_the_runner(operator_ctl, kube_env, namespace,
                                                                   custom_objects, db_conn):
    operator_ctl.start(SUPERCHECK_TRACING="1")  # starts the collector too (14317/14318)
    collector = dev_services.collector(kube_env.layout)
    create(custom_objects, namespace, make_run("traced"))
    run = wait_for(lambda: (r := get_run(custom_objects, namespace, "traced")) and
                   phase(r) in {"Passed", "Failed", "Error", "TimedOut", "Rejected"} and r, 180,
                   what="traced terminal")
    st = run["status"]
    assert st["phase"] == "Passed", st
    trace_id = st["traceId"]
    assert len(trace_id) == 32 and st["traceParent"].startswith(f"00-{trace_id}-")

    def the_trace():
        spans = [s for s in otelcol.read_spans(collector.traces_file) if s["traceId"] == trace_id]
        names = {s["name"] for s in spans}
        return spans if names >= {*OPERATOR_SPANS, *RUNNER_SPANS} else None

    # The operator's batch exporter sends within OTEL_BSP_SCHEDULE_DELAY (5 s); the runner flushed at exit.
    spans = wait_for(the_trace, 30, what=f"trace {trace_id} in {collector.traces_file}")
    by_name = {s["name"]: s for s in spans}
    root, attempt = by_name["run"], by_name["attempt 1"]
    assert root["parentSpanId"] == "" and st["traceParent"] == f"00-{trace_id}-{root['spanId']}-01"
    for name in ("admission", "dispatch", "attempt 1"):
        assert by_name[name]["parentSpanId"] == root["spanId"], name
        assert by_name[name]["service"] == "supercheck-operator", name
    for name in RUNNER_SPANS:
        assert by_name[name]["parentSpanId"] == attempt["spanId"], name
        assert by_name[name]["service"] == "supercheck-runner", name
    assert "queue wait" not in by_name  # admitted at once: it never waited
    assert by_name["validation"]["end"] <= by_name["execution"]["start"] <= by_name["upload"]["start"]
    assert attempt["start"] <= by_name["validation"]["start"] and by_name["upload"]["end"] <= root["end"] + 10**9
    assert attempt["attributes"]["k8s.pod.name"] == "traced-a1"

    rows = wait_for(lambda: db_conn.execute("SELECT trace_id FROM runs WHERE namespace = %s AND name = 'traced'",
                                            (namespace,)).fetchall(), 30, what="the row")
    assert rows == [(trace_id,)]


SHARD_ATTEMPTS = ("shard 1 attempt 1", "shard 2 attempt 1")


def test_a_two_shard_k6_job_is_one_trace_with_each_shards_runner_under_its_attempt(
        operator_ctl, kube_env, namespace, core_v1, custom_objects, db_conn):
    operator_ctl.start(SUPERCHECK_TRACING="1")
    collector = dev_services.collector(kube_env.layout)
    suite_configmap(core_v1, namespace, "k6traced", {"a.test.js": QUICK_K6, "b.test.js": QUICK_K6})
    create_job(custom_objects, namespace, job("traced-job", {
        "type": "k6", "parallelism": 2, "testsFrom": {"configMapRef": {"name": "k6traced"}}}))
    st = wait_job(custom_objects, namespace, "traced-job", 240)["status"]
    assert st["phase"] == "Passed" and st["slots"] == 2, st
    trace_id = st["traceId"]
    assert len(trace_id) == 32 and st["traceParent"].startswith(f"00-{trace_id}-")

    def the_trace():
        spans = [s for s in otelcol.read_spans(collector.traces_file) if s["traceId"] == trace_id]
        runner = [s for s in spans if s["service"] == "supercheck-runner"]
        names = {s["name"] for s in spans}
        done = names >= {"run", "admission", "dispatch", *SHARD_ATTEMPTS} and len(runner) >= 2 * len(RUNNER_SPANS)
        return spans if done else None

    spans = wait_for(the_trace, 30, what=f"trace {trace_id} in {collector.traces_file}")
    by_name = {s["name"]: s for s in spans if s["service"] == "supercheck-operator"}
    root = by_name["run"]
    assert root["parentSpanId"] == "" and st["traceParent"] == f"00-{trace_id}-{root['spanId']}-01"
    assert root["attributes"]["supercheck.kind"] == "JobRun"
    dispatches = [s for s in spans if s["name"] == "dispatch"]
    assert sorted(d["attributes"]["k8s.pod.name"] for d in dispatches) == ["traced-job-s1-a1", "traced-job-s2-a1"]
    for span in [by_name["admission"], *dispatches, *(by_name[a] for a in SHARD_ATTEMPTS)]:
        assert span["parentSpanId"] == root["spanId"] and span["service"] == "supercheck-operator", span["name"]
    assert "merge attempt 1" not in by_name  # k6: no merge
    for index, name in enumerate(SHARD_ATTEMPTS, start=1):
        attempt = by_name[name]
        assert attempt["attributes"]["k8s.pod.name"] == f"traced-job-s{index}-a1"
        under = {s["name"]: s for s in spans if s["parentSpanId"] == attempt["spanId"]}
        assert set(under) == set(RUNNER_SPANS), name
        assert all(s["service"] == "supercheck-runner" for s in under.values()), name
        assert attempt["start"] <= under["validation"]["start"] and under["upload"]["end"] <= root["end"] + 10**9

    rows = wait_for(lambda: db_conn.execute("SELECT trace_id FROM jobs WHERE namespace = %s AND name = 'traced-job'",
                                            (namespace,)).fetchall(), 30, what="the jobs row")
    assert rows == [(trace_id,)]
