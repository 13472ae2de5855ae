"""The Helm chart renders and every object it makes is accepted by the real API server."""

from __future__ import annotations

import json
import subprocess

import pytest

from supercheck.localkube.layout import REPO_ROOT

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


def test_chart_lints(helm):
    res = subprocess.run([helm, "lint", str(CHART), "--kube-version", PINNED], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_chart_objects_pass_server_side_validation(helm, kubectl, namespace):
    manifest = render(helm, "--namespace", namespace, "--set", "config.RUNNING_CAPACITY=3")
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", input=manifest)
    assert res.returncode == 0, res.stderr
    kinds = {item["kind"] for item in json.loads(res.stdout)["items"]}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "Service", "ConfigMap"} <= kinds
    deployment = next(i for i in json.loads(res.stdout)["items"] if i["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNNING_CAPACITY"] == "3"


def test_chart_ships_the_crds_and_dashboard(helm):
    manifest = render(helm, "--include-crds")
    assert "name: testruns.supercheck.io" in manifest
    dashboard = render(helm, "--show-only", "templates/grafana-dashboard.yaml")
    assert "supercheck_capacity_running" in dashboard and "supercheck_capacity_queued" in dashboard
