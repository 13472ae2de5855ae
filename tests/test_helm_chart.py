"""The Helm chart renders and every object it makes is accepted by the real API server."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from supercheck.config import Settings
from supercheck_localenv.layout import REPO_ROOT

CHART = REPO_ROOT / "charts" / "supercheck"
PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()


@pytest.fixture(scope="module")
def helm() -> str:
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-helm.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def render(helm: str, *args: str) -> str:
    res = subprocess.run(
        [helm, "template", "sc", str(CHART), "--namespace", "supercheck-system", "--kube-version", PINNED, *args],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.integration
def test_chart_lints(helm):
    res = subprocess.run([helm, "lint", str(CHART), "--kube-version", PINNED], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_chart_objects_pass_server_side_validation(helm, kubectl, namespace):
    manifest = render(helm, "--namespace", namespace, "--set", "config.RUNNING_CAPACITY=3")
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", input=manifest)
    assert res.returncode == 0, res.stderr
    kinds = {item["kind"] for item in json.loads(res.stdout)["items"]}
    expected = {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "Service", "ConfigMap"}
    assert expected <= kinds
    deployment = next(i for i in json.loads(res.stdout)["items"] if i["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNNING_CAPACITY"] == "3"


@pytest.mark.integration
def test_chart_ships_the_crds_and_dashboard(helm):
    manifest = render(helm, "--include-crds")
    assert "name: testruns.supercheck.io" in manifest and "name: jobruns.supercheck.io" in manifest
    dashboard = render(helm, "--show-only", "templates/grafana-dashboard.yaml")
    assert "supercheck_capacity_running" in dashboard and "supercheck_capacity_queued" in dashboard


# What the operator does, as (verb, resource, group); the chart's ClusterRole must allow each.
OPERATOR_NEEDS = [
    ("watch", "testruns", "supercheck.io"),
    ("patch", "testruns/status", "supercheck.io"),
    ("patch", "testruns", "supercheck.io"),
    ("watch", "jobruns", "supercheck.io"),
    ("patch", "jobruns/status", "supercheck.io"),
    ("patch", "jobruns", "supercheck.io"),
    ("delete", "jobruns", "supercheck.io"),
    ("create", "pods", ""),
    ("delete", "pods", ""),
    ("watch", "pods", ""),
    ("get", "pods/log", ""),
    ("create", "configmaps", ""),
    ("get", "configmaps", ""),
    ("create", "secrets", ""),
    ("get", "secrets", ""),
    ("create", "events", ""),
    ("list", "namespaces", ""),
    ("list", "customresourcedefinitions", "apiextensions.k8s.io"),
    ("create", "clusterkopfpeerings", "kopf.dev"),
    ("patch", "clusterkopfpeerings", "kopf.dev"),
]


def test_chart_rbac_grants_what_the_operator_does(helm, kubectl, namespace):
    manifest = render(
        helm, "--namespace", namespace,
        "--show-only", "templates/rbac.yaml", "--show-only", "templates/serviceaccount.yaml",
    )
    # A name of its own, so the cluster-scoped objects never clash between tests.
    manifest = manifest.replace("name: sc-supercheck\n", f"name: {namespace}-operator\n")
    assert kubectl("apply", "-n", namespace, "-f", "-", input=manifest).returncode == 0
    try:
        sa = f"system:serviceaccount:{namespace}:{namespace}-operator"
        for verb, resource, group in OPERATOR_NEEDS:
            # "pods/log" to kubectl would be the pod named "log": a subresource is asked for as such.
            resource, _, subresource = resource.partition("/")
            target = f"{resource}.{group}" if group else resource
            sub = [f"--subresource={subresource}"] if subresource else []
            res = kubectl("auth", "can-i", verb, target, *sub, "--as", sa, "-n", "default")
            assert res.stdout.strip() == "yes", f"the chart's ClusterRole does not allow {verb} {target} {sub}"
        # and nothing it does not need
        assert kubectl("auth", "can-i", "delete", "nodes", "--as", sa).stdout.strip() == "no"
    finally:
        kubectl("delete", "clusterrole,clusterrolebinding", f"{namespace}-operator", "--ignore-not-found")


@pytest.mark.integration
def test_fair_share_values_become_the_operators_settings(helm, tmp_path):
    """values.yaml's fairShare → SUPERCHECK_NAMESPACE_* (only those set), read back by the operator's Settings."""
    def operator_env(*args: str) -> dict[str, str]:
        deployment = yaml.safe_load(render(helm, "--show-only", "templates/deployment.yaml", *args))
        return {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                if "value" in e}

    assert not any(name.startswith("SUPERCHECK_NAMESPACE_") for name in operator_env())  # unset: no limit
    values = tmp_path / "values.yaml"
    values.write_text("fairShare:\n  maxRunning: 2\n  maxQueued: 5\n  maxPriority: 100\n  maxTimeoutSeconds: 3600\n"
                      "  namespaces:\n    team-a: {running: 4, queued: null}\n")
    env = operator_env("-f", str(values))
    fair = Settings(**{k: v for k, v in env.items() if k.startswith("SUPERCHECK_NAMESPACE_")}).fair_share
    assert (fair.default.running, fair.default.queued, fair.default.max_priority,
            fair.default.max_timeout_seconds) == (2, 5, 100, 3600)
    team_a = fair.of("team-a")
    assert (team_a.running, team_a.queued, team_a.max_priority) == (4, None, 100)  # null lifts the limit
