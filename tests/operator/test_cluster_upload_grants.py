"""Issue 10, item 1, on the local control plane with the real operator, runner, k6 and S3: each
runner pod gets a Secret of its own with its upload grant (no shared key in any namespace), the
run's artifacts arrive through it, and the Secret is gone once the pod has ended."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes.client import ApiException
from operator_kit import QUICK_K6, SLEEPY_K6, create, get_run, make_run, phase, wait_for

from supercheck_contract import UPLOAD_GRANT_ENV, UPLOAD_GRANT_PATH, UploadGrant

pytestmark = pytest.mark.cluster


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start()
    return operator_ctl


def secret_or_none(core_v1, namespace: str, name: str):
    try:
        return core_v1.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_runs_pod_uploads_through_its_own_grant_and_no_shared_key_is_copied(operator, namespace, core_v1,
                                                                              custom_objects, s3_client):
    create(custom_objects, namespace, make_run("granted", QUICK_K6))
    # The pod's Secret exists while it runs (it may be quick: read it as soon as the pod is there).
    pod = wait_for(lambda: _pod(core_v1, namespace, "granted-a1"), 60, what="granted-a1")
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env[UPLOAD_GRANT_ENV] == UPLOAD_GRANT_PATH
    assert not any(name.startswith("AWS_") for name in env) and "S3_ENDPOINT_URL" not in env
    volume = next(v for v in pod.spec.volumes if v.secret is not None)
    assert volume.secret.secret_name == "granted-a1-upload"
    run = wait_for(lambda: (r := get_run(custom_objects, namespace, "granted")) and
                   phase(r) in {"Passed", "Failed", "Error"} and r, 180, what="granted ends")
    st = run["status"]
    assert st["phase"] == "Passed", st
    prefix = st["artifacts"]["prefix"]
    listed = s3_client.list_objects_v2(Bucket=st["artifacts"]["bucket"], Prefix=prefix + "/")
    keys = {o["Key"][len(prefix) + 1:] for o in listed.get("Contents", [])}
    assert {"result.json", "console.log", "k6-summary.json"} <= keys, keys
    result = json.loads(s3_client.get_object(Bucket=st["artifacts"]["bucket"],
                                             Key=f"{prefix}/result.json")["Body"].read())
    assert result["notUploaded"] == []
    # Once the pod has ended its grant goes; no shared key was ever copied into the namespace.
    wait_for(lambda: secret_or_none(core_v1, namespace, "granted-a1-upload") is None, 30,
             what="the upload Secret deleted")
    assert secret_or_none(core_v1, namespace, "supercheck-runner-s3") is None
    names = [s.metadata.name for s in core_v1.list_namespaced_secret(namespace).items]
    assert not any(n.endswith("-upload") or n == "supercheck-runner-s3" for n in names), names


def test_the_grant_secret_is_owned_by_the_run_and_holds_a_grant_for_its_prefix_only(operator, namespace, core_v1,
                                                                                   custom_objects):
    create(custom_objects, namespace, make_run("owned", SLEEPY_K6, env=[{"name": "SLEEP", "value": "5"}]))
    secret = wait_for(lambda: secret_or_none(core_v1, namespace, "owned-a1-upload"), 60, what="owned-a1-upload")
    run = get_run(custom_objects, namespace, "owned")
    assert [(o.kind, o.uid) for o in secret.metadata.owner_references] == [("TestRun", run["metadata"]["uid"])]
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "supercheck"
    grant = UploadGrant.model_validate_json(base64.b64decode(secret.data["grant.json"]))
    assert grant.prefix == f"{namespace}/owned/{run['metadata']['uid']}/attempt-1"
    assert grant.reads == [] and grant.maxObjectBytes > 0


def _pod(core_v1, namespace: str, name: str):
    try:
        return core_v1.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
