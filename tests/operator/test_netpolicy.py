"""The runner pods' NetworkPolicy (supercheck.netpolicy) and its upkeep per namespace
(supercheck.engine.isolation), without a cluster; tests/security/test_network_policy.py has the
API server accept it and select the real runner pods."""

from __future__ import annotations

import json

import pytest
from engine_kit import K6, run, world
from pydantic import ValidationError

from supercheck import netpolicy, podspec
from supercheck.config import Settings
from supercheck.engine.isolation import ensure_runner_network_policy
from supercheck.models import TestRunSpec

METADATA = "169.254.169.254/32"
SUT = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"port": 443}]}
S3 = {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]}


def policy(**env: str) -> dict:
    return netpolicy.runner_network_policy("team-a", Settings(**env))


def test_default_policy_denies_ingress_and_allows_only_dns_egress():
    p = policy()
    assert p["metadata"] == {"name": "supercheck-runner-egress", "namespace": "team-a",
                             "labels": {"app.kubernetes.io/managed-by": "supercheck"}}
    spec = p["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    [dns] = spec["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_policy_selects_the_labels_every_runner_pod_carries():
    spec = TestRunSpec.model_validate({**K6, "env": []})
    # A run's own labels cannot take these away (run_labels: ours win).
    ref = podspec.RunRef("team-a", "r", "uid-1", {"app.kubernetes.io/component": "not-a-runner"})
    labels = podspec.runner_pod(ref, spec, 1, Settings(), podspec.resolve_resources(spec, Settings()))[
        "metadata"]["labels"]
    selector = policy()["spec"]["podSelector"]["matchLabels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items())


def test_configured_rules_follow_dns_and_broad_blocks_lose_the_metadata_address():
    p = policy(RUNNER_EGRESS=json.dumps([S3, SUT]))
    dns, s3, sut = p["spec"]["egress"]
    assert s3 == S3  # a /32 elsewhere is left alone
    assert sut["to"][0]["ipBlock"] == {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", METADATA]}
    assert sut["ports"] == [{"port": 443}]


def test_a_rule_without_destinations_is_spelled_out_without_the_metadata_addresses():
    """Kubernetes reads a rule with no `to` as every destination: 169.254.169.254 included."""
    [_, anywhere] = policy(RUNNER_EGRESS='[{"ports": [{"port": 80}]}]')["spec"]["egress"]
    assert anywhere["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA]}},
                              {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}]


def test_a_block_inside_an_excluded_network_is_dropped_and_a_covered_one_not_repeated():
    rules = [{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}, {"podSelector": {}}]},
             {"to": [{"ipBlock": {"cidr": "169.254.0.0/16"}}]},
             {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]},
             {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]
    egress = policy(RUNNER_EGRESS=json.dumps(rules))["spec"]["egress"][1:]
    assert egress[0]["to"] == [{"podSelector": {}}]  # the metadata /32 itself is gone, the selector stays
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "169.254.0.0/16", "except": [METADATA]}}]
    assert egress[2]["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]
    assert len(egress) == 3  # the rule allowing only the metadata address is left out whole


def test_excluded_cidrs_and_dns_are_configurable():
    p = policy(RUNNER_EGRESS_EXCLUDED_CIDRS="169.254.0.0/16,10.96.0.0/12",
               RUNNER_DNS_EGRESS='[{"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}]}]',
               RUNNER_EGRESS=json.dumps([SUT]))
    egress = p["spec"]["egress"]
    assert len(egress) == 1  # node-local DNS inside the excluded link-local range is dropped: say what you mean
    assert egress[0]["to"][0]["ipBlock"]["except"] == ["10.0.0.0/8", "169.254.0.0/16"]


@pytest.mark.parametrize("bad", ['{"to": []}', '[{"to": [], "from": []}]', "[1]", "not json",
                                 '[{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]',
                                 '[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["ten"]}}]}]',
                                 '[{"to": [{"serviceSelector": {}}]}]', '[{"ports": [{"port": 80, "host": "x"}]}]'])
def test_egress_setting_refuses_what_is_not_a_list_of_egress_rules(bad):
    with pytest.raises((ValidationError, ValueError)):
        Settings(RUNNER_EGRESS=bad)


def test_excluded_cidrs_must_be_networks():
    with pytest.raises(ValidationError):
        Settings(RUNNER_EGRESS_EXCLUDED_CIDRS="169.254.169.254/32,metadata")


def test_stored_policy_with_server_defaults_is_current_and_a_loosened_one_is_not():
    want = policy(RUNNER_EGRESS=json.dumps([SUT]))
    stored = json.loads(json.dumps(want))
    del stored["spec"]["ingress"]  # the API server drops an empty list
    stored["spec"]["egress"][1]["ports"][0]["protocol"] = "TCP"  # and defaults a port's protocol
    assert netpolicy.is_current(stored, want)
    stored["spec"]["egress"][1]["to"][0]["ipBlock"].pop("except")
    assert not netpolicy.is_current(stored, want)


def test_the_engine_keeps_the_policy_before_the_first_runner_pod_of_a_namespace():
    w = world()

    async def go():
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        calls = w.kube.calls
        assert calls.index("create NetworkPolicy") < calls.index("create Pod")
        assert ("NetworkPolicy", "ns", "supercheck-runner-egress") in w.kube.objects
        # A second run in the namespace: the policy is known, not asked for again.
        w.kube.add_testrun("b", K6)
        await w.settle("b")
        assert w.kube.calls.count("create NetworkPolicy") == 1

    run(go)


def test_a_loosened_policy_is_put_back_and_a_current_one_left_alone():
    w = world(RUNNER_EGRESS=json.dumps([S3]))
    want = netpolicy.runner_network_policy("ns", w.eng.settings)

    async def go():
        loosened = json.loads(json.dumps(want))
        loosened["spec"]["egress"].append({})  # someone allowed everything
        w.kube.add(loosened)
        await ensure_runner_network_policy(w.eng, "ns")
        assert "replace NetworkPolicy" in w.kube.calls
        assert w.kube.objects[("NetworkPolicy", "ns", netpolicy.POLICY_NAME)]["spec"] == want["spec"]
        w.eng.network_policies.clear()  # a restarted operator
        w.kube.calls.clear()
        await ensure_runner_network_policy(w.eng, "ns")
        assert w.kube.calls == ["create NetworkPolicy", "get NetworkPolicy"]

    run(go)


def test_no_policy_when_it_is_turned_off():
    w = world(RUNNER_NETWORK_POLICY="false")

    async def go():
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        assert "create NetworkPolicy" not in w.kube.calls and w.pod_names() == ["a-a1"]

    run(go)
