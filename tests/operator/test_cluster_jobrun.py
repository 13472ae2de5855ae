"""JobRuns on the local control plane, with the real runner, Chromium, k6, S3 and PostgreSQL:
shards, live progress, one merged report, per-test rows, recovery, timeouts, cancellation,
webhooks and a mixed burst with TestRuns."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes.client.rest import ApiException
from operator_kit import (
    GROUP,
    QUICK_K6,
    SLEEPY_K6,
    VERSION,
    Sampler,
    create,
    free_port,
    ledger_counts,
    make_run,
    wait_all_terminal,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster

JOBS = "jobruns"
TERMINAL = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}

# A spec file that opens Chromium, so the shard's one browser is really shared by its files.
PASSING_SPEC = """import { test, expect } from '@playwright/test';
import { label } from './helper';

test('%(name)s renders', async ({ page }) => {
  await page.setContent(`<h1>${label('%(name)s')}</h1>`);
  await new Promise((r) => setTimeout(r, %(pause)d));
  await expect(page.locator('h1')).toHaveText('test %(name)s');
});
"""
FAILING_SPEC = """import { test, expect } from '@playwright/test';

test('checkout totals add up', async ({ page }) => {
  await page.setContent('<p id="total">41</p>');
  await expect(page.locator('#total')).toHaveText('42', { timeout: 500 });
});
"""
HELPER = "export const label = (name: string) => `test ${name}`;\n"


def job(name: str, spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "JobRun", "metadata": {"name": name}, "spec": spec}


def create_job(custom_objects, namespace: str, body: dict) -> dict:
    return custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, JOBS, body)


def get_job(custom_objects, namespace: str, name: str) -> dict | None:
    try:
        return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, JOBS, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def job_phase(obj: dict | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def wait_job(custom_objects, namespace: str, name: str, timeout: float = 240) -> dict:
    return wait_for(lambda: (j := get_job(custom_objects, namespace, name)) and job_phase(j) in TERMINAL and j,
                    timeout, 0.3, f"JobRun {name} terminal")


def suite_configmap(core_v1, namespace: str, name: str, files: dict[str, str]) -> None:
    from kubernetes import client

    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name), data=files))


def twelve_files(pause: int = 400) -> dict[str, str]:
    files = {f"t{i:02d}.spec.ts": PASSING_SPEC % {"name": f"t{i:02d}", "pause": pause} for i in range(1, 12)}
    files["checkout.spec.ts"] = FAILING_SPEC
    files["helper.ts"] = HELPER
    return files


def junit_cases(s3_client, bucket: str, key: str) -> int:
    text = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return text.count("<testcase ")


@pytest.fixture
def operator(operator_ctl):
    operator_ctl.start(RUNNING_CAPACITY="4", QUEUED_CAPACITY="40", SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    return operator_ctl


@pytest.mark.parametrize("parallelism", [3, 1])
def test_a_twelve_test_suite_is_one_job_with_one_merged_report(
        operator, namespace, core_v1, custom_objects, s3_client, db_conn, parallelism):
    suite_configmap(core_v1, namespace, "suite", twelve_files())
    create_job(custom_objects, namespace, job("suite", {
        "type": "playwright", "parallelism": parallelism, "testsFrom": {"configMapRef": {"name": "suite"}},
        "playwright": {"retries": 0, "workers": 1}}))
    seen: set[int] = set()
    phases: set[str] = set()
    pods_at_once = 0
    deadline = time.monotonic() + 300
    obj: dict | None = None
    while time.monotonic() < deadline:
        obj = get_job(custom_objects, namespace, "suite")
        st = (obj or {}).get("status") or {}
        if st.get("progress"):
            seen.add(st["progress"]["completed"])
        phases.add(st.get("phase") or "")
        pods = core_v1.list_namespaced_pod(namespace, label_selector="supercheck.io/jobrun=suite").items
        pods_at_once = max(pods_at_once, sum(1 for p in pods if p.status.phase == "Running"))
        if st.get("phase") in TERMINAL:
            break
        time.sleep(0.25)
    assert obj is not None
    st = obj["status"]
    assert st["phase"] == "Failed", st
    assert st["progress"] == {"total": 12, "completed": 12, "passed": 11, "failed": 1, "flaky": 0, "skipped": 0}
    assert st["progressText"] == "12/12" and "checkout.spec.ts" in st["message"]
    assert (st["summary"]["total"], st["summary"]["failed"]) == (12, 1)  # test cases, from the report
    assert [t["name"] for t in st["tests"] if t["outcome"] == "failed"] == ["checkout.spec.ts"]
    assert len(st["shards"]) == parallelism and pods_at_once <= parallelism
    assert len(seen - {0}) >= 3, f"progress.completed values seen while it ran: {sorted(seen)}"
    if parallelism > 1:
        assert "Uploading" in phases, phases  # while the shards' reports are merged
    # One merged report and one JUnit XML, covering every test of every shard.
    art = st["artifacts"]
    assert art["bucket"] == "playwright-job-artifacts" and art["report"].endswith("report/index.html")
    s3_client.head_object(Bucket=art["bucket"], Key=art["report"])
    assert junit_cases(s3_client, art["bucket"], art["junit"]) == 12
    rows = wait_for(lambda: (r := db_conn.execute(
        "SELECT name, outcome, shard FROM job_tests WHERE job_uid = %s ORDER BY name",
        (obj["metadata"]["uid"],)).fetchall()) and len(r) == 12 and r, 30, what="12 job_tests rows")
    assert sum(1 for r in rows if r[1] == "failed") == 1 and {r[2] for r in rows} == set(range(1, parallelism + 1))
    job_row = db_conn.execute("SELECT phase, total, passed, failed FROM jobs WHERE uid = %s",
                              (obj["metadata"]["uid"],)).fetchone()
    assert job_row == ("Failed", 12, 11, 1)


def test_an_invalid_file_ends_the_job_error_naming_it_and_no_test_runs(
        operator, namespace, core_v1, custom_objects):
    files = twelve_files(pause=0)
    files["broken.spec.ts"] = "import { test } from '@playwright/test';\ntest('x', async () => {\n  const = 1;\n});\n"
    suite_configmap(core_v1, namespace, "suite", files)
    create_job(custom_objects, namespace, job("broken", {
        "type": "playwright", "parallelism": 2, "testsFrom": {"configMapRef": {"name": "suite"}}}))
    st = wait_job(custom_objects, namespace, "broken")["status"]
    assert (st["phase"], st["reason"]) == ("Error", "InvalidScript"), st
    assert "broken.spec.ts" in st["message"]
    assert st["progress"]["completed"] == 0 and all(t["outcome"] == "notRun" for t in st["tests"])


class Receiver:
    """A real local webhook receiver: records every POST."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict] = []
        received = self.posts
        answer = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=s3cret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


K6_PASS = QUICK_K6
K6_FAIL = """import { check } from 'k6';
export const options = { vus: 1, iterations: 1, thresholds: { checks: ['rate==1'] } };
export default function () { check(1, { 'one is two': (v) => v === 2 }); }
"""


def test_a_k6_job_notifies_a_webhook_once_and_a_dead_one_never_changes_the_verdict(
        operator, namespace, core_v1, custom_objects, receiver):
    suite_configmap(core_v1, namespace, "k6suite", {"a.test.js": K6_PASS, "b.test.js": K6_FAIL, "c.test.js": K6_PASS})
    dead = f"http://127.0.0.1:{free_port()}/gone"
    create_job(custom_objects, namespace, job("loads", {
        "type": "k6", "parallelism": 2, "testsFrom": {"configMapRef": {"name": "k6suite"}},
        "notify": [{"url": receiver.url}, {"url": dead}, {"url": receiver.url, "on": ["Passed"]}]}))
    st = wait_job(custom_objects, namespace, "loads")["status"]
    assert st["phase"] == "Failed" and st["progress"]["failed"] == 1 and st["progress"]["passed"] == 2, st
    obj = wait_for(lambda: (j := get_job(custom_objects, namespace, "loads")) and
                   len(j["status"].get("notifications") or []) == 3 and j, 60, what="notifications recorded")
    notes = obj["status"]["notifications"]
    assert notes[0]["ok"] and not notes[1]["ok"] and notes[1]["tries"] == 3
    assert "s3cret" not in json.dumps(obj["status"])
    cond = {c["type"]: c for c in obj["status"]["conditions"]}["Notified"]
    assert cond["status"] == "False" and cond["reason"] == "NotificationFailed"
    assert obj["status"]["phase"] == "Failed"  # the verdict stands
    assert len(receiver.posts) == 1  # the third target asked for Passed only
    post = receiver.posts[0]
    assert (post["name"], post["phase"], post["counts"]["failed"]) == ("loads", "Failed", 1)
    assert post["failedTests"] == ["b.test.js"]


def test_a_job_past_its_timeout_ends_timed_out_with_partial_counts(operator, namespace, core_v1, custom_objects):
    files = {f"t{i}.test.js": QUICK_K6 for i in range(3)}
    files["z-slow.test.js"] = SLEEPY_K6.replace("__ENV.SLEEP || 2", "60")
    suite_configmap(core_v1, namespace, "suite", files)
    create_job(custom_objects, namespace, job("late", {
        "type": "k6", "parallelism": 1, "timeoutSeconds": 25, "testsFrom": {"configMapRef": {"name": "suite"}}}))
    st = wait_job(custom_objects, namespace, "late", 120)["status"]
    assert st["phase"] == "TimedOut", st
    assert st["progress"]["passed"] == 3 and st["progress"]["completed"] == 3
    assert [t["outcome"] for t in st["tests"] if t["file"] == "z-slow.test.js"] == ["notRun"]


def test_a_job_deleted_mid_run_is_cancelled_and_frees_its_slots(
        operator, namespace, core_v1, custom_objects, redis_client, db_conn):
    files = {f"t{i}.test.js": SLEEPY_K6.replace("__ENV.SLEEP || 2", "30") for i in range(4)}
    suite_configmap(core_v1, namespace, "suite", files)
    obj = create_job(custom_objects, namespace, job("bye", {
        "type": "k6", "parallelism": 2, "testsFrom": {"configMapRef": {"name": "suite"}}}))
    wait_for(lambda: job_phase(get_job(custom_objects, namespace, "bye")) == "Running" and
             ledger_counts(redis_client)[0] == 2, 60, what="the job running on 2 slots")
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, JOBS, "bye")
    wait_for(lambda: get_job(custom_objects, namespace, "bye") is None, 60, what="the JobRun gone")
    wait_ledger_zero(redis_client)
    assert core_v1.list_namespaced_pod(namespace, label_selector="supercheck.io/jobrun=bye").items == [] or \
        all(p.metadata.deletion_timestamp for p in core_v1.list_namespaced_pod(
            namespace, label_selector="supercheck.io/jobrun=bye").items)
    row = wait_for(lambda: db_conn.execute("SELECT phase FROM jobs WHERE uid = %s",
                                           (obj["metadata"]["uid"],)).fetchone(), 30, what="the jobs row")
    assert row == ("Cancelled",)


def test_a_mixed_burst_of_jobs_and_testruns_never_exceeds_capacity(
        operator_ctl, namespace, core_v1, custom_objects, redis_client):
    operator_ctl.start(RUNNING_CAPACITY="4", QUEUED_CAPACITY="40")
    suite_configmap(core_v1, namespace, "suite", {f"t{i}.test.js": SLEEPY_K6 for i in range(4)})
    with Sampler(core_v1, namespace, redis_client) as sampler:
        for i in range(20):
            create(custom_objects, namespace, make_run(f"run-{i:02d}", SLEEPY_K6, 0,
                                                       env=[{"name": "SLEEP", "value": "1"}]))
            if i % 5 == 4:
                create_job(custom_objects, namespace, job(f"job-{i // 5}", {
                    "type": "k6", "parallelism": 2, "priority": 5, "env": [{"name": "SLEEP", "value": "1"}],
                    "testsFrom": {"configMapRef": {"name": "suite"}}}))
        runs = wait_all_terminal(custom_objects, namespace, 20, timeout=400)
        jobs = [wait_job(custom_objects, namespace, f"job-{i}", 400) for i in range(4)]
        wait_ledger_zero(redis_client)
    assert sampler.max_running <= 4, f"saw {sampler.max_running} runner pods running at once"
    assert sampler.max_ledger_running <= 4
    assert all(r["status"]["phase"] == "Passed" for r in runs)
    assert all(j["status"]["phase"] == "Passed" for j in jobs), [j["status"] for j in jobs]
    assert ledger_counts(redis_client) == (0, 0)
    # Priority held: no TestRun queued behind a job (lower priority) started before that job did.
    for j in jobs:
        j_start = j["status"]["startedAt"]
        j_queued = j["status"].get("queuedAt")
        if not j_queued:
            continue
        overtook = [r["metadata"]["name"] for r in runs if r["status"].get("queuedAt") and
                    r["status"]["queuedAt"] < j_start and r["status"]["startedAt"] < j_start and
                    r["status"]["queueSeq"] > j["status"]["queueSeq"]]
        assert not overtook, f"{j['metadata']['name']} was overtaken by {overtook}"


HOG_ONCE_K6 = """import http from 'k6/http';
export const options = { vus: 1, iterations: 1 };
export default function () {
  if (http.get(`${__ENV.CTRL}/hog`).body === 'yes') {
    const hog = [];
    for (;;) { hog.push(new Array(1000000).fill(Math.random())); }
  }
}
"""


class HogOnce:
    """Answers 'yes' to the first /hog and 'no' after: the first attempt runs out of memory."""

    def __init__(self) -> None:
        self.asked = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked += 1
                body = b"yes" if outer.asked == 1 else b"no"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_shard_killed_for_memory_is_retried_once_and_the_job_passes(
        operator, namespace, core_v1, custom_objects, redis_client):
    hog = HogOnce()
    try:
        suite_configmap(core_v1, namespace, "suite", {"a-hog.test.js": HOG_ONCE_K6, "b.test.js": QUICK_K6})
        create_job(custom_objects, namespace, job("hungry", {
            "type": "k6", "parallelism": 1, "resources": {"memory": "200Mi"},
            "env": [{"name": "CTRL", "value": f"http://127.0.0.1:{hog.port}"}],
            "testsFrom": {"configMapRef": {"name": "suite"}}}))
        st = wait_job(custom_objects, namespace, "hungry", 240)["status"]
    finally:
        hog.server.shutdown()
    assert st["phase"] == "Passed", st
    shard = st["shards"][0]
    assert shard["attempts"] == 2 and [h["failureClass"] for h in shard["attemptHistory"]] == ["oom", "none"]
    assert st["progress"]["passed"] == 2
    wait_ledger_zero(redis_client)


def test_a_suite_from_a_git_server_with_credentials(operator, namespace, core_v1, custom_objects, tmp_path):
    import base64
    import subprocess

    from kubernetes import client

    from tests.runner.git_kit import GitHttpServer

    work = tmp_path / "work"
    (work / "suite" / "lib").mkdir(parents=True)
    (work / "suite" / "lib" / "target.js").write_text("export const label = 'from git';\n")
    for name in ("a.test.js", "b.test.js"):
        (work / "suite" / name).write_text(
            "import { label } from './lib/target.js';\nexport const options = { vus: 1, iterations: 1 };\n"
            "export default function () { if (label !== 'from git') throw new Error(label); }\n")
    (work / "README.md").write_text("not part of the suite\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t",
                                                           "commit", "-qm", "suite"]):
        subprocess.run(["git", *args], cwd=work, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp_path / "repo.git")], check=True)
    core_v1.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="git-creds"),
        data={"username": base64.b64encode(b"ci").decode(), "password": base64.b64encode(b"t0ken").decode()}))
    with GitHttpServer(tmp_path, username="ci", password="t0ken") as server:
        create_job(custom_objects, namespace, job("from-git", {
            "type": "k6", "parallelism": 2,
            "testsFrom": {"git": {"url": f"{server.url}/repo.git", "revision": "main", "path": "suite",
                                  "credentials": {"secretRef": {"name": "git-creds"}}}}}))
        st = wait_job(custom_objects, namespace, "from-git", 180)["status"]
    assert st["phase"] == "Passed", st
    assert sorted(t["file"] for t in st["tests"]) == ["a.test.js", "b.test.js"]
    assert {t["shard"] for t in st["tests"]} == {1, 2}
    assert "t0ken" not in json.dumps(st)


def test_operator_killed_and_redis_wiped_mid_job_lose_nothing(
        operator_ctl, services, namespace, core_v1, custom_objects, redis_client):
    """The job's slots survive an operator SIGKILL (its status holds them) and a Redis restarted
    empty (the ledger is rebuilt with the job's weight); no pod runs twice, nothing leaks."""
    config = dict(RUNNING_CAPACITY="4", QUEUED_CAPACITY="40", SUPERCHECK_LEDGER_RECONCILE_SECONDS="2")
    operator_ctl.start(**config)
    suite_configmap(core_v1, namespace, "suite", {f"t{i}.test.js": SLEEPY_K6 for i in range(6)})
    create_job(custom_objects, namespace, job("tough", {
        "type": "k6", "parallelism": 3, "env": [{"name": "SLEEP", "value": "2"}],
        "testsFrom": {"configMapRef": {"name": "suite"}}}))
    with Sampler(core_v1, namespace, redis_client) as sampler:
        wait_for(lambda: ledger_counts(redis_client)[0] == 3, 60, what="the job on 3 slots")
        operator_ctl.kill()
        time.sleep(1)
        operator_ctl.start(**config)
        services.redis_restart_empty()
        wait_for(lambda: ledger_counts(redis_client)[0] in (0, 3), 30, what="the ledger rebuilt")
        st = wait_job(custom_objects, namespace, "tough", 240)["status"]
        wait_ledger_zero(redis_client)
    assert st["phase"] == "Passed" and st["progress"]["passed"] == 6, st
    assert sampler.max_running <= 3
    pods = {n for seen in sampler.pods_seen.values() for n in seen}
    assert all(sh["attempts"] == 1 for sh in st["shards"]), st["shards"]
    assert sorted(p for p in pods if p.startswith("tough-")) == ["tough-s1-a1", "tough-s2-a1", "tough-s3-a1"]
