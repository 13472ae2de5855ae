"""The Helm chart renders and every object it makes is accepted by the real API server."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from supercheck.config import DEFAULT_DNS_EGRESS, Settings
from supercheck.netpolicy import runner_network_policy
from supercheck_localenv.layout import REPO_ROOT

CHART = REPO_ROOT / "charts" / "supercheck"
PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()


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
    # --skip-tests: the helm test hooks need their ServiceAccount made first (tests/test_helm_install.py runs them).
    manifest = render(helm, "--namespace", namespace, "--set", "config.RUNNING_CAPACITY=3", "--skip-tests")
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", input=manifest)
    assert res.returncode == 0, res.stderr
    kinds = {item["kind"] for item in json.loads(res.stdout)["items"]}
    expected = {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "Service", "ConfigMap"}
    assert expected <= kinds
    deployment = next(i for i in json.loads(res.stdout)["items"] if i["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNNING_CAPACITY"] == "3"
    # Namespaced mode: a Role and RoleBinding in each watched namespace.
    manifest = render(helm, "--namespace", namespace, "--set", f"watchNamespaces={{{namespace}}}",
                      "--set", "runner.runtimeClassName=gvisor", "--skip-tests")
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", input=manifest)
    assert res.returncode == 0, res.stderr
    kinds = {item["kind"] for item in json.loads(res.stdout)["items"]}
    assert {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} <= kinds


@pytest.mark.integration
def test_chart_ships_the_crds_and_dashboard(helm):
    manifest = render(helm)  # templates (tests/test_helm_crds.py), not a crds/ folder
    for crd in ("testruns", "jobruns", "runschedules", "monitors"):
        assert f"name: {crd}.supercheck.io" in manifest
    dashboard = render(helm, "--show-only", "templates/grafana-dashboard.yaml")
    assert "supercheck_capacity_running" in dashboard and "supercheck_capacity_queued" in dashboard


@pytest.mark.integration
def test_prometheus_rule_alerts_on_a_monitor_down_and_late_schedules(helm):
    assert "PrometheusRule" not in render(helm)  # off by default: it needs the Prometheus Operator's CRDs
    rule = yaml.safe_load(render(helm, "--set", "metrics.prometheusRule.enabled=true",
                                 "--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack",
                                 "--show-only", "templates/prometheusrule.yaml"))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    down = alerts["SupercheckMonitorDown"]
    assert "supercheck_monitor_up" in down["expr"] and down["for"] == "2m"
    assert "{{ $labels.monitor }}" in down["annotations"]["summary"]  # Prometheus' template, not Helm's
    assert "supercheck_schedule_lag_seconds_bucket" in alerts["SupercheckScheduleLagging"]["expr"]


# The operator's RBAC, the aggregated roles and `kubectl auth can-i`: tests/security/test_chart_rbac.py
# (offline) and tests/security/test_rbac.py (the real API server).


def operator_env(manifest: str) -> dict[str, str]:
    deployment = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def secret_data(manifest: str) -> dict[str, str]:
    return next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Secret")["stringData"]


@pytest.mark.integration
def test_watch_namespaces_reach_the_operator(helm):
    assert "SUPERCHECK_NAMESPACES" not in operator_env(render(helm))
    env = operator_env(render(helm, "--set", "watchNamespaces={team-a,team-b}"))
    assert env["SUPERCHECK_NAMESPACES"] == "team-a,team-b"
    Settings(**{k: v for k, v in env.items() if v is not None})  # the operator accepts what the chart sets


@pytest.mark.integration
def test_runner_isolation_values_reach_the_operator(helm):
    env = operator_env(render(helm))
    assert "RUNNER_RUNTIME_CLASS_NAME" not in env and env["RUNNER_NETWORK_POLICY"] == "true"
    cfg = Settings(**{k: v for k, v in env.items() if v is not None})
    assert cfg.runner_egress_excluded_cidrs == ["169.254.169.254/32", "fd00:ec2::254/128"]
    assert cfg.runner_dns_egress == [dict(r) for r in DEFAULT_DNS_EGRESS]
    # By default S3's port (from connections.s3EndpointUrl) anywhere but the metadata addresses; nothing else.
    assert cfg.runner_egress == [{"ports": [{"protocol": "TCP", "port": 9000}]}]
    _, s3 = runner_network_policy("team-a", cfg)["spec"]["egress"]
    assert s3["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
                        {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}]
    env = operator_env(render(helm, "--set", "connections.s3EndpointUrl=https://s3.eu-west-1.amazonaws.com"))
    assert json.loads(env["RUNNER_EGRESS"]) == [{"ports": [{"protocol": "TCP", "port": 443}]}]

    env = operator_env(render(
        helm, "--set", "runner.runtimeClassName=gvisor",
        "--set-json", 'runner.networkPolicy.s3=[{"to":[{"ipBlock":{"cidr":"192.0.2.10/32"}}],"ports":[{"port":9000}]}]',
        "--set-json", 'runner.networkPolicy.egress=[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0"}}],"ports":[{"port":443}]}]'))
    cfg = Settings(**{k: v for k, v in env.items() if v is not None})
    assert cfg.runner_runtime_class_name == "gvisor"
    assert [r["ports"][0]["port"] for r in cfg.runner_egress] == [9000, 443]
    egress = runner_network_policy("team-a", cfg)["spec"]["egress"]
    assert egress[2]["to"][0]["ipBlock"]["except"] == ["169.254.169.254/32"]


@pytest.mark.integration
def test_redis_gets_a_password_by_default(helm):
    data = secret_data(render(helm))
    password = data["REDIS_PASSWORD"]
    assert len(password) == 32 and data["REDIS_URL"] == f"redis://:{password}@supercheck-redis:6379/0"
    assert secret_data(render(helm))["REDIS_PASSWORD"] != password  # generated (kept across upgrades by lookup)
    data = secret_data(render(helm, "--set", "connections.redisPassword=s3cret"))
    assert data["REDIS_URL"] == "redis://:s3cret@supercheck-redis:6379/0" and data["REDIS_PASSWORD"] == "s3cret"
    # A URL with its own credentials is kept; no password only when asked for.
    data = secret_data(render(helm, "--set", "connections.redisUrl=rediss://user:pw@r:6380/1"))
    assert data["REDIS_URL"] == "rediss://user:pw@r:6380/1" and "REDIS_PASSWORD" not in data
    data = secret_data(render(helm, "--set", "connections.redisAuth=false"))
    assert data["REDIS_URL"] == "redis://supercheck-redis:6379/0" and "REDIS_PASSWORD" not in data


def test_generated_redis_password_is_kept_across_upgrades(helm, kubectl, kube_env, namespace):
    """The chart's `lookup` reads the password a previous release generated (as `helm upgrade` does)."""
    first = render(helm, "--namespace", namespace, "--show-only", "templates/secret.yaml")
    assert kubectl("apply", "-n", namespace, "-f", "-", input=first).returncode == 0
    res = subprocess.run(
        [helm, "template", "sc", str(CHART), "--namespace", namespace, "--kube-version", PINNED,
         "--show-only", "templates/secret.yaml", "--dry-run=server", "--kubeconfig", kube_env.kubeconfig],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert secret_data(res.stdout)["REDIS_PASSWORD"] == secret_data(first)["REDIS_PASSWORD"]
    assert secret_data(res.stdout)["REDIS_URL"] == secret_data(first)["REDIS_URL"]


@pytest.mark.integration
def test_fair_share_values_become_the_operators_settings(helm, tmp_path):
    """values.yaml's fairShare → SUPERCHECK_NAMESPACE_* (only those set), read back by the operator's Settings."""
    assert not any(name.startswith("SUPERCHECK_NAMESPACE_") for name in operator_env(render(helm)))  # no limit
    values = tmp_path / "values.yaml"
    values.write_text("fairShare:\n  maxRunning: 2\n  maxQueued: 5\n  maxPriority: 100\n  maxTimeoutSeconds: 3600\n"
                      "  namespaces:\n    team-a: {running: 4, queued: null}\n")
    env = operator_env(render(helm, "-f", str(values)))
    fair = Settings(**{k: v for k, v in env.items() if k.startswith("SUPERCHECK_NAMESPACE_")}).fair_share
    assert (fair.default.running, fair.default.queued, fair.default.max_priority,
            fair.default.max_timeout_seconds) == (2, 5, 100, 3600)
    team_a = fair.of("team-a")
    assert (team_a.running, team_a.queued, team_a.max_priority) == (4, None, 100)  # null lifts the limit


@pytest.mark.integration
def test_chart_exposes_the_api_service_and_optionally_an_ingress(helm):
    """The live run streams (docs/api.md): a Service port, the operator's port setting, an optional Ingress."""
    objects = [o for o in yaml.safe_load_all(render(helm)) if o]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SUPERCHECK_API_PORT"] == "18082"
    assert {"name": "api", "containerPort": 18082} in container["ports"]
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "sc-supercheck-api")
    assert service["spec"]["ports"] == [{"name": "api", "port": 18082, "targetPort": "api"}]
    assert not [o for o in objects if o["kind"] == "Ingress"]

    objects = [o for o in yaml.safe_load_all(render(
        helm, "--set", "api.ingress.enabled=true", "--set", "api.ingress.host=checks.example.com",
        "--set", "api.ingress.className=nginx", "--set", "api.ingress.tls[0].secretName=api-tls",
        "--set", "api.ingress.tls[0].hosts[0]=checks.example.com")) if o]
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "api-tls", "hosts": ["checks.example.com"]}]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "checks.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "sc-supercheck-api", "port": {"name": "api"}}

    objects = [o for o in yaml.safe_load_all(render(helm, "--set", "api.enabled=false",
                                                    "--set", "api.ingress.enabled=true")) if o]
    assert not [o for o in objects if o["kind"] == "Ingress" or o["metadata"]["name"] == "sc-supercheck-api"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SUPERCHECK_API_PORT"] == "0"
    role = next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "sc-supercheck")
    assert not [r for r in role["rules"] if "tokenreviews" in r["resources"]]
