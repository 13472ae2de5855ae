"""The `supercheck` CLI against the local environment, as a CI step and as a person in a terminal
uses it: `run --wait` in a pipe (exit 0 passed, 1 failed with the failing test named), a folder as
a JobRun, `report` downloading the whole report folder, a Rejected run resubmitted by itself, and
one run in a real tmux terminal showing the live bar and the verdict."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from supercheck_localenv.layout import REPO_ROOT
from tests.conftest import wait_until

pytestmark = pytest.mark.cluster

EXAMPLES = REPO_ROOT / "examples" / "cli"
SUPERCHECK = str(Path(sys.executable).parent / "supercheck")
TARGET = "TARGET_URL=http://127.0.0.1:18090"
CREATED = re.compile(r"created (TestRun|JobRun) [^/\s]+/(\S+) ")
BAR = re.compile(r"\[[#-]{24}\]")
SLEEPY_K6 = ("import { sleep } from 'k6';\nexport const options = { vus: 1, iterations: 1 };\n"
             "export default function () { sleep(Number(__ENV.SLEEP || 2)); }\n")


@pytest.fixture(scope="module")
def demo_site():
    """The examples' site on the port they name (as tests/test_end_to_end.py and `make demo` serve it)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(REPO_ROOT / "examples" / "site"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 18090), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:18090"
    server.shutdown()


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """The CLI in a pipe, with the environment kube_env exported (KUBECONFIG, AWS_*, S3_ENDPOINT_URL)."""
    return subprocess.run([SUPERCHECK, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def created(stdout: str) -> tuple[str, str]:
    m = CREATED.search(stdout)
    assert m, stdout
    return m.group(1), m.group(2)


def test_a_passing_spec_exits_0_in_a_pipe(kube_env, demo_site, namespace):
    res = cli("run", str(EXAMPLES / "shop.spec.ts"), "-n", namespace, "--env", TARGET, "--wait", "--timeout", "300")
    assert res.returncode == 0, res.stdout + res.stderr
    kind, name = created(res.stdout)
    assert kind == "TestRun" and name.startswith("shop-")
    assert f"PASSED: TestRun {name} (2/2 passed)" in res.stdout
    assert re.search(rf"^\[\d+m?\d*s\] {name} Running", res.stdout, re.M), res.stdout  # live lines, plain
    assert "\x1b" not in res.stdout and "\r" not in res.stdout


def test_a_k6_script_exits_0(kube_env, demo_site, namespace):
    res = cli("run", str(EXAMPLES / "smoke.k6.js"), "-n", namespace, "--env", TARGET, "--wait", "--timeout", "300")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASSED: TestRun smoke-" in res.stdout and "thresholds passed" in res.stdout


def test_a_failing_spec_exits_1_names_the_test_and_its_report_downloads_whole(kube_env, demo_site, namespace,
                                                                             s3_client, tmp_path):
    res = cli("run", str(EXAMPLES / "failing.spec.ts"), "-n", namespace, "--env", TARGET, "--wait",
              "--timeout", "300")
    assert res.returncode == 1, res.stdout + res.stderr
    _, name = created(res.stdout)
    assert f"FAILED: TestRun {name}" in res.stdout
    assert "the basket starts with three items" in res.stdout
    assert f"supercheck report {name} -n {namespace}" in res.stdout

    got = cli("report", name, "-n", namespace, "--dir", str(tmp_path))
    assert got.returncode == 0, got.stderr
    index = Path(got.stdout.strip())
    assert index == (tmp_path / name / "index.html").resolve() and index.read_text().lstrip().startswith("<")
    # Every object of the report's folder is there: the failing test's trace under data/ among them.
    run = subprocess.run([str(kube_env.kubectl_path), f"--kubeconfig={kube_env.kubeconfig}", "get", "testrun",
                          name, "-n", namespace, "-o", "jsonpath={.status.artifacts.bucket} "
                          "{.status.artifacts.report}"], capture_output=True, text=True, check=True)
    bucket, report_key = run.stdout.split()
    folder = report_key.rsplit("/", 1)[0] + "/"
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])]
    local = sorted(str(p.relative_to(index.parent)) for p in index.parent.rglob("*") if p.is_file())
    assert local == sorted(k[len(folder):] for k in keys)
    assert any(p.startswith("data/") for p in local), local

    link = cli("report", name, "-n", namespace, "--link", "--link-seconds", "120")
    assert link.returncode == 0 and link.stdout.startswith(kube_env.env["S3_ENDPOINT_URL"]), link.stdout
    assert "X-Amz-Expires=120" in link.stdout


def test_a_folder_becomes_a_jobrun(kube_env, demo_site, namespace, kubectl):
    res = cli("run", str(EXAMPLES / "suite"), "-n", namespace, "--env", TARGET, "--parallelism", "2", "--wait",
              "--timeout", "400")
    assert res.returncode == 0, res.stdout + res.stderr
    kind, name = created(res.stdout)
    assert kind == "JobRun" and name.startswith("suite-")
    assert f"PASSED: JobRun {name}" in res.stdout and re.search(r"\d/5 tests", res.stdout), res.stdout
    jr = kubectl("get", "jobrun", name, "-n", namespace, "-o", "jsonpath={.spec.testsFrom.configMapRef.name}")
    assert jr.stdout == f"{name}-suite"
    listing = cli("get", "-n", namespace)
    assert listing.returncode == 0 and re.search(rf"^{name}\s+JobRun\s+playwright\s+Passed", listing.stdout, re.M)
    logs = cli("logs", name, "-n", namespace)
    assert logs.returncode == 0 and "==> pod " in logs.stdout


def test_a_rejected_run_is_resubmitted_until_it_passes(kube_env, namespace, operator_ctl, custom_objects):
    operator_ctl.start(RUNNING_CAPACITY="1", QUEUED_CAPACITY="1")
    for name, sleep in (("hold", "6"), ("waiting", "1")):
        custom_objects.create_namespaced_custom_object("supercheck.io", "v1alpha1", namespace, "testruns", {
            "apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name},
            "spec": {"type": "k6", "script": {"inline": SLEEPY_K6}, "env": [{"name": "SLEEP", "value": sleep}]}})
        if name == "hold":
            wait_until(lambda: (custom_objects.get_namespaced_custom_object(
                "supercheck.io", "v1alpha1", namespace, "testruns", "hold").get("status") or {}).get("slot")
                == "running", 60, what="hold running")
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"sleepy-{uuid.uuid4().hex[:6]}.k6.js"
    script.write_text(SLEEPY_K6)
    try:
        res = cli("run", str(script), "-n", namespace, "--wait", "--max-resubmits", "10", "--timeout", "300")
    finally:
        script.unlink()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rejected: capacity exceeded" in res.stdout and "resubmission 1 of at most 10" in res.stdout
    assert "kubectl delete testrun" in res.stdout  # the operator's message names the action that works
    assert "PASSED: TestRun sleepy-" in res.stdout


def test_a_run_in_a_real_terminal_shows_the_bar_and_the_verdict(kube_env, demo_site, namespace, tmp_path):
    socket = f"supercheck-test-{uuid.uuid4().hex[:8]}"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items()
                   if k in ("KUBECONFIG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                            "S3_ENDPOINT_URL", "PATH", "HOME"))
    spec = shlex.quote(str(EXAMPLES / "shop.spec.ts"))
    command = (f"env {env} TERM=xterm-256color {shlex.quote(SUPERCHECK)} run {spec} -n {namespace}"
               f" --env {TARGET} --wait --timeout 300; echo EXIT=$?; sleep 600")
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-s", "cli", "-x", "160", "-y", "40", command], check=True)
    seen_bar = False
    try:
        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "cli"], capture_output=True, text=True).stdout

        deadline = time.monotonic() + 330
        text = ""
        while time.monotonic() < deadline:
            text = screen()
            seen_bar = seen_bar or bool(BAR.search(text))
            if "EXIT=" in text:
                break
            time.sleep(0.3)
        assert "EXIT=0" in text, text
        assert seen_bar, "the live bar never showed"
        assert "PASSED: TestRun shop-" in text
        assert not BAR.search(text.split("PASSED")[-1])  # the bar is gone once the verdict is printed
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
