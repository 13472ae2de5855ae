"""Per-run settings: env and envFrom from Secrets, labels carried to pods, ttlSecondsAfterFinished."""

from __future__ import annotations

import pytest
from operator_kit import create, get_run, make_run, phase, rows_for, wait_for

pytestmark = pytest.mark.cluster

TOKEN_K6 = """import { check } from 'k6';
export const options = { vus: 1, iterations: 1, thresholds: { checks: ['rate==1'] } };
export default function () {
  check(__ENV, {
    'token from a secretKeyRef': (e) => e.TOKEN === 'tok-123',
    'user from envFrom': (e) => e.API_USER === 'alice',
    'plain value': (e) => e.BASE === 'http://example.test',
  });
}
"""


def terminal(custom_objects, namespace, name, timeout=120):
    return wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and
                    phase(r) in {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"} and r,
                    timeout, what=f"{name} terminal")


def test_env_and_envfrom_secrets_reach_the_test(operator_ctl, namespace, core_v1, custom_objects):
    operator_ctl.start(SUPERCHECK_SCRIPT_REF_GRACE_SECONDS="2")
    core_v1.create_namespaced_secret(namespace, {"metadata": {"name": "creds"},
                                                 "stringData": {"token": "tok-123", "API_USER": "alice"}})
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
           {"name": "BASE", "value": "http://example.test"}]
    body = make_run("secrets", TOKEN_K6, env=env, envFrom=[{"secretRef": {"name": "creds"}}])
    body["metadata"]["labels"] = {"team": "payments"}
    create(custom_objects, namespace, body)
    st = terminal(custom_objects, namespace, "secrets")["status"]
    assert st["phase"] == "Passed", st
    assert st["k6"]["checksPassed"] == 3 and st["k6"]["checksFailed"] == 0
    pod = core_v1.read_namespaced_pod("secrets-a1", namespace)
    assert pod.metadata.labels["team"] == "payments"
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "supercheck"
    assert pod.metadata.labels["supercheck.io/testrun"] == "secrets"
    assert "tok-123" not in str(pod.spec)  # a reference, not the value

    wrong = make_run("wrong-token", TOKEN_K6, env=[{"name": "TOKEN", "value": "nope"}])
    create(custom_objects, namespace, wrong)
    assert phase(terminal(custom_objects, namespace, "wrong-token")) == "Failed"

    missing = make_run("missing-secret", TOKEN_K6, envFrom=[{"secretRef": {"name": "no-such-secret"}}])
    create(custom_objects, namespace, missing)
    st = terminal(custom_objects, namespace, "missing-secret")["status"]
    assert (st["phase"], st["reason"]) == ("Error", "SecretNotFound") and "no-such-secret" in st["message"]


def test_ttl_after_finished_deletes_the_testrun_and_keeps_the_row(operator_ctl, namespace, custom_objects, db_conn):
    operator_ctl.start()
    create(custom_objects, namespace, make_run("brief", ttlSecondsAfterFinished=2))
    wait_for(lambda: phase(get_run(custom_objects, namespace, "brief")) == "Passed", 120, what="brief passed")
    wait_for(lambda: get_run(custom_objects, namespace, "brief") is None, 60, what="brief deleted by its TTL")
    rows = wait_for(lambda: rows_for(db_conn, namespace), 30, what="the row")
    assert [(r[0], r[2]) for r in rows] == [("brief", "Passed")]  # deleting a finished run is not a cancellation
