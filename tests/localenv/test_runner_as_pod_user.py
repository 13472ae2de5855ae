"""The operator's runner pod, started the way the node agent starts it, runs as its non-root user.

The pod comes from the operator's own ``runner_pod`` (runAsUser/runAsNonRoot/fsGroup,
readOnlyRootFilesystem, the emptyDir at /tmp, the script ConfigMap); the node agent's own
pieces turn it into a container (volumes with kubelet's ownership, env, identity, mounts,
cgroups) and its runtime starts it: real runner, real k6 and Node/Chromium, a real S3 server
(moto: this test is about the pod's user and files, not about S3's checks). What a real pod
of our image does, the local one must do too: start in the emptyDir, make its work dir,
find its interpreter and node_modules, run Chromium without its own sandbox (Playwright's
default, the same in a real pod), write its termination message, all as uid 1000.

No API server: ``make unit`` skips these (integration), ``pytest -m integration`` runs them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supercheck import grants, podspec
from supercheck.config import Settings
from supercheck.models import TestRunSpec
from supercheck.scriptfiles import layout
from supercheck_contract import decode_termination_message
from tests.runner.conftest import Site, moto_with_buckets

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

HARNESS = r"""
import asyncio, json, os, sys
from pathlib import Path
from supercheck_localenv.nodeagent.cgroups import CgroupManager, limits_from_resources
from supercheck_localenv.nodeagent.config import DEFAULT_INHERITED_ENV
from supercheck_localenv.nodeagent.containers import ContainerRuntime, LaunchRequest
from supercheck_localenv.nodeagent.envvars import (ObjectSnapshot, container_argv, container_env, inherited_env,
                                                   process_env)
from supercheck_localenv.nodeagent.identity import container_identity, fs_group, home_for
from supercheck_localenv.nodeagent.mounts import HostVolume, container_mounts
from supercheck_localenv.nodeagent.proctree import become_subreaper
from supercheck_localenv.nodeagent.volumes import FileSet, materialize, render_volume
from supercheck_localenv.nodeagent import logformat

tmp, parent = Path(sys.argv[1]), sys.argv[2]
given = json.loads(sys.argv[3])
pod, configmap, secret, extra_env = given["pod"], given["configmap"], given["secret"], given["env"]
allocatable = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "10Gi"}

async def main():
    become_subreaper()
    rt = ContainerRuntime(tmp / "state", CgroupManager(parent), tuple(given["hide"]),
                          pid_namespaces=given["pid_namespaces"])
    rt.start_background()
    objects = ObjectSnapshot({configmap["metadata"]["name"]: configmap}, {secret["metadata"]["name"]: secret})
    volumes = {}
    for vol in pod["spec"]["volumes"]:  # as PodWorker._write_volumes does
        plan = render_volume(vol, pod, objects, {}, allocatable)
        path = materialize(plan, tmp / "volumes" / vol["name"], fs_group(pod))
        volumes[vol["name"]] = HostVolume(str(path), read_only=isinstance(plan, FileSet) and plan.read_only)
    spec = pod["spec"]["containers"][0]
    kube_env = container_env(pod, spec, objects, {}, allocatable)
    term = tmp / "termination-log"
    term.write_bytes(b""); term.chmod(0o666)
    identity = container_identity(pod, spec, switch_users=given["switch_users"])
    env = process_env(kube_env, inherited_env(os.environ, DEFAULT_INHERITED_ENV, os.path.dirname(sys.executable)),
                      pod["metadata"]["name"])
    if (home := home_for(identity, kube_env)) is not None:
        env["HOME"] = home
    env.update(extra_env)
    req = LaunchRequest(name="runner", argv=container_argv(spec, kube_env), env=env,
                        workdir=spec.get("workingDir") or "/",
                        mounts=container_mounts(spec, volumes, str(term), kube_env),
                        log_path=tmp / "runner.log", attempt_dir=tmp / "attempt", identity=identity,
                        cgroup_limits=limits_from_resources(spec.get("resources")), cgroup_name="runner")
    proc = await rt.start(req)
    start_error = await proc.started()
    info = await proc.wait()
    print(json.dumps({"start_error": start_error, "exit_code": info.exit_code, "oom": info.oom_killed,
                      "identity": [identity.uid, identity.gid, list(identity.groups)],
                      "termination": term.read_text(),
                      "log": [r.content.decode("utf-8", "replace") for r in logformat.read_records(req.log_path)]}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def moto():
    with moto_with_buckets() as endpoint:
        yield endpoint


@pytest.fixture
def node_secrets():
    """A stand-in for the local environment's .dev (its env file is 0644), outside /tmp (a runner
    pod's emptyDir covers /tmp, which would hide it anyway): the agent hides it with --hide."""
    dev = REPO / f".dev-test-{uuid.uuid4().hex[:8]}"
    dev.mkdir()
    (dev / "env").write_text("export AWS_SECRET_ACCESS_KEY=the-global-key\n")
    (dev / "env").chmod(0o644)
    yield dev
    for f in dev.iterdir():
        f.unlink()
    dev.rmdir()


def run_pod_as_the_agent(tmp_path: Path, parent: str, moto: str, spec: dict, switch_users: bool = True,
                         hide: tuple[str, ...] = (), pid_namespaces: bool = True) -> dict:
    settings = Settings(S3_ENDPOINT_URL=moto, RUNNER_UPLOAD_WINDOW_SECONDS=5, AWS_ACCESS_KEY_ID="runner-test",
                        AWS_SECRET_ACCESS_KEY="runner-test-secret")
    run = podspec.RunRef("team-a", f"as-user-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()), {})
    ts = TestRunSpec.model_validate(spec)
    pod = podspec.runner_pod(run, ts, 1, settings, podspec.resolve_resources(ts, settings))
    pod["metadata"]["uid"] = str(uuid.uuid4())
    configmap = podspec.script_configmap(run, ts, {f.key: ts.script.inline or "" for f in layout(ts, run.name).files})
    # The pod's own upload grant, as the operator mints and stores it (the node agent reads `data`).
    config = podspec.pod_runner_config(pod)
    secret = podspec.upload_secret(pod, grants.mint(settings, config.bucket, config.prefix,
                                                    podspec.grant_expiry(pod, datetime.now(UTC))))
    secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in secret.pop("stringData").items()}
    given = json.dumps({"pod": pod, "configmap": configmap, "secret": secret, "env": {}, "switch_users": switch_users,
                        "hide": list(hide), "pid_namespaces": pid_namespaces})
    res = subprocess.run([sys.executable, "-c", HARNESS, str(tmp_path), parent, given],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["pod"] = pod
    return out


def test_the_runner_pod_is_not_root_here_either():
    pod = podspec.runner_pod(podspec.RunRef("ns", "r", "u", {}), TestRunSpec.model_validate(
        {"type": "k6", "script": {"inline": "export default function () {}"}}), 1, Settings(),
        podspec.resolve_resources(TestRunSpec.model_validate(
            {"type": "k6", "script": {"inline": "export default function () {}"}}), Settings()))
    container = pod["spec"]["containers"][0]
    # It starts in the emptyDir's root (world-writable, fsGroup's), not in a folder the runtime would make as root.
    assert container["workingDir"] in [m["mountPath"] for m in container["volumeMounts"]]
    assert pod["spec"]["securityContext"]["runAsUser"] != 0


def test_a_k6_run_works_as_the_pods_user(tmp_path, cgroup_parent, moto):
    with Site() as site:
        script = ("import http from 'k6/http';\nimport { check } from 'k6';\n"
                  "export const options = { vus: 1, iterations: 3 };\n"
                  "export default function () {\n"
                  f"  check(http.get('{site.url}/'), {{ 'ok': r => r.status === 200 }});\n}}\n")
        out = run_pod_as_the_agent(tmp_path, cgroup_parent, moto,
                                   {"type": "k6", "script": {"inline": script}})
    assert out["identity"][0] == 1000
    assert out["start_error"] is None, out
    result = decode_termination_message(out["termination"])
    assert result is not None, out["log"][-30:]
    assert result.passed, (result, out["log"][-30:])
    assert out["exit_code"] == 0
    assert result.k6 is not None and result.k6.checksPassed == 3 and result.k6.checksFailed == 0
    assert result.artifacts is not None  # uploaded from the work dir it made as uid 1000


def test_a_playwright_run_with_chromium_works_as_the_pods_user(tmp_path, cgroup_parent, moto):
    if not (REPO / "runner-image" / "node_modules" / "@playwright" / "test").is_dir():
        pytest.skip("runner-image/node_modules is not installed (npm ci)")
    with Site() as site:
        script = ("import { test, expect } from '@playwright/test';\n"
                  "test('home', async ({ page }) => {\n"
                  f"  await page.goto('{site.url}/');\n"
                  "  await expect(page.locator('h1')).toHaveText('Welcome');\n"
                  "});\n")
        out = run_pod_as_the_agent(tmp_path, cgroup_parent, moto,
                                   {"type": "playwright", "script": {"inline": script}})
    assert out["identity"][0] == 1000
    result = decode_termination_message(out["termination"])
    assert result is not None, out["log"][-40:]
    assert result.passed, (result, out["log"][-40:])
    assert out["exit_code"] == 0
    assert result.summary is not None and result.summary.passed == 1
    assert not [line for line in out["log"] if "no ffmpeg" in line or "EACCES" in line or "ermission denied" in line]


# k6 is not among them: k6 reads files only through open(), and validation refuses any open() outside
# the suite (tests/security/test_node_limits.py shows that run ending `validation`).
@pytest.mark.parametrize("kind,pid_namespaces", [("playwright", True), ("playwright", False)])
def test_the_security_suites_escape_attempts_are_all_denied_here(tmp_path, cgroup_parent, moto, node_secrets, kind,
                                                                  pid_namespaces):
    """tests/security/test_node_limits.py's hostile scripts, in the pod as the agent runs it:
    every attempt is refused (the cluster test then shows the same through the operator). Without
    a PID namespace (--pid-namespace off) the node agent is on the script's parent chain, and its
    environment is refused by the user switch alone."""
    from tests.security.test_node_limits import ESCAPES_K6, ESCAPES_PLAYWRIGHT, with_node_secrets

    if kind == "playwright" and not (REPO / "runner-image" / "node_modules" / "@playwright" / "test").is_dir():
        pytest.skip("runner-image/node_modules is not installed (npm ci)")
    script = with_node_secrets(ESCAPES_K6 if kind == "k6" else ESCAPES_PLAYWRIGHT, str(node_secrets / "env"))
    spec = {"type": kind, "script": {"inline": script}}
    if kind == "playwright":
        spec["playwright"] = {"retries": 0, "workers": 1}
    out = run_pod_as_the_agent(tmp_path, cgroup_parent, moto, spec, hide=(str(node_secrets),),
                               pid_namespaces=pid_namespaces)
    result = decode_termination_message(out["termination"])
    assert result is not None, out["log"][-40:]
    assert result.passed, (result.message, "\n".join(out["log"]))
    if kind == "playwright":
        assert result.summary is not None and result.summary.passed == result.summary.total == 8


@pytest.mark.parametrize("kind", ["playwright"])
def test_the_same_suite_fails_where_the_agent_runs_containers_as_root(tmp_path, cgroup_parent, moto, node_secrets,
                                                                       kind):
    """The control: with the agent's escape hatch (--run-as root) the hostile suite gets through,
    so the test above shows the user switch at work, not a script that cannot fail."""
    from tests.security.test_node_limits import ESCAPES_K6, ESCAPES_PLAYWRIGHT, with_node_secrets

    if kind == "playwright" and not (REPO / "runner-image" / "node_modules" / "@playwright" / "test").is_dir():
        pytest.skip("runner-image/node_modules is not installed (npm ci)")
    script = with_node_secrets(ESCAPES_K6 if kind == "k6" else ESCAPES_PLAYWRIGHT, str(node_secrets / "env"))
    spec = {"type": kind, "script": {"inline": script}}
    if kind == "playwright":
        spec["playwright"] = {"retries": 0, "workers": 1}
    out = run_pod_as_the_agent(tmp_path, cgroup_parent, moto, spec, switch_users=False, hide=(str(node_secrets),))
    result = decode_termination_message(out["termination"])
    assert result is not None, out["log"][-40:]
    assert not result.passed
    if kind == "playwright":
        for failed in ("runs as the pod user", "another user", "the node's secrets"):
            assert failed in result.message, result.message
    else:
        assert result.k6 is not None and result.k6.checksFailed == 2, result.k6  # /etc/shadow, the node's secrets
