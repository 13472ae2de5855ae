"""Runner pods' NetworkPolicy on the real API server (issue 10: runner pods reached Redis,
PostgreSQL and the cloud metadata address).

The local environment has no network plugin: the API server validates and stores NetworkPolicy,
nothing enforces it. So these tests check what can be checked here: the policy the operator keeps
is accepted by the API server as built (broad blocks with their `except`, IPv6, rules spelled out
from "anywhere"), exists in the run's namespace before the runner pod, denies all ingress, lets
egress out only by its rules, and selects the runner pods the operator starts. Enforcement is the
cluster's network plugin's (docs/security.md)."""

from __future__ import annotations

import json

import pytest

from supercheck.config import Settings
from supercheck.netpolicy import POLICY_NAME, runner_network_policy
from tests.operator.operator_kit import create, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

S3 = {"to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 19000}]}
INTERNET = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
            "ports": [{"protocol": "TCP", "port": 443}]}
ANY_HTTP = {"ports": [{"protocol": "TCP", "port": 80}]}
CLUSTER_APP = {"to": [{"namespaceSelector": {"matchLabels": {"team": "shop"}},
                       "podSelector": {"matchLabels": {"app": "web"}}}]}


def test_every_shape_of_rule_is_accepted_by_the_api_server(kubectl, namespace):
    cfg = Settings(RUNNER_EGRESS=json.dumps([S3, INTERNET, ANY_HTTP, CLUSTER_APP]),
                   RUNNER_EGRESS_EXCLUDED_CIDRS="169.254.169.254/32,fd00:ec2::254/128,10.96.0.0/12")
    policy = runner_network_policy(namespace, cfg)
    res = kubectl("apply", "--dry-run=server", "-f", "-", "-o", "json", input=json.dumps(policy))
    assert res.returncode == 0, res.stderr
    stored = json.loads(res.stdout)["spec"]
    blocks = [p["ipBlock"] for rule in stored["egress"] for p in rule.get("to", []) if "ipBlock" in p]
    assert {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]} in blocks  # 10.96/12 is inside 10/8
    assert {"cidr": "::/0", "except": ["fd00:ec2::254/128"]} in blocks
    assert not stored.get("ingress") and stored["policyTypes"] == ["Ingress", "Egress"]


def test_the_operator_keeps_the_policy_and_it_selects_the_runner_pod(operator_ctl, namespace, kubectl,
                                                                     custom_objects, core_v1):
    operator_ctl.start(RUNNER_EGRESS=json.dumps([S3, INTERNET]))
    create(custom_objects, namespace, make_run("fenced"))
    run = wait_for(lambda: (r := get_run(custom_objects, namespace, "fenced")) and
                   phase(r) in {"Passed", "Failed", "Error"} and r, 120, what="fenced ended")
    assert phase(run) == "Passed", run.get("status")

    res = kubectl("get", "networkpolicy", POLICY_NAME, "-n", namespace, "-o", "json")
    assert res.returncode == 0, res.stderr
    policy = json.loads(res.stdout)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and not spec.get("ingress")
    dns, s3, internet = spec["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert s3 == S3
    assert internet["to"][0]["ipBlock"]["except"] == ["10.0.0.0/8", "169.254.169.254/32"]
    # It was there before the pod: made first, and the pod is created after it.
    pod = core_v1.read_namespaced_pod("fenced-a1", namespace)
    assert policy["metadata"]["creationTimestamp"] <= pod.metadata.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Its selector, asked of the API server, finds the runner pod.
    selector = ",".join(f"{k}={v}" for k, v in spec["podSelector"]["matchLabels"].items())
    selected = kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "name").stdout.split()
    assert "pod/fenced-a1" in selected
