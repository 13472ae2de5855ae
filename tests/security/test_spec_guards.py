"""What a spec may not set, against the real thing (docs/security.md, "What a spec may not set").

* The issue's attacks through the spec (the shared S3 key asked for by name, the allow-list widened
  by SUPERCHECK_ALLOWED_MODULES, code run first through NODE_OPTIONS, k6's REST API opened with
  --address) and the specs Pod validation refuses (which used to leave a run Pending, holding a
  slot) are refused by the real API server, as TestRun and as JobRun, with words that say what to
  fix. The table: tests/security/spec_guard_cases.py (the models and the generated schema are held
  to it by tests/operator/test_spec_guards.py).
* An envFrom source without a prefix whose keys include a reserved name ends the run before any pod.
* The runner refuses the k6 flags too, before k6 starts; the real k6 shows why: the run's
  ``--address`` after the runner's ``--address ""`` opens the REST API.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from supercheck.models import MSG_ENV_ONE_SOURCE
from supercheck_contract import FailureClass, RunnerConfig
from supercheck_contract.reserved import MSG_K6_ARG, MSG_OPERATOR_SECRET, MSG_RESERVED_ENV
from supercheck_runner import k6
from supercheck_runner.__main__ import RunLog, run_k6
from supercheck_runner.settings import RunnerSettings
from supercheck_runner.timer import Deadline
from tests.conftest import wait_until
from tests.operator.operator_kit import wait_ledger_zero
from tests.security.spec_guard_cases import (
    ACCEPTED,
    JOBRUN_REFUSED,
    K6_SCRIPT,
    REFUSED,
    make_jobrun,
    make_testrun,
)

GROUP, VERSION = "supercheck.io", "v1alpha1"
PLURALS = {"TestRun": "testruns", "JobRun": "jobruns"}


def dry_run_create(custom_objects, namespace: str, body: dict) -> str | None:
    """None when the API server would create the object; its message when it refuses it (422)."""
    try:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[body["kind"]], body,
                                                       dry_run="All")
    except ApiException as exc:
        if exc.status != 422:
            raise
        return str(json.loads(exc.body).get("message"))
    return None


# ---------------------------------------------------------------- the API server refuses them


@pytest.mark.cluster
def test_the_api_server_refuses_each_bad_spec_saying_what_to_fix(custom_objects, namespace):
    wrong = []
    for i, (case, fragment, words) in enumerate(REFUSED):
        for body in (make_testrun(f"bad-{i}", fragment), make_jobrun(f"bad-{i}", fragment)):
            message = dry_run_create(custom_objects, namespace, body)
            if message is None or words not in message:
                wrong.append((body["kind"], case, message))
    for i, (case, fragment, words) in enumerate(JOBRUN_REFUSED):
        message = dry_run_create(custom_objects, namespace, make_jobrun(f"git-{i}", fragment))
        if message is None or words not in message:
            wrong.append(("JobRun", case, message))
    assert not wrong, wrong


@pytest.mark.cluster
def test_the_api_server_accepts_the_neighbours(custom_objects, namespace):
    for i, (case, fragment) in enumerate(ACCEPTED):
        for body in (make_testrun(f"ok-{i}", fragment), make_jobrun(f"ok-{i}", fragment)):
            assert dry_run_create(custom_objects, namespace, body) is None, (body["kind"], case)


@pytest.mark.cluster
@pytest.mark.parametrize("fragment, words", [
    ({"env": [{"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "supercheck-runner-s3", "key": "AWS_SECRET_ACCESS_KEY"}}}]}, MSG_OPERATOR_SECRET),
    ({"env": [{"name": "SUPERCHECK_ALLOWED_MODULES", "value": "child_process,fs"}]}, MSG_RESERVED_ENV),
    ({"env": [{"name": "NODE_OPTIONS", "value": "--import=data:text/javascript,process.exit(0)"}]},
     MSG_RESERVED_ENV),
    ({"k6": {"args": ["--address", "0.0.0.0:6565"]}}, MSG_K6_ARG),
    ({"envFrom": [{"prefix": "X_"}]}, "set exactly one of secretRef or configMapRef"),
], ids=["shared-s3-key", "allow-list", "node-options", "k6-address", "envfrom-wedge"])
def test_kubectl_apply_of_the_issues_attacks_is_refused(kubectl, namespace, fragment, words):
    """As a user would send them: ``kubectl apply``, nothing created."""
    for body in (make_testrun("attack", fragment), make_jobrun("attack", fragment)):
        res = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        assert res.returncode != 0 and words in res.stderr, (body["kind"], res.stdout, res.stderr)
        gone = kubectl("get", "-n", namespace, PLURALS[body["kind"]], "attack")
        assert gone.returncode != 0 and "NotFound" in gone.stderr


@pytest.mark.cluster
def test_a_field_ref_pruned_by_the_api_server_is_refused_not_left_empty(custom_objects, namespace):
    """fieldRef is not in the schema: a client that does not ask for strict field validation has it
    pruned, which used to leave an empty valueFrom that every pod creation refused (422)."""
    field_ref = {"env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    for body in (make_testrun("fr", field_ref), make_jobrun("fr", field_ref)):
        message = dry_run_create(custom_objects, namespace, body)
        assert message is not None and MSG_ENV_ONE_SOURCE in message, (body["kind"], message)


# ---------------------------------------------------------------- an envFrom source's keys


@pytest.mark.cluster
def test_an_unprefixed_configmap_with_a_reserved_key_ends_the_run_before_any_pod(
        operator_ctl, namespace, core_v1, custom_objects, redis_client):
    operator_ctl.start(SUPERCHECK_SCRIPT_REF_GRACE_SECONDS="2")
    core_v1.create_namespaced_config_map(namespace, {
        "metadata": {"name": "shop-env"},
        "data": {"NODE_OPTIONS": "--import=data:text/javascript,console.log('first')", "BASE_URL": "http://x"}})
    for body in (make_testrun("keys", {"envFrom": [{"configMapRef": {"name": "shop-env"}}]}),
                 make_jobrun("keys", {"envFrom": [{"configMapRef": {"name": "shop-env"}}]})):
        plural = PLURALS[body["kind"]]
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

        def ended(plural=plural):
            run = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "keys")
            st = run.get("status") or {}
            return st if st.get("phase") in ("Error", "Rejected") else None

        st = wait_until(ended, 60, what=f"{body['kind']} keys ended")
        assert (st["phase"], st["reason"]) == ("Error", "InvalidSpec"), st
        assert "shop-env" in st["message"] and "(NODE_OPTIONS;" in st["message"], st
        assert "BASE_URL" not in st["message"]  # the other keys stay unsaid
    pods = core_v1.list_namespaced_pod(namespace).items
    assert pods == [], [p.metadata.name for p in pods]
    wait_ledger_zero(redis_client)  # no slot was ever held, or it was released at once


# ---------------------------------------------------------------- the runner refuses them too

SLEEPY = "import { sleep } from 'k6';\nexport const options = { vus: 1, iterations: 1 };\n" \
         "export default function () { sleep(20); }\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_k6s_address_after_the_runners_opens_the_rest_api(tmp_path):
    """The attack, with the real k6: pflag takes the last --address, so the run's own wins over the
    runner's ``--address ""`` and k6 serves its REST API (which can stop, pause or scale the test)."""
    port = _free_port()
    script = tmp_path / "sleepy.js"
    script.write_text(SLEEPY)
    out = tmp_path / "out"
    out.mkdir()
    cmd = k6.command(RunnerSettings().k6, script, out, [])
    cmd[-1:-1] = ["--address", f"127.0.0.1:{port}"]  # where the run's k6Args went, unchecked
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listens(port) or None, 30, what="k6's REST API listening")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as resp:
            assert resp.status == 200 and "running" in json.loads(resp.read())["data"]["attributes"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [["--address", "127.0.0.1:{port}"], ["-qa127.0.0.1:{port}"],
                                  ["--out", "csv={tmp}/all.csv"], ["--summary-export={tmp}/s.json"]])
def test_the_runner_refuses_them_before_k6_starts(tmp_path, args):
    port = _free_port()
    args = [a.format(port=port, tmp=tmp_path) for a in args]
    with pytest.raises(ValueError, match="spec.k6.args may not set"):
        k6.command(RunnerSettings().k6, tmp_path / "s.js", tmp_path / "out", args)
    script_dir = tmp_path / "script"
    script_dir.mkdir()
    (script_dir / "s.js").write_text(K6_SCRIPT)
    work, out = tmp_path / "work", tmp_path / "work" / "out"
    out.mkdir(parents=True)
    config = RunnerConfig(type="k6", scriptPath=str(script_dir / "s.js"), timeoutSeconds=30, runName="guard",
                          namespace="security", attempt=1, bucket="supercheck-k6", prefix="security/guard/u/attempt-1",
                          k6Args=args, workDir=str(work))
    started = time.monotonic()
    outcome = run_k6(config, RunnerSettings(), work, out, Deadline.after(30), threading.Event(),
                     RunLog(out / "console.log"))
    assert outcome.failure == FailureClass.VALIDATION
    assert outcome.message.startswith(MSG_K6_ARG) and repr(args[0]) in outcome.message
    assert time.monotonic() - started < 5 and not _listens(port)
    assert not (out / k6.SUMMARY_JSON).exists() and not list(tmp_path.glob("*.csv"))
    assert not Path(tmp_path / "s.json").exists()
