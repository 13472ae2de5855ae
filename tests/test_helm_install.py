"""The chart installed for real, into the local control plane.

`helm install` makes the chart's Deployment; the node agent runs its operator pod with the chart's
ServiceAccount token, so the operator's RBAC is checked by use, not by `kubectl auth can-i`. A TestRun
passes through it, `helm upgrade` with another capacity rolls the pod and the new capacity holds,
`helm test` runs the chart's own test, and `helm uninstall` removes what the release made and keeps
or removes the CRDs as `crds.keep` says.

The values are `supercheck-dev chart-values` (the README's "Deploying to a cluster" uses the same):
one replica replaced with Recreate and ports of its own, because the node agent runs containers as
host processes in the host's network. The process operator of `make dev-up` is stopped for the
test (it serves every namespace; both would serve the runs) and started again after it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from supercheck_localenv.chartvalues import chart_values
from supercheck_localenv.layout import REPO_ROOT
from tests.conftest import wait_until
from tests.operator.operator_kit import get_run, list_runs, phase, rows_for

CHART = REPO_ROOT / "charts" / "supercheck"
RELEASE = "sc"
FULLNAME = "sc-supercheck"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
CRDS = ("testruns.supercheck.io", "jobruns.supercheck.io", "runschedules.supercheck.io",
        "monitors.supercheck.io")

# No network, one iteration: the run's outcome is the operator's and the runner's alone.
K6_ONE_CHECK = """import { check } from 'k6';
export const options = { iterations: 1 };
export default function () { check(1, { 'one is one': (v) => v === 1 }); }
"""
K6_FOUR_SECONDS = """import { sleep } from 'k6';
export const options = { iterations: 1 };
export default function () { sleep(4); }
"""


def k6_run(name: str, script: str) -> dict:
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name},
            "spec": {"type": "k6", "script": {"inline": script}}}


@pytest.fixture
def helm_run(helm, kube_env):
    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        res = subprocess.run([helm, *args, "--kubeconfig", kube_env.kubeconfig],
                             capture_output=True, text=True, timeout=timeout)
        return res

    return run


@pytest.fixture
def values_file(tmp_path) -> Path:
    path = tmp_path / "local-values.yaml"
    path.write_text(yaml.safe_dump(chart_values()))
    return path


@pytest.fixture
def uninstalled_after(helm_run, kubectl, namespace):
    """Releases named by the test are uninstalled after it, passed or not: their ClusterRoles would
    otherwise outlive the namespace and refuse the next install."""
    releases: list[str] = []
    yield releases
    for release in releases:
        helm_run("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
        kubectl("delete", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={release}")


@pytest.fixture
def only_the_charts_operator(operator_ctl):
    """Stop the process operator; operator_ctl's teardown starts it again with its usual settings."""
    operator_ctl.stop()
    yield
    assert not operator_ctl.proc.running(), "the process operator came back during the test"


def operator_pods(core_v1, namespace: str) -> list:
    pods = core_v1.list_namespaced_pod(namespace, label_selector=INSTANCE).items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]


def env_of(pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env or []}


def create_run(kubectl, namespace: str, body: dict) -> None:
    res = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    assert res.returncode == 0, res.stderr


def wait_passed(custom_objects, namespace: str, name: str, timeout: float = 180) -> dict:
    wait_until(lambda: phase(get_run(custom_objects, namespace, name)) in {"Passed", "Failed", "Error"},
               timeout, what=f"TestRun {name} ended")
    run = get_run(custom_objects, namespace, name)
    assert run is not None
    status = run.get("status", {})
    assert phase(run) == "Passed", (status.get("reason"), status.get("message"), status.get("attemptHistory"))
    return run


def test_the_chart_runs_the_operator_in_the_cluster(helm_run, values_file, only_the_charts_operator, kubectl,
                                                     core_v1, custom_objects, db_conn, namespace, uninstalled_after):
    uninstalled_after.append(RELEASE)
    res = helm_run("install", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file),
                   "--wait", "--timeout", "180s")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "TestRun" in res.stdout, "NOTES.txt should say how to run a first TestRun"
    [first_pod] = operator_pods(core_v1, namespace)
    assert first_pod.spec.service_account_name == FULLNAME
    assert first_pod.spec.security_context.run_as_non_root

    # A TestRun through the chart's operator: the only operator running (its pod's token, its RBAC).
    create_run(kubectl, namespace, k6_run("through-the-chart", K6_ONE_CHECK))
    run = wait_passed(custom_objects, namespace, "through-the-chart")
    assert run["status"]["k6"]["checksPassed"] == 1, run["status"]
    wait_until(lambda: len(rows_for(db_conn, namespace)) >= 1, 30, what="the run's row in PostgreSQL")

    # helm upgrade with capacity 1: the pod rolls (the config checksum changed) and one slot holds.
    res = helm_run("upgrade", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file),
                   "--set", "config.RUNNING_CAPACITY=1", "--wait", "--timeout", "180s")
    assert res.returncode == 0, res.stdout + res.stderr
    rolled = ([], [first_pod.metadata.name])
    wait_until(lambda: [p.metadata.name for p in operator_pods(core_v1, namespace)] not in rolled,
               120, what="the operator pod rolled")
    [second_pod] = operator_pods(core_v1, namespace)
    assert env_of(second_pod)["RUNNING_CAPACITY"] == "1"
    for name in ("slot-a", "slot-b"):
        create_run(kubectl, namespace, k6_run(name, K6_FOUR_SECONDS))
    a, b = (wait_passed(custom_objects, namespace, n, timeout=240) for n in ("slot-a", "slot-b"))
    spans = sorted((r["status"]["attemptHistory"][-1]["startedAt"], r["status"]["attemptHistory"][-1]["completedAt"])
                   for r in (a, b))
    assert spans[1][0] >= spans[0][1], f"two runs held a slot at once with capacity 1: {spans}"

    # helm test: the chart's own check (a tiny k6 TestRun from a hook pod, through the CLI).
    ours = {"through-the-chart", "slot-a", "slot-b"}
    res = helm_run("test", RELEASE, "-n", namespace, "--timeout", "180s", timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Phase:          Succeeded" in res.stdout and "Failed" not in res.stdout, res.stdout
    [hook_run] = [r for r in list_runs(custom_objects, namespace) if r["metadata"]["name"] not in ours]
    assert phase(hook_run) == "Passed", hook_run.get("status")
    assert hook_run["status"]["k6"]["checksPassed"] == 1

    # helm uninstall: everything of the release is gone, namespaced and cluster-wide.
    res = helm_run("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
    assert res.returncode == 0, res.stdout + res.stderr
    for kind in ("deployments", "serviceaccounts", "services", "secrets", "configmaps", "roles", "rolebindings"):
        left = kubectl("get", kind, "-n", namespace, "-l", INSTANCE, "-o", "name", check=True).stdout.split()
        assert left == [], f"{kind} left after uninstall: {left}"
    for kind in ("clusterroles", "clusterrolebindings"):
        left = kubectl("get", kind, "-l", INSTANCE, "-o", "name", check=True).stdout.split()
        assert [n for n in left if FULLNAME in n] == [], f"{kind} left after uninstall: {left}"
    wait_until(lambda: operator_pods(core_v1, namespace) == [], 60, what="the operator pod gone")
    # The users' runs outlive the operator: the CRDs were not the release's here.
    assert get_run(custom_objects, namespace, "through-the-chart") is not None


def crd_names(kubectl) -> set[str]:
    names = kubectl("get", "crd", "-o", "name", check=True).stdout.split()
    return {n.removeprefix("customresourcedefinition.apiextensions.k8s.io/") for n in names}


def crds_being_deleted(kubectl) -> set[str]:
    crds = json.loads(kubectl("get", "crd", "-o", "json", check=True).stdout)["items"]
    return {c["metadata"]["name"] for c in crds if c["metadata"].get("deletionTimestamp")}


def restore_the_environments_crds(kubectl) -> None:
    """Deleted CRDs wait for their objects, whose operator finalizers no operator removes now (none
    serves a CRD being deleted): remove them, let the CRDs go, apply `make dev-up`'s again."""
    for crd in crds_being_deleted(kubectl) & set(CRDS):
        listed = kubectl("get", crd, "-A", "-o", "json", check=True).stdout
        for item in json.loads(listed)["items"]:
            meta = item["metadata"]
            kubectl("patch", crd, meta["name"], "-n", meta["namespace"], "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_until(lambda: not crds_being_deleted(kubectl), 120, what="the deleted CRDs gone")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"), check=True)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in CRDS), check=True)
    time.sleep(1)  # discovery catches up before the operator starts again


def test_uninstall_keeps_or_removes_the_crds_as_crds_keep_says(helm_run, values_file, only_the_charts_operator,
                                                                kubectl, custom_objects, namespace, uninstalled_after):
    """The CRDs as the chart's templates (crds.install=true), taken over from `make dev-up`'s: with
    crds.keep=true `helm uninstall` leaves them and the runs; with crds.keep=false it deletes them.
    The test puts the environment's CRDs back, whatever happens."""
    uninstalled_after.extend(["crds-kept", "crds-removed"])
    installed = ["--set", "replicaCount=0", "--set", "crds.install=true", "--take-ownership", "--wait"]
    try:
        res = helm_run("install", "crds-kept", str(CHART), "-n", namespace, "-f", str(values_file), *installed)
        assert res.returncode == 0, res.stdout + res.stderr
        crd = json.loads(kubectl("get", "crd", CRDS[0], "-o", "json", check=True).stdout)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "crds-kept"
        create_run(kubectl, namespace, k6_run("outlives-the-release", K6_ONE_CHECK))
        res = helm_run("uninstall", "crds-kept", "-n", namespace, "--wait")
        assert res.returncode == 0, res.stdout + res.stderr
        assert set(CRDS) <= crd_names(kubectl) and not crds_being_deleted(kubectl)
        assert get_run(custom_objects, namespace, "outlives-the-release") is not None

        res = helm_run("install", "crds-removed", str(CHART), "-n", namespace, "-f", str(values_file), *installed,
                       "--set", "crds.keep=false")
        assert res.returncode == 0, res.stdout + res.stderr
        # Not --wait: a CRD goes only after its objects, and their finalizers need an operator.
        res = helm_run("uninstall", "crds-removed", "-n", namespace)
        assert res.returncode == 0, res.stdout + res.stderr
        assert set(CRDS) <= crds_being_deleted(kubectl) | (set(CRDS) - crd_names(kubectl))
    finally:
        restore_the_environments_crds(kubectl)
