"""The lifecycle conditions on the local control plane, as a pipeline and a GitOps tool use them:
`kubectl wait --for=condition=Completed` returns for a passing and a failing TestRun and JobRun
alike, Succeeded tells them apart, and kstatus (Flux's judge, hack/kstatus) calls the objects the
API server holds Current and Failed. ReferencesResolved turns True when a late ConfigMap appears."""

from __future__ import annotations

import json
import subprocess

import pytest
from operator_kit import QUICK_K6, create, get_run, make_run

from supercheck_localenv.layout import REPO_ROOT

pytestmark = pytest.mark.cluster

FAILING_K6 = """import { check } from 'k6';
export const options = { vus: 1, iterations: 1, thresholds: { checks: ['rate==1'] } };
export default function () { check(1, { 'one is two': (v) => v === 2 }); }
"""
WAIT = "240s"


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start(RUNNING_CAPACITY="4", SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    return operator_ctl


@pytest.fixture(scope="module")
def kstatus() -> str:
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-kstatus.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def wait(kubectl, namespace: str, ref: str, condition: str, timeout: str = WAIT) -> subprocess.CompletedProcess:
    return kubectl("wait", "-n", namespace, f"--for=condition={condition}", ref, f"--timeout={timeout}", timeout=300)


def fetched(kubectl, namespace: str, ref: str) -> dict:
    res = kubectl("get", "-n", namespace, ref, "-o", "json", check=True)
    return json.loads(res.stdout)


def kstatus_of(kstatus: str, obj: dict) -> str:
    res = subprocess.run([kstatus], input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=30)
    return json.loads(res.stdout)["status"]


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


def assert_ended(obj: dict, passed: bool) -> None:
    st, cond = obj["status"], conditions(obj)
    assert st["phase"] == ("Passed" if passed else "Failed"), st
    assert (cond["Completed"]["status"], cond["Completed"]["reason"]) == ("True", st["phase"])
    assert cond["Succeeded"]["status"] == ("True" if passed else "False")
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    for c in cond.values():
        assert c["reason"] and c["observedGeneration"] == obj["metadata"]["generation"], c


def test_kubectl_wait_completed_returns_for_passing_and_failing_testruns(
        operator, namespace, custom_objects, kubectl, kstatus):
    create(custom_objects, namespace, make_run("good", QUICK_K6))
    create(custom_objects, namespace, make_run("bad", FAILING_K6))
    for name, passed in (("good", True), ("bad", False)):
        res = wait(kubectl, namespace, f"tr/{name}", "Completed")
        assert res.returncode == 0, res.stdout + res.stderr
        obj = fetched(kubectl, namespace, f"tr/{name}")
        assert_ended(obj, passed)
        assert kstatus_of(kstatus, obj) == ("Current" if passed else "Failed")
        # the pipeline's verdict: Succeeded checked once, without waiting
        verdict = wait(kubectl, namespace, f"tr/{name}", "Succeeded", "0s")
        assert (verdict.returncode == 0) == passed, verdict.stdout + verdict.stderr
    assert wait(kubectl, namespace, "tr/bad", "Succeeded=False", "0s").returncode == 0


def test_kubectl_wait_completed_returns_for_passing_and_failing_jobruns(
        operator, namespace, core_v1, custom_objects, kubectl, kstatus):
    from kubernetes import client

    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="green"), data={"a.test.js": QUICK_K6}))
    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="red"), data={"a.test.js": QUICK_K6, "b.test.js": FAILING_K6}))
    for name in ("green", "red"):
        custom_objects.create_namespaced_custom_object("supercheck.io", "v1alpha1", namespace, "jobruns", {
            "apiVersion": "supercheck.io/v1alpha1", "kind": "JobRun", "metadata": {"name": name},
            "spec": {"type": "k6", "parallelism": 1, "testsFrom": {"configMapRef": {"name": name}}}})
    for name, passed in (("green", True), ("red", False)):
        res = wait(kubectl, namespace, f"jr/{name}", "Completed")
        assert res.returncode == 0, res.stdout + res.stderr
        obj = fetched(kubectl, namespace, f"jr/{name}")
        assert_ended(obj, passed)
        assert kstatus_of(kstatus, obj) == ("Current" if passed else "Failed")


def test_a_running_testrun_is_in_progress_for_kstatus(operator, namespace, custom_objects, kubectl, kstatus):
    sleepy = """import { sleep } from 'k6';
export const options = { vus: 1, iterations: 1 };
export default function () { sleep(8); }
"""
    create(custom_objects, namespace, make_run("busy", sleepy))
    res = kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Running", "tr/busy", "--timeout=120s",
                  timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    obj = fetched(kubectl, namespace, "tr/busy")
    assert kstatus_of(kstatus, obj) == "InProgress"
    assert conditions(obj)["Completed"]["status"] == "False"
    assert wait(kubectl, namespace, "tr/busy", "Completed").returncode == 0
    assert kstatus_of(kstatus, fetched(kubectl, namespace, "tr/busy")) == "Current"


def test_references_resolved_turns_true_when_the_configmap_appears(
        operator, namespace, core_v1, custom_objects, kubectl):
    from kubernetes import client

    body = make_run("late-ref")
    body["spec"]["script"] = {"configMapRef": {"name": "late-script", "key": "smoke.js"}}
    create(custom_objects, namespace, body)
    res = kubectl("wait", "-n", namespace, "--for=condition=ReferencesResolved=False", "tr/late-ref",
                  "--timeout=30s", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="late-script"), data={"smoke.js": QUICK_K6}))
    res = wait(kubectl, namespace, "tr/late-ref", "Completed")
    assert res.returncode == 0, res.stdout + res.stderr
    obj = get_run(custom_objects, namespace, "late-ref")
    assert obj["status"]["phase"] == "Passed", obj["status"]
    cond = conditions(obj)["ReferencesResolved"]
    assert (cond["status"], cond["reason"]) == ("True", "Resolved")
