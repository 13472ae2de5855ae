"""The issue's first attack, end to end on the local control plane: a run in namespace A takes
what its pod holds (its own upload grant; there is no shared key to read) and tries to overwrite
and read namespace B's artifacts. The S3 server (SeaweedFS, which checks POST policies) refuses;
the script's own prefix still takes its writes, so a refusal is not just a broken grant.

The attacker is a k6 script: it reads its grant where the pod mounts it (UPLOAD_GRANT_PATH) and posts forms by hand,
as a hostile script would. Its checks decide its verdict: it passes only if every attack failed
and its own write worked."""

from __future__ import annotations

import json
import uuid

import pytest

from supercheck_contract import UPLOAD_GRANT_PATH
from tests.operator.operator_kit import QUICK_K6, create, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

ATTACK_K6 = """
import http from 'k6/http';
import { check } from 'k6';

export const options = { vus: 1, iterations: 1, thresholds: { checks: ['rate==1'] } };
const grant = JSON.parse(open("GRANT_PATH"));

function post(key, body) {
  const form = Object.assign({}, grant.fields);
  form.key = key;
  form['Content-Type'] = 'application/json';
  form.file = http.file(body, 'result.json', 'application/json');
  return http.post(grant.url, form);
}

export default function () {
  const base = grant.url.replace(/\\/$/, '');
  const mine = post(grant.prefix + '/mine.json', '{"mine": true}');
  const overwrite = post(__ENV.VICTIM_PREFIX + '/result.json', '{"exitCode": 0, "forged": true}');
  const read = http.get(base + '/' + __ENV.VICTIM_PREFIX + '/result.json');
  const list = http.get(base + '?list-type=2&prefix=' + encodeURIComponent(__ENV.VICTIM_PREFIX));
  console.log(`statuses: own=${mine.status} overwrite=${overwrite.status} read=${read.status} list=${list.status}`);
  check(mine, { 'own prefix takes the write': (r) => r.status >= 200 && r.status < 300 });
  check(overwrite, { "B's result.json cannot be overwritten": (r) => r.status === 403 });
  check(read, { "B's result.json cannot be read": (r) => r.status === 403 });
  check(list, { "B's prefix cannot be listed": (r) => r.status === 403 });
}
""".replace("GRANT_PATH", UPLOAD_GRANT_PATH)


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start()
    return operator_ctl


@pytest.fixture
def victim_namespace(core_v1):
    from kubernetes import client

    name = f"t-victim-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core_v1.delete_namespace(name)


def ended(custom_objects, namespace: str, name: str) -> dict:
    return wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and
                    phase(r) in {"Passed", "Failed", "Error"} and r, 180, what=f"{namespace}/{name} ends")


def test_a_run_cannot_overwrite_read_or_list_another_namespaces_artifacts(operator, namespace, victim_namespace,
                                                                          custom_objects, s3_client):
    create(custom_objects, victim_namespace, make_run("victim", QUICK_K6))
    victim = ended(custom_objects, victim_namespace, "victim")["status"]
    assert victim["phase"] == "Passed", victim
    bucket, victim_prefix = victim["artifacts"]["bucket"], victim["artifacts"]["prefix"]
    before = s3_client.get_object(Bucket=bucket, Key=f"{victim_prefix}/result.json")["Body"].read()

    create(custom_objects, namespace, make_run("attacker", ATTACK_K6,
                                               env=[{"name": "VICTIM_PREFIX", "value": victim_prefix}]))
    attacker = ended(custom_objects, namespace, "attacker")["status"]
    console = s3_client.get_object(Bucket=attacker["artifacts"]["bucket"],
                                   Key=f"{attacker['artifacts']['prefix']}/console.log")["Body"].read().decode()
    statuses = next((line for line in console.splitlines() if "statuses:" in line), console[-2000:])
    # Passed: every check held — the attacks were refused (403) and the own write went through.
    assert attacker["phase"] == "Passed", (attacker, statuses)
    assert "own=204" in statuses or "own=200" in statuses or "own=201" in statuses, statuses
    own = s3_client.get_object(Bucket=bucket, Key=f"{attacker['artifacts']['prefix']}/mine.json")["Body"].read()
    assert json.loads(own) == {"mine": True}
    # B's result is what B's runner wrote.
    after = s3_client.get_object(Bucket=bucket, Key=f"{victim_prefix}/result.json")["Body"].read()
    assert after == before and b"forged" not in after
