"""The chart's RBAC grants the operator exactly what its code does, and the people of a namespace
what they need for TestRuns and JobRuns, checked offline on `helm template` output with the RBAC
authorizer's rule matching (tests/security/rbac_kit.py). tests/security/test_rbac.py asks the
real API server the same questions with `kubectl auth can-i`."""

from __future__ import annotations

import subprocess

import pytest

from supercheck_localenv.layout import REPO_ROOT
from tests.security.rbac_kit import (
    CLIENT_CALLS,
    MUST_NOT,
    SC,
    Authorizer,
    Request,
    Subject,
    client_calls_in_source,
    operator_needs,
)

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "supercheck"
PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()
OPERATOR = Subject.service_account("supercheck-system", "sc-supercheck")
# Called by the per-pod upload Secrets of the s3-grants work (the operator deletes each with its
# attempt); granted here ahead of that code.
CALLED_SOON = {"delete_namespaced_secret"}


def rbac(helm: str, *args: str) -> Authorizer:
    res = subprocess.run([helm, "template", "sc", str(CHART), "--namespace", "supercheck-system",
                          "--kube-version", PINNED, "--show-only", "templates/rbac.yaml", *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return Authorizer.from_yaml(res.stdout)


def test_every_client_call_is_in_the_table_and_every_entry_is_called():
    """The table is the code: a new Kubernetes call needs its row (and its grant), a removed one loses it."""
    called = client_calls_in_source()
    assert called - CLIENT_CALLS.keys() == set(), "add these calls to rbac_kit.CLIENT_CALLS and to the chart"
    assert CLIENT_CALLS.keys() - called - CALLED_SOON == set(), "no code calls these any more: drop their grants"


def test_cluster_wide_operator_may_do_what_it_does_and_nothing_it_must_not(helm):
    authz = rbac(helm)
    for ns in ("team-a", "somewhere-else"):
        denied = [str(r) for r in operator_needs(namespaced=False, run_namespace=ns) if not authz.allows(OPERATOR, r)]
        assert denied == []
    allowed = [str(r.at("team-a")) for r in MUST_NOT if authz.allows(OPERATOR, r.at("team-a"))]
    assert allowed == []
    # No peering or namespace rights it does not use in this mode.
    assert not authz.allows(OPERATOR, Request("list", "", "namespaces", None))
    assert not authz.allows(OPERATOR, Request("create", "kopf.dev", "kopfpeerings", "team-a"))


def test_namespaced_operator_has_rights_only_in_its_namespaces(helm):
    authz = rbac(helm, "--set", "watchNamespaces={team-a,team-b}")
    for ns in ("team-a", "team-b"):
        denied = [str(r) for r in operator_needs(namespaced=True, run_namespace=ns) if not authz.allows(OPERATOR, r)]
        assert denied == []
    for ns in ("kube-system", "supercheck-system", "team-c"):
        for req in (Request("get", "", "secrets", ns, "any"), Request("create", "", "pods", ns),
                    Request("get", "", "pods/log", ns, "p"), Request("list", SC, "testruns", ns),
                    Request("create", "networking.k8s.io", "networkpolicies", ns)):
            assert not authz.allows(OPERATOR, req), f"{req} is allowed outside watchNamespaces"
    # Nothing across all namespaces but the CRDs and the namespaces' names.
    for req in (Request("list", "", "pods", None), Request("list", SC, "testruns", None),
                Request("get", "", "secrets", None, "any"), Request("create", "kopf.dev", "clusterkopfpeerings", None)):
        assert not authz.allows(OPERATOR, req), f"{req} is allowed cluster-wide"
    allowed = [str(r.at("team-a")) for r in MUST_NOT if authz.allows(OPERATOR, r.at("team-a"))]
    assert allowed == []


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={team-a}"]], ids=["cluster-wide", "namespaced"])
def test_no_grant_that_no_call_uses(helm, values):
    """Least privilege both ways: each (verb, resource, name) the chart grants the operator is one it uses."""
    authz = rbac(helm, *values)
    namespaced = bool(values)
    needs = operator_needs(namespaced=namespaced, run_namespace="team-a")
    ns = "team-a" if namespaced else None
    for rule in authz.rules_for(OPERATOR, ns) + (authz.rules_for(OPERATOR, None) if namespaced else []):
        for verb in rule["verbs"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    used = [r for r in needs if (r.verb, r.group, r.resource) == (verb, group, resource)
                            and (not rule.get("resourceNames") or r.name in rule["resourceNames"])]
                    assert used, f"{verb} {resource}.{group} {rule.get('resourceNames', '')} is granted, never used"


def test_namespace_edit_and_admin_users_run_tests_and_view_users_read_them(helm):
    objects = rbac(helm).objects + [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{who}-{role}", "namespace": "team-a"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "User", "name": who}]}
        for who, role in (("alice", "edit"), ("bob", "view"), ("carol", "admin"))]
    authz = Authorizer(objects)
    alice, bob, carol = Subject("alice"), Subject("bob"), Subject("carol")
    for kind in ("testruns", "jobruns"):
        for who in (alice, carol):
            for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
                assert authz.allows(who, Request(verb, SC, kind, "team-a")), (who, verb, kind)
            assert authz.allows(who, Request("get", SC, f"{kind}/status", "team-a", "r"))
            assert not authz.allows(who, Request("create", SC, kind, "team-b"))
            # The status is the operator's: a user cannot write a run's outcome.
            assert not authz.allows(who, Request("patch", SC, f"{kind}/status", "team-a", "r"))
        for verb in ("get", "list", "watch"):
            assert authz.allows(bob, Request(verb, SC, kind, "team-a"))
        for verb in ("create", "update", "patch", "delete"):
            assert not authz.allows(bob, Request(verb, SC, kind, "team-a"))
        assert not authz.allows(bob, Request("get", SC, kind, "team-b", "r"))


def test_aggregation_can_be_turned_off(helm):
    authz = rbac(helm, "--set", "rbac.aggregateToDefaultRoles=false")
    assert set(authz.cluster_roles) == {"sc-supercheck", "admin", "edit", "view"}


def test_no_network_policy_rights_without_the_policy(helm):
    policy = Request("create", "networking.k8s.io", "networkpolicies", "team-a")
    assert rbac(helm).allows(OPERATOR, policy)
    assert not rbac(helm, "--set", "runner.networkPolicy.enabled=false").allows(OPERATOR, policy)
