"""The ground: a real control plane of the pinned release, idempotent dev-up, schema validation."""

from __future__ import annotations

import json
import textwrap
import uuid

from supercheck_localenv import cli
from supercheck_localenv.layout import NODE_NAME, REPO_ROOT
from supercheck_localenv.procs import Proc

PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()
CONTRACT_ENV = (
    "KUBECONFIG",
    "REDIS_URL",
    "DATABASE_URL",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SUPERCHECK_METRICS_URL",
    "SUPERCHECK_API_URL",
)


def test_kubectl_version_shows_the_pinned_release(kubectl):
    res = kubectl("version", "-o", "json", check=True)
    versions = json.loads(res.stdout)
    assert versions["serverVersion"]["gitVersion"] == PINNED
    assert versions["clientVersion"]["gitVersion"] == PINNED
    assert versions["serverVersion"]["minor"] == PINNED.split(".")[1]


def test_node_is_ready(kubectl):
    res = kubectl("get", "nodes", "-o", "json", check=True)
    nodes = {n["metadata"]["name"]: n for n in json.loads(res.stdout)["items"]}
    assert NODE_NAME in nodes
    ready = {c["type"]: c["status"] for c in nodes[NODE_NAME]["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert nodes[NODE_NAME]["status"]["allocatable"]["cpu"] == cli.NODE_RESOURCES["cpu"]


def test_env_file_has_the_contract_variables(kube_env):
    for name in CONTRACT_ENV:
        assert kube_env.env.get(name), f"{name} missing from .dev/env"


def test_dev_up_is_idempotent(kube_env):
    before = {name: Proc(kube_env.layout, name).pid for name in cli.COMPONENTS}
    cli.up(kube_env.layout, {})
    after = {name: Proc(kube_env.layout, name).pid for name in cli.COMPONENTS}
    assert before == after
    assert all(after[name] for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"))


def test_crd_schema_refuses_invalid_object_with_api_server_message(kubectl):
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = textwrap.dedent(
        f"""
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: widgets.{group}
        spec:
          group: {group}
          scope: Namespaced
          names: {{plural: widgets, singular: widget, kind: Widget}}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec:
                    type: object
                    required: [size]
                    properties:
                      size: {{type: integer, minimum: 1, maximum: 10}}
                      colour: {{type: string, enum: [red, blue]}}
        """
    )
    kubectl("apply", "-f", "-", input=crd, check=True)
    try:
        kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s", check=True)
        bad = (f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w, namespace: default}}\n"
               "spec: {size: 50, colour: green}\n")
        res = kubectl("apply", "-f", "-", input=bad)
        assert res.returncode != 0
        assert "spec.size: Invalid value: 50: spec.size in body should be less than or equal to 10" in res.stderr
        assert 'spec.colour: Unsupported value: "green"' in res.stderr
        good = bad.replace("size: 50, colour: green", "size: 5, colour: red")
        assert kubectl("apply", "-f", "-", input=good).returncode == 0
    finally:
        kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_namespace_fixture_gives_a_service_account(namespace, core_v1):
    assert core_v1.read_namespaced_service_account("default", namespace).metadata.name == "default"
