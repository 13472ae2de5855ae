"""The chart's RBAC on the real API server of the local environment.

* `kubectl auth can-i` as the operator's ServiceAccount: yes for every request its code and Kopf
  make (tests/security/rbac_kit.py), no for what it must not do (list Secrets, read one in
  kube-system when it serves other namespaces, exec into pods...), in both modes; each answer is
  also compared with the offline authorizer the `helm template` tests use.
* The built-in `edit`/`admin`/`view` roles, bound in a namespace, gain the chart's TestRun and
  JobRun rules (kube-controller-manager's clusterrole-aggregation controller runs locally).
* The operator itself, started with a token of the chart's ServiceAccount instead of the admin
  kubeconfig, runs a TestRun to Passed: the granted rights are enough, not only as listed.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from supercheck_localenv.layout import REPO_ROOT
from tests.operator.operator_kit import create, get_run, make_run, phase, wait_for
from tests.security.rbac_kit import MUST_NOT, SC, Authorizer, Request, Subject, operator_needs

pytestmark = pytest.mark.cluster

CHART = REPO_ROOT / "charts" / "supercheck"
PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()


@pytest.fixture
def release(kubectl):
    """A release name of its own: the chart's cluster-scoped objects never clash between tests."""
    name = f"r{uuid.uuid4().hex[:8]}"
    yield name
    kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={name}",
            "--ignore-not-found")


@pytest.fixture
def other_namespace(kubectl):
    name = f"t-rbac-other-{uuid.uuid4().hex[:5]}"
    assert kubectl("create", "namespace", name).returncode == 0
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def apply_rbac(helm: str, kubectl, release: str, namespace: str, *values: str) -> str:
    res = subprocess.run([helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", PINNED,
                          "--show-only", "templates/rbac.yaml", "--show-only", "templates/serviceaccount.yaml",
                          *values], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # The release's objects get its namespace, as `helm install -n` gives them; the Roles of
    # namespaced mode already name theirs (a watched namespace).
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            d["metadata"].setdefault("namespace", namespace)
    applied = kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert applied.returncode == 0, applied.stderr
    return res.stdout


def can_i(kubectl, who: Subject, req: Request) -> bool:
    groups = [f"--as-group={g}" for g in who.groups]
    res = kubectl("auth", "can-i", *req.can_i_args(), f"--as={who.user}", *groups)
    answer = res.stdout.strip()
    assert answer in ("yes", "no"), f"{req}: {res.stdout} {res.stderr}"
    return answer == "yes"


def check(kubectl, authz: Authorizer, who: Subject, want: bool, requests: list[Request]) -> None:
    wrong = [str(r) for r in requests if can_i(kubectl, who, r) != want]
    assert wrong == [], f"{'denied' if want else 'allowed'} to {who.user}"
    # The offline authorizer of tests/security/test_chart_rbac.py answers as the API server does.
    assert [str(r) for r in requests if authz.allows(who, r) != want] == []


def test_cluster_wide_operator_rights(helm, kubectl, namespace, release):
    manifest = apply_rbac(helm, kubectl, release, namespace)
    authz = Authorizer.from_yaml(manifest)
    sa = Subject.service_account(namespace, f"{release}-supercheck")
    check(kubectl, authz, sa, True, operator_needs(namespaced=False, run_namespace=namespace))
    check(kubectl, authz, sa, False, [r.at(ns) for r in MUST_NOT for ns in (namespace, "kube-system")])


def test_namespaced_operator_rights_end_at_its_namespaces(helm, kubectl, namespace, other_namespace, release):
    manifest = apply_rbac(helm, kubectl, release, namespace, "--set", f"watchNamespaces={{{other_namespace}}}")
    authz = Authorizer.from_yaml(manifest)
    sa = Subject.service_account(namespace, f"{release}-supercheck")
    check(kubectl, authz, sa, True, operator_needs(namespaced=True, run_namespace=other_namespace))
    outside = [Request("get", "", "secrets", ns, "any") for ns in ("kube-system", namespace, "default")] + [
        Request("create", "", "pods", "kube-system"), Request("list", SC, "testruns", "default"),
        Request("list", "", "secrets", None), Request("get", "", "secrets", None, "any"),
        Request("list", "", "pods", None), Request("list", SC, "testruns", None),
        Request("create", "kopf.dev", "clusterkopfpeerings", None)]
    check(kubectl, authz, sa, False, outside + [r.at(other_namespace) for r in MUST_NOT])


def test_namespace_edit_admin_and_view_users_get_tests_through_aggregation(helm, kubectl, namespace, other_namespace,
                                                                           release):
    manifest = apply_rbac(helm, kubectl, release, namespace)
    bindings = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{role}-{name}", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}]}
        for role, kind, name in (("edit", "User", "alice"), ("admin", "User", "carol"), ("view", "Group", "viewers"))]
    res = kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(b) for b in bindings))
    assert res.returncode == 0, res.stderr
    alice, carol, bob = Subject("alice"), Subject("carol"), Subject("bob", ("viewers",))
    # The aggregation controller fills the built-in roles in a moment.
    wait_for(lambda: can_i(kubectl, alice, Request("create", SC, "testruns", namespace))
             and can_i(kubectl, bob, Request("list", SC, "jobruns", namespace)), 30, what="aggregated roles")
    for who in (alice, carol):
        for kind in ("testruns", "jobruns"):
            for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
                assert can_i(kubectl, who, Request(verb, SC, kind, namespace)), (who.user, verb, kind)
            assert can_i(kubectl, who, Request("get", SC, f"{kind}/status", namespace, "r"))
            assert not can_i(kubectl, who, Request("patch", SC, f"{kind}/status", namespace, "r"))
            assert not can_i(kubectl, who, Request("create", SC, kind, other_namespace))
    for kind in ("testruns", "jobruns"):
        for verb in ("get", "list", "watch"):
            assert can_i(kubectl, bob, Request(verb, SC, kind, namespace))
        for verb in ("create", "update", "patch", "delete"):
            assert not can_i(kubectl, bob, Request(verb, SC, kind, namespace))
        assert not can_i(kubectl, bob, Request("get", SC, kind, other_namespace, "r"))
    assert Authorizer.from_yaml(manifest).cluster_roles[f"{release}-supercheck-edit"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-edit"] == "true"


def service_account_kubeconfig(kubectl, tmp_path: Path, namespace: str, sa: str) -> Path:
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h")
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(kubectl("config", "view", "--raw", "--minify").stdout)
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa}}],
        "current-context": sa,
    }
    path = tmp_path / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_the_operator_runs_a_test_with_only_the_charts_rights(helm, kubectl, operator_ctl, namespace, release,
                                                               custom_objects, core_v1, tmp_path, mode):
    values = ["--set", f"watchNamespaces={{{namespace}}}"] if mode == "namespaced" else []
    apply_rbac(helm, kubectl, release, namespace, *values)
    sa = f"{release}-supercheck"
    config = {"KUBECONFIG": str(service_account_kubeconfig(kubectl, tmp_path, namespace, sa))}
    if mode == "namespaced":
        config["SUPERCHECK_NAMESPACES"] = namespace
    log_file = operator_ctl.proc.log_file
    start = log_file.stat().st_size if log_file.exists() else 0
    operator_ctl.start(**config)
    create(custom_objects, namespace, make_run("least"))
    run = wait_for(lambda: (r := get_run(custom_objects, namespace, "least")) and
                   phase(r) in {"Passed", "Failed", "Error"} and r, 180, what="least ended")
    assert phase(run) == "Passed", run.get("status")
    # Its runner pod had its NetworkPolicy, made with the same rights before the pod.
    res = kubectl("get", "networkpolicy", "supercheck-runner-egress", "-n", namespace, "-o", "json")
    assert res.returncode == 0, res.stderr
    selector = json.loads(res.stdout)["spec"]["podSelector"]["matchLabels"]
    labels = core_v1.read_namespaced_pod("least-a1", namespace).metadata.labels
    assert all(labels.get(k) == v for k, v in selector.items())
    with open(log_file, "rb") as f:
        f.seek(start)
        log = f.read().decode("utf-8", "replace")
    refused = [ln for ln in log.splitlines() if re.search(r"\b403\b|[Ff]orbidden", ln)]
    assert refused == [], "the operator was refused something it does"
    if mode == "namespaced":
        res = kubectl("get", "kopfpeerings.kopf.dev", "supercheck", "-n", namespace)
        assert res.returncode == 0, res.stderr
