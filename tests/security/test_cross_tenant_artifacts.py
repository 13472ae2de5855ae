"""The issue's first attack, end to end on the local control plane: what a runner pod holds is
its own upload grant (there is no shared key left to read), minted by the real operator. Taken by
a script that got past validation (validation is a lint: docs/security.md), it cannot overwrite,
read or list another namespace's artifacts on the real S3 server (SeaweedFS, which checks POST
policies), while its own prefix still takes its writes, so a refusal is not just a broken grant.

The test plays that script: while the attacker's run is at work it reads the grant the operator
mounted into the pod (the Secret `<pod>-upload`, as the pod sees it) and makes the requests a
hostile script would, with the form the runner itself posts."""

from __future__ import annotations

import base64
import uuid

import pytest
import urllib3
from kubernetes.client import ApiException

from supercheck_contract import UploadGrant
from tests.conftest import scratch_namespace
from tests.operator.operator_kit import QUICK_K6, SLEEPY_K6, create, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

http = urllib3.PoolManager()


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start()
    return operator_ctl


@pytest.fixture
def victim_namespace(namespace, core_v1):
    """Tenant B's namespace (after `namespace`, whose fixture cleans the services first)."""
    with scratch_namespace(core_v1, f"t-victim-{uuid.uuid4().hex[:5]}") as name:
        yield name


def ended(custom_objects, namespace: str, name: str) -> dict:
    return wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and
                    phase(r) in {"Passed", "Failed", "Error"} and r, 180, what=f"{namespace}/{name} ends")


def secret_grant(core_v1, namespace: str, name: str) -> UploadGrant | None:
    try:
        secret = core_v1.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return UploadGrant.model_validate_json(base64.b64decode(secret.data["grant.json"]))


def post(grant: UploadGrant, key: str, body: bytes) -> urllib3.BaseHTTPResponse:
    form: dict = {**grant.fields, "key": key, "Content-Type": "application/json"}
    form["file"] = ("result.json", body, "application/json")
    return http.request("POST", grant.url, fields=form)


def test_a_runs_grant_cannot_overwrite_read_or_list_another_namespaces_artifacts(operator, namespace,
                                                                                 victim_namespace, core_v1,
                                                                                 custom_objects, s3_client):
    create(custom_objects, victim_namespace, make_run("victim", QUICK_K6))
    victim = ended(custom_objects, victim_namespace, "victim")["status"]
    assert victim["phase"] == "Passed", victim
    bucket, victim_prefix = victim["artifacts"]["bucket"], victim["artifacts"]["prefix"]
    before = s3_client.get_object(Bucket=bucket, Key=f"{victim_prefix}/result.json")["Body"].read()

    create(custom_objects, namespace, make_run("attacker", SLEEPY_K6, env=[{"name": "SLEEP", "value": "20"}]))
    grant = wait_for(lambda: secret_grant(core_v1, namespace, "attacker-a1-upload"), 60,
                     what="the attacker pod's grant")
    assert not grant.reads and not grant.prefix.startswith(victim_namespace)

    forged = post(grant, f"{victim_prefix}/result.json", b'{"exitCode": 0, "forged": true}')
    assert forged.status == 403, (forged.status, forged.data[:500])
    base = grant.url.rstrip("/")
    read = http.request("GET", f"{base}/{victim_prefix}/result.json")
    assert read.status == 403, (read.status, read.data[:500])
    listing = http.request("GET", f"{base}?list-type=2&prefix={victim_prefix}")
    assert listing.status == 403, (listing.status, listing.data[:500])
    # The same grant takes a write under its own prefix: the refusals above are the policy's.
    own = post(grant, f"{grant.prefix}/mine.json", b'{"mine": true}')
    assert 200 <= own.status < 300, (own.status, own.data[:500])
    assert s3_client.get_object(Bucket=bucket, Key=f"{grant.prefix}/mine.json")["Body"].read() == b'{"mine": true}'

    assert ended(custom_objects, namespace, "attacker")["status"]["phase"] == "Passed"
    after = s3_client.get_object(Bucket=bucket, Key=f"{victim_prefix}/result.json")["Body"].read()
    assert after == before and b"forged" not in after
