"""The outcome table (docs/operator.md) on the local control plane, with the real runner and k6."""

from __future__ import annotations

import json

import pytest
from operator_kit import (
    QUICK_K6,
    SLEEPY_K6,
    create,
    event_reasons,
    get_run,
    ledger_counts,
    make_run,
    phase,
    rows_for,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster

OOM_K6 = """export const options = { vus: 1, iterations: 1 };
export default function () {
  const hog = [];
  for (;;) { hog.push(new Array(1000000).fill(Math.random())); }
}
"""
INVALID_K6 = "export default function ( {\n"


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start(RUNNING_CAPACITY="4", SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    return operator_ctl


def terminal(custom_objects, namespace, name, timeout=180):
    return wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and
                    phase(r) in {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"} and r,
                    timeout, what=f"{name} terminal")


def test_oom_is_retried_exactly_once(operator, namespace, core_v1, custom_objects, db_conn):
    create(custom_objects, namespace, make_run("hog", OOM_K6, resources={"memory": "150Mi"}))
    run = terminal(custom_objects, namespace, "hog", 240)
    st = run["status"]
    assert (st["phase"], st["reason"], st["failureClass"], st["attempts"]) == ("Error", "OOMKilled", "oom", 2), st
    assert [h["failureClass"] for h in st["attemptHistory"]] == ["oom", "oom"]
    assert [h["podName"] for h in st["attemptHistory"]] == ["hog-a1", "hog-a2"]
    reasons = event_reasons(core_v1, namespace, "hog", "Retrying", "OOMKilled")
    assert "Retrying" in reasons and "OOMKilled" in reasons
    rows = wait_for(lambda: len(r := rows_for(db_conn, namespace)) == 2 and r, 30, what="2 rows")
    assert [(r[1], r[2]) for r in rows] == [(1, "Error"), (2, "Error")]


def test_timeout_ends_timed_out_without_retry(operator, namespace, custom_objects):
    create(custom_objects, namespace, make_run("slow", SLEEPY_K6, timeoutSeconds=3,
                                               env=[{"name": "SLEEP", "value": "60"}]))
    st = terminal(custom_objects, namespace, "slow", 120)["status"]
    assert (st["phase"], st["failureClass"], st["attempts"]) == ("TimedOut", "timeout", 1), st


def test_invalid_script_is_an_error_without_retry(operator, namespace, custom_objects):
    create(custom_objects, namespace, make_run("broken", INVALID_K6))
    st = terminal(custom_objects, namespace, "broken")["status"]
    assert (st["phase"], st["failureClass"], st["attempts"]) == ("Error", "validation", 1), st
    assert st["reason"] == "InvalidScript"


def test_runner_pod_deleted_mid_run_is_retried(operator, namespace, core_v1, custom_objects, redis_client):
    create(custom_objects, namespace, make_run("victim", SLEEPY_K6, env=[{"name": "SLEEP", "value": "6"}]))
    wait_for(lambda: phase(get_run(custom_objects, namespace, "victim")) == "Running", 60, what="victim running")
    core_v1.delete_namespaced_pod("victim-a1", namespace)
    st = terminal(custom_objects, namespace, "victim", 120)["status"]
    assert (st["phase"], st["attempts"]) == ("Passed", 2), st
    assert st["attemptHistory"][0]["failureClass"] == "pod_lost"
    assert st["attemptHistory"][1]["podName"] == "victim-a2"
    wait_ledger_zero(redis_client)


def test_missing_configmap_ends_as_error_naming_it(operator_ctl, namespace, custom_objects, kubectl):
    operator_ctl.start(SUPERCHECK_SCRIPT_REF_GRACE_SECONDS="2")
    body = make_run("ref")
    body["spec"]["script"] = {"configMapRef": {"name": "no-such-scripts", "key": "smoke.js"}}
    create(custom_objects, namespace, body)
    st = terminal(custom_objects, namespace, "ref", 60)["status"]
    assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "ConfigMapNotFound", 0), st
    assert "no-such-scripts" in st["message"] and "spec.script.configMapRef" in st["message"]


def test_configmap_script_applied_after_the_testrun_within_the_grace(operator, namespace, custom_objects, core_v1):
    body = make_run("late")
    body["spec"]["script"] = {"configMapRef": {"name": "scripts", "key": "smoke.js"}}
    create(custom_objects, namespace, body)
    core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "scripts"}, "data": {"smoke.js": QUICK_K6}})
    st = terminal(custom_objects, namespace, "late", 120)["status"]
    assert st["phase"] == "Passed", st


def test_schema_violations_are_refused_by_kubectl_naming_the_field(kube_env, namespace, kubectl):
    def apply(spec: dict) -> str:
        doc = {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "metadata": {"name": "bad"}, "spec": spec}
        res = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        assert res.returncode != 0
        return res.stderr
    both = apply({"type": "k6", "script": {"inline": "x", "configMapRef": {"name": "a", "key": "b"}}})
    assert "spec.script" in both and "exactly one" in both
    assert "spec.type" in apply({"type": "selenium", "script": {"inline": "x"}})
    assert "spec.priority" in apply({"type": "k6", "script": {"inline": "x"}, "priority": 100000})
    big = apply({"type": "k6", "script": {"inline": "x"}, "resources": {"memory": "64Gi"}})
    assert "spec.resources.memory" in big and "8Gi" in big


def test_resources_beyond_the_configured_bounds_are_refused_with_a_message(operator_ctl, namespace, custom_objects):
    operator_ctl.start(RUNNER_MAX_MEMORY="1Gi")
    create(custom_objects, namespace, make_run("greedy", resources={"memory": "2Gi"}))
    st = terminal(custom_objects, namespace, "greedy", 60)["status"]
    assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "ResourcesOutOfBounds", 0), st
    assert "spec.resources.memory=2Gi" in st["message"] and "1Gi" in st["message"]


def test_deleting_a_running_testrun_cancels_it(operator, namespace, core_v1, custom_objects, redis_client, db_conn):
    create(custom_objects, namespace, make_run("doomed", SLEEPY_K6, env=[{"name": "SLEEP", "value": "30"}]))
    wait_for(lambda: phase(get_run(custom_objects, namespace, "doomed")) == "Running", 60, what="doomed running")
    assert ledger_counts(redis_client)[0] == 1
    custom_objects.delete_namespaced_custom_object("supercheck.io", "v1alpha1", namespace, "testruns", "doomed")
    wait_for(lambda: get_run(custom_objects, namespace, "doomed") is None, 60, what="doomed gone")
    wait_for(lambda: not core_v1.list_namespaced_pod(namespace, label_selector="supercheck.io/testrun=doomed").items,
             60, what="runner pod gone")
    wait_ledger_zero(redis_client, 10)
    rows = wait_for(lambda: rows_for(db_conn, namespace), 30, what="a Cancelled row")
    assert [(r[0], r[1], r[2]) for r in rows] == [("doomed", 1, "Cancelled")]
