"""What the operator does on the API server, and an RBAC authorizer over rendered chart objects.

``CLIENT_CALLS`` maps every Kubernetes client method the operator's code calls to the request it
makes; ``KOPF_NEEDS`` lists what Kopf itself does (watches, patches, Events, peering). Together they
are the operator's needs; ``MUST_NOT`` lists what it must not be able to do. The chart's RBAC is
checked against both: offline by :class:`Authorizer` (the RBAC authorizer's rule matching, for
``helm template`` output: tests/security/test_chart_rbac.py) and on the real API server with
``kubectl auth can-i`` (tests/security/test_rbac.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OPERATOR_SOURCE = Path(__file__).resolve().parents[2] / "operator" / "supercheck"
RUNNER_S3_SECRET = "supercheck-runner-s3"
RUNNER_POLICY = "supercheck-runner-egress"


@dataclass(frozen=True)
class Request:
    """One API request as the authorizer sees it. ``namespace`` None: cluster-scoped, or a
    namespaced resource across all namespaces. ``name``: the object named (get/update/delete)."""

    verb: str
    group: str
    resource: str  # "pods", or "pods/log" for a subresource
    namespace: str | None = "RUN_NS"
    name: str | None = None

    def at(self, namespace: str | None) -> Request:
        return Request(self.verb, self.group, self.resource, None if self.namespace is None else namespace,
                       self.name)

    def can_i_args(self) -> list[str]:
        """The request as `kubectl auth can-i` arguments (a subresource is asked for as such)."""
        resource, _, sub = self.resource.partition("/")
        target = f"{resource}.{self.group}" if self.group else resource
        if self.name:
            target += f"/{self.name}"
        args = [self.verb, target]
        if sub:
            args.append(f"--subresource={sub}")
        args += ["-n", self.namespace] if self.namespace else ["--all-namespaces"]
        return args

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {self.resource}.{self.group or 'core'}{'/' + self.name if self.name else ''}{where}"


SC = "supercheck.io"

# Every client method the operator calls (supercheck/kube.py, operator_main.py, apiauth.py) and the
# requests it makes; "RUN_NS" is a namespace where runs live. A new call fails
# test_every_client_call_is_in_the_table until it is added here (and the chart grants it).
CLIENT_CALLS: dict[str, list[Request]] = {
    "get_namespaced_custom_object": [Request("get", SC, "testruns", name="r"), Request("get", SC, "jobruns", name="r"),
                                     Request("get", SC, "runschedules", name="s")],
    "list_cluster_custom_object": [Request("list", SC, "testruns", None), Request("list", SC, "jobruns", None)],
    "list_namespaced_custom_object": [Request("list", SC, "testruns"), Request("list", SC, "jobruns")],
    "patch_namespaced_custom_object_status": [Request("patch", SC, "testruns/status", name="r"),
                                              Request("patch", SC, "jobruns/status", name="r"),
                                              Request("patch", SC, "runschedules/status", name="s"),
                                              Request("patch", SC, "monitors/status", name="m")],
    "delete_namespaced_custom_object": [Request("delete", SC, "testruns", name="r"),
                                        Request("delete", SC, "jobruns", name="r")],
    "create_namespaced_pod": [Request("create", "", "pods")],
    "create_namespaced_config_map": [Request("create", "", "configmaps")],
    "create_namespaced_secret": [Request("create", "", "secrets")],
    "create_namespaced_network_policy": [Request("create", "networking.k8s.io", "networkpolicies")],
    "read_namespaced_pod": [Request("get", "", "pods", name="p")],
    "read_namespaced_config_map": [Request("get", "", "configmaps", name="c")],
    "read_namespaced_secret": [Request("get", "", "secrets", name="s")],
    "replace_namespaced_secret": [Request("update", "", "secrets", name=RUNNER_S3_SECRET)],
    "delete_namespaced_secret": [Request("delete", "", "secrets", name="s")],
    "read_namespaced_network_policy": [Request("get", "networking.k8s.io", "networkpolicies", name=RUNNER_POLICY)],
    "replace_namespaced_network_policy": [Request("update", "networking.k8s.io", "networkpolicies",
                                                  name=RUNNER_POLICY)],
    "delete_namespaced_pod": [Request("delete", "", "pods", name="p")],
    "list_pod_for_all_namespaces": [Request("list", "", "pods", None)],
    "list_namespaced_pod": [Request("list", "", "pods")],
    "read_namespaced_pod_log": [Request("get", "", "pods/log", name="p")],
    "create_cluster_custom_object": [Request("create", "kopf.dev", "clusterkopfpeerings", None)],
    # A RunSchedule's runs and a synthetic Monitor's TestRuns (the peering object of a namespace: KOPF_NAMESPACED)
    "create_namespaced_custom_object": [Request("create", SC, "testruns"), Request("create", SC, "jobruns")],
    # The live run streams (supercheck/apiauth.py): a client's bearer token reviewed, then its watch right
    "create_token_review": [Request("create", "authentication.k8s.io", "tokenreviews", None)],
    "create_subject_access_review": [Request("create", "authorization.k8s.io", "subjectaccessreviews", None)],
}

# Calls made only in one mode: cluster-wide (all namespaces, cluster peering) or namespaced.
CLUSTER_WIDE_ONLY = {"list_cluster_custom_object", "list_pod_for_all_namespaces", "create_cluster_custom_object"}
NAMESPACED_ONLY = {"list_namespaced_pod"}

# What Kopf does by itself: watch the runs and the runner pods (list + watch), patch the runs
# (finalizer, its annotations), post Events, scan CRDs, peer.
KINDS = ("testruns", "jobruns", "runschedules", "monitors")
KOPF_NEEDS: list[Request] = [
    *(Request(v, SC, r) for v in ("list", "watch") for r in KINDS),
    *(Request("patch", SC, r, name="r") for r in KINDS),
    Request("list", "", "pods"), Request("watch", "", "pods"),
    Request("create", "", "events"),
    Request("list", "apiextensions.k8s.io", "customresourcedefinitions", None),
    Request("watch", "apiextensions.k8s.io", "customresourcedefinitions", None),
    # blockOwnerDeletion on the pods' and ConfigMaps' ownerReferences (OwnerReferencesPermissionEnforcement)
    *(Request("update", SC, f"{r}/finalizers", name="r") for r in KINDS),
]
KOPF_CLUSTER_WIDE = [
    *(Request(v, SC, r, None) for v in ("list", "watch") for r in KINDS),
    Request("list", "", "pods", None), Request("watch", "", "pods", None),
    Request("patch", "kopf.dev", "clusterkopfpeerings", None, "supercheck"),
    *(Request(v, "kopf.dev", "clusterkopfpeerings", None) for v in ("list", "watch")),
]
KOPF_NAMESPACED = [
    Request("create", "kopf.dev", "kopfpeerings"),  # made by the operator (ensure_peering) for Kopf
    Request("patch", "kopf.dev", "kopfpeerings", name="supercheck"),
    *(Request(v, "kopf.dev", "kopfpeerings") for v in ("list", "watch")),
    Request("list", "", "namespaces", None), Request("watch", "", "namespaces", None),
]

# Never, in any mode.
MUST_NOT: list[Request] = [
    Request("list", "", "secrets"), Request("watch", "", "secrets"), Request("list", "", "secrets", None),
    Request("update", "", "secrets", name="someone-elses"), Request("patch", "", "secrets", name="s"),
    Request("update", "networking.k8s.io", "networkpolicies", name="a-tenants-policy"),
    Request("delete", "networking.k8s.io", "networkpolicies", name=RUNNER_POLICY),
    Request("create", "", "pods/exec", name="p"),
    Request("patch", "", "pods", name="p"), Request("update", "", "pods", name="p"),
    Request("create", "", "serviceaccounts/token", name="default"),
    Request("create", "rbac.authorization.k8s.io", "rolebindings"),
    Request("escalate", "rbac.authorization.k8s.io", "clusterroles", None),
    Request("delete", "", "nodes", None, "n"),
    Request("update", SC, "testruns", name="r"),  # a user's run is never rewritten, only its status
    Request("deletecollection", SC, "testruns"),
    Request("delete", "apiextensions.k8s.io", "customresourcedefinitions", None, "testruns.supercheck.io"),
    Request("list", "events.k8s.io", "events"),
]


def client_calls_in_source() -> set[str]:
    """The Kubernetes client methods the operator's code calls (``self.core.read_namespaced_pod``...)."""
    found: set[str] = set()
    for path in OPERATOR_SOURCE.rglob("*.py"):
        text = path.read_text()
        # A client method is verb_object (create_token_review): "docs/api.md" in a docstring is not one.
        found |= set(re.findall(r"\b(?:self\.(?:core|custom|networking)|api)\.([a-z]+_[a-z_]+)\b", text))
    return found


def operator_needs(namespaced: bool, run_namespace: str) -> list[Request]:
    """Every request the operator makes, in one mode, with RUN_NS set to a namespace it serves."""
    skip = CLUSTER_WIDE_ONLY if namespaced else NAMESPACED_ONLY
    calls = [r for name, reqs in CLIENT_CALLS.items() if name not in skip for r in reqs]
    mode = KOPF_NAMESPACED if namespaced else KOPF_CLUSTER_WIDE
    return [r.at(run_namespace) for r in [*calls, *KOPF_NEEDS, *mode]]


# ---------------------------------------------------------------- the authorizer


@dataclass(frozen=True)
class Subject:
    user: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Subject:
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


# The built-in roles' aggregation selectors (their own base rules are left out: only what the
# chart adds is checked).
BUILTIN_AGGREGATING = {
    "admin": "rbac.authorization.k8s.io/aggregate-to-admin",
    "edit": "rbac.authorization.k8s.io/aggregate-to-edit",
    "view": "rbac.authorization.k8s.io/aggregate-to-view",
}


def _matches(rule: dict[str, Any], req: Request) -> bool:
    def has(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in values or value in values)  # type: ignore[operator]

    resource, _, sub = req.resource.partition("/")
    resources = rule.get("resources") or []
    resource_ok = "*" in resources or req.resource in resources or (sub and f"{resource}/*" in resources) \
        or (sub and f"*/{sub}" in resources)
    names = rule.get("resourceNames") or []
    return (has(rule.get("verbs"), req.verb) and has(rule.get("apiGroups"), req.group) and bool(resource_ok)
            and (not names or req.name in names))


class Authorizer:
    """Kubernetes' RBAC authorizer over a set of objects (ClusterRoles with aggregation, Roles, and
    their bindings): ``allows(subject, request)`` is what `kubectl auth can-i` would answer."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = [o for o in objects if o and o.get("apiVersion") == "rbac.authorization.k8s.io/v1"]
        self.cluster_roles = {o["metadata"]["name"]: o for o in self.objects if o["kind"] == "ClusterRole"}
        for name, label in BUILTIN_AGGREGATING.items():
            self.cluster_roles.setdefault(name, {"kind": "ClusterRole", "metadata": {"name": name}, "rules": [],
                                                 "aggregationRule": {"clusterRoleSelectors": [
                                                     {"matchLabels": {label: "true"}}]}})

    @classmethod
    def from_yaml(cls, text: str) -> Authorizer:
        return cls([d for d in yaml.safe_load_all(text) if d])

    def _cluster_role_rules(self, name: str) -> list[dict[str, Any]]:
        role = self.cluster_roles.get(name)
        if role is None:
            return []
        rules = list(role.get("rules") or [])
        for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
            want = selector.get("matchLabels") or {}
            for other in self.cluster_roles.values():
                labels = other["metadata"].get("labels") or {}
                if other is not role and all(labels.get(k) == v for k, v in want.items()):
                    rules += other.get("rules") or []
        return rules

    @staticmethod
    def _binds(binding: dict[str, Any], who: Subject) -> bool:
        for s in binding.get("subjects") or []:
            if s["kind"] == "ServiceAccount" and who.user == f"system:serviceaccount:{s['namespace']}:{s['name']}":
                return True
            if s["kind"] == "User" and s["name"] == who.user:
                return True
            if s["kind"] == "Group" and s["name"] in who.groups:
                return True
        return False

    def rules_for(self, who: Subject, namespace: str | None) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for b in self.objects:
            if not self._binds(b, who):
                continue
            ref = b["roleRef"]
            if b["kind"] == "ClusterRoleBinding":
                rules += self._cluster_role_rules(ref["name"])
            elif b["kind"] == "RoleBinding" and namespace is not None and b["metadata"].get("namespace") == namespace:
                if ref["kind"] == "ClusterRole":
                    rules += self._cluster_role_rules(ref["name"])
                else:
                    role = next((o for o in self.objects if o["kind"] == "Role" and o["metadata"]["name"] == ref["name"]
                                 and o["metadata"].get("namespace") == namespace), None)
                    rules += (role or {}).get("rules") or []
        return rules

    def allows(self, who: Subject, req: Request) -> bool:
        return any(_matches(rule, req) for rule in self.rules_for(who, req.namespace))
