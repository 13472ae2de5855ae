"""The pod is the boundary: on the local environment a run meets the user, files and limits a
real pod has (issue 10, item 9).

A script that gets past validation is still a process of the runner pod: uid 1000 (the pod's
runAsUser), a read-only root filesystem with only its emptyDir writable, the node's secrets out
of sight, and the kernel's cgroup limits. These runs try what a hostile script would, through
APIs the validator cannot refuse (Playwright's ``route.fulfill({ path })``, which reads a file
in the test's own Node process, and screenshots saved to a path; k6's ``open``), and pass only
if every attempt is denied. Then a memory-hungry run is ended by the kernel's OOM killer, not
by a poll of the node agent.

Written for the lead's local environment (`cluster`): they need `make dev-up` and the operator.
"""

from __future__ import annotations

import pytest

from tests.localenv.test_node_agent import pod_manifest, poll, read_pod, run_pod, terminated
from tests.operator.operator_kit import create, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

TERMINAL = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}

# Each test passes only when the attempt is refused; the run is Passed only if all are.
ESCAPES_PLAYWRIGHT = r"""
import { test, expect } from '@playwright/test';

// Serves the file at `path` to the page, read by the test's own Node process (Playwright's
// route.fulfill({ path })), or what reading it threw.
let probes = 0;
async function readThroughARoute(page, path) {
  const url = `http://probe.invalid/${++probes}`;
  await page.route(url, async (route) => {
    try { await route.fulfill({ path, contentType: 'text/plain' }); }
    catch (e) { await route.fulfill({ body: `refused: ${e.message}`, contentType: 'text/plain' }); }
  });
  await page.goto(url);
  return await page.locator('body').innerText();
}

function field(status, name) {
  const m = status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'));
  return m ? Number(m[1]) : null;
}

test('runs as the pod user, not root', async ({ page }) => {
  expect(field(await readThroughARoute(page, '/proc/self/status'), 'Uid')).toBe(1000);
});

test('cannot read the environment of a process of another user', async ({ page }) => {
  // Up the parent chain to PID 1: in the pod's own PID namespace every process on it is the
  // pod's user; any other one (the node agent, without a PID namespace) must refuse its environment.
  let pid = field(await readThroughARoute(page, '/proc/self/status'), 'PPid');
  for (let steps = 0; pid && steps < 20; steps++) {
    const status = await readThroughARoute(page, `/proc/${pid}/status`);
    if (field(status, 'Uid') !== 1000) {
      const text = await readThroughARoute(page, `/proc/${pid}/environ`);
      expect(text).toContain('refused');
      expect(text).not.toContain('PATH=');
    }
    if (pid === 1) break;
    pid = field(status, 'PPid');
  }
});

test("cannot read the node's secrets", async ({ page }) => {
  // The local environment's .dev/env holds the S3 key and the database password (mode 0644).
  const text = await readThroughARoute(page, '__NODE_SECRETS__');
  expect(text).toContain('refused');
  expect(text).not.toContain('SECRET');
});

for (const where of ['/etc', '/var/tmp', '/usr/local', '/opt']) {
  test(`cannot write to ${where}`, async ({ page }) => {
    await page.setContent('<h1>x</h1>');
    await expect(page.screenshot({ path: `${where}/supercheck-escape.png` })).rejects.toThrow();
  });
}

test('can write where a pod may: its output folder', async ({ page }, testInfo) => {
  await page.setContent('<h1>x</h1>');
  await page.screenshot({ path: testInfo.outputPath('allowed.png') });
});
"""

ESCAPES_K6 = r"""
import { check } from 'k6';

// k6's open() reads files whole by their size, so /proc (size 0) shows nothing either way; these
// are ordinary files a pod's user may not read (a real image's /etc/shadow is root's, 0640; a
// real pod does not see the node's files at all).
function read(path) {
  try { return open(path); } catch (e) { return null; }
}
const shadow = read('/etc/shadow');
const nodeSecrets = read('__NODE_SECRETS__');  // the local environment's .dev/env (S3 key, passwords)

export const options = { vus: 1, iterations: 1, thresholds: { checks: ['rate==1'] } };
export default function () {
  check(shadow, { '/etc/shadow is refused': (s) => s === null });
  check(nodeSecrets, { "the node's secrets are not there": (k) => k === null });
}
"""

OOM_K6 = """export const options = { vus: 1, iterations: 1 };
export default function () {
  const hog = [];
  for (;;) { hog.push(new Array(1000000).fill(Math.random())); }
}
"""


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start(RUNNING_CAPACITY="4", SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    return operator_ctl


def with_node_secrets(script: str, path: str) -> str:
    """The hostile scripts aim at ``path``: the local environment's own secrets file."""
    return script.replace("__NODE_SECRETS__", path)


def terminal(custom_objects, namespace: str, name: str, timeout: float = 240) -> dict:
    return wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and phase(r) in TERMINAL and r,
                    timeout, what=f"{name} terminal")


def test_a_playwright_script_cannot_read_other_processes_or_write_outside_its_work_dir(
        operator, namespace, custom_objects, kube_env):
    script = with_node_secrets(ESCAPES_PLAYWRIGHT, str(kube_env.layout.dev / "env"))
    create(custom_objects, namespace, make_run("escape-pw", script, type="playwright",
                                               playwright={"retries": 0, "workers": 1}))
    st = terminal(custom_objects, namespace, "escape-pw")["status"]
    assert st["phase"] == "Passed", st
    assert st["summary"]["passed"] == st["summary"]["total"] == 8, st["summary"]


def test_a_k6_script_cannot_open_the_nodes_files(operator, namespace, custom_objects, kube_env):
    assert (kube_env.layout.dev / "env").is_file()  # what the scripts aim at exists on this node
    create(custom_objects, namespace, make_run("escape-k6", with_node_secrets(ESCAPES_K6,
                                                                              str(kube_env.layout.dev / "env"))))
    st = terminal(custom_objects, namespace, "escape-k6")["status"]
    # k6 reads files only through open(), and validation refuses one it cannot prove is inside the
    # suite before k6 starts: the pod boundary is not even reached (Playwright's test above shows it).
    assert (st["phase"], st["failureClass"]) == ("Error", "validation"), st
    assert "open()" in st["message"], st["message"]


def test_a_memory_hungry_run_is_oom_killed_by_the_kernel(operator, namespace, custom_objects, core_v1, kube_env):
    create(custom_objects, namespace, make_run("hungry", OOM_K6, resources={"memory": "150Mi"}))
    st = terminal(custom_objects, namespace, "hungry")["status"]
    assert (st["phase"], st["reason"], st["failureClass"]) == ("Error", "OOMKilled", "oom"), st
    # The node agent's word: the cgroup's OOM kill counter, not its fallback memory poll.
    log = (kube_env.layout.logs / "node-agent.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if f"{namespace}/hungry-a1/" in line]
    assert any("the kernel's OOM killer ended" in line for line in lines), lines[-10:]
    assert not any("over its limit" in line for line in lines), lines[-10:]


# ---------------------------------------------------------------- plain pods on the node agent


def log_text(core_v1, namespace: str, pod: str) -> str:
    # The raw body: the generated client turns a log into str(bytes) ("b'...'") with this API server.
    return core_v1.read_namespaced_pod_log(pod, namespace, _preload_content=False).data.decode()


def test_a_pod_runs_as_its_run_as_user_with_its_groups_in_its_own_pid_namespace(namespace, core_v1):
    script = ("echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G | tr ' ' ','); echo pid=$$$$; "
              "echo visible=$(ls /proc | grep -c '^[0-9]'); echo cgroups=$(grep -c supercheck /proc/self/cgroup)")
    manifest = pod_manifest("who", ["sh", "-c", script],
                            securityContext={"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 3456,
                                             "supplementalGroups": [4567]},
                            container={"resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}})
    pod = run_pod(core_v1, namespace, manifest)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    out = dict(line.split("=", 1) for line in log_text(core_v1, namespace, "who").splitlines()
               if "=" in line)
    assert (out["uid"], out["gid"]) == ("1234", "2345")
    assert set(out["groups"].split(",")) == {"2345", "3456", "4567"}
    assert out["pid"] == "2"  # the command is PID 2 of its own namespace, under its init ($$$$: as a kubelet
    # does, the node agent expands $(VAR) in a command and makes $$ one $)
    assert int(out["visible"]) <= 8  # the init, sh, its subshell, ls, grep: not the host's hundreds
    assert int(out["cgroups"]) >= 2  # the cpu and memory groups the agent made


def test_run_as_non_root_with_a_root_user_never_starts(namespace, core_v1):
    core_v1.create_namespaced_pod(namespace, pod_manifest("rooted", ["true"], securityContext={"runAsNonRoot": True}))
    pod = poll(lambda: (p := read_pod(core_v1, namespace, "rooted")) and
               ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}).get("reason")
               == "CreateContainerConfigError" and p, 60, "CreateContainerConfigError")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert "runAsNonRoot and image will run as root" in waiting["message"]


def test_a_pod_over_its_memory_limit_is_oom_killed_by_the_kernel(namespace, core_v1):
    allocate = "x = []\nwhile True:\n    x.append(b'1' * (8 << 20))\n"
    pod = run_pod(core_v1, namespace, pod_manifest("hog", ["python3", "-c", allocate],
                                                   container={"resources": {"limits": {"memory": "64Mi"}}}))
    term = terminated(pod)
    assert (pod["status"]["phase"], term["reason"], term["exitCode"]) == ("Failed", "OOMKilled", 137), term
