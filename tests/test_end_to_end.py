"""The whole thread, as a user walks it: the README's examples applied with kubectl, run by
the operator in runner pods (real Chromium, real k6), artifacts in S3, a row in PostgreSQL,
the contract's status fields filled, and the run counted on /metrics."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from supercheck_localenv.layout import REPO_ROOT
from tests.conftest import wait_until

EXAMPLES = REPO_ROOT / "examples"
TERMINAL = {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}


@pytest.fixture(scope="module")
def demo_site():
    """The examples' system under test, on the port the examples name (as `make demo` serves it)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES / "site"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 18090), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:18090"
    server.shutdown()


def _run(custom_objects, namespace, name):
    return custom_objects.get_namespaced_custom_object("supercheck.io", "v1alpha1", namespace, "testruns", name)


def _finished(custom_objects, namespace, name):
    run = _run(custom_objects, namespace, name)
    return run if (run.get("status") or {}).get("phase") in TERMINAL else None


def test_examples_run_end_to_end(kube_env, demo_site, namespace, kubectl, custom_objects, s3_client, db_conn):
    for manifest in ("playwright-shop.yaml", "k6-smoke.yaml", "playwright-from-configmap.yaml"):
        res = kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / manifest))
        assert res.returncode == 0, res.stderr

    shop = wait_until(lambda: _finished(custom_objects, namespace, "playwright-shop"), 240, 1, "playwright-shop")
    k6 = wait_until(lambda: _finished(custom_objects, namespace, "k6-smoke"), 240, 1, "k6-smoke")
    about = wait_until(lambda: _finished(custom_objects, namespace, "playwright-about"), 240, 1, "playwright-about")

    st = shop["status"]
    assert st["phase"] == "Passed", st
    assert st["summary"] == {"total": 3, "passed": 3, "failed": 0, "flaky": 0, "skipped": 0}
    assert st["attempts"] == 1 and st["startedAt"] and st["completedAt"]
    assert about["status"]["phase"] == "Passed" and about["status"]["summary"]["total"] == 1

    k = k6["status"]
    assert k["phase"] == "Passed", k
    assert k["k6"]["thresholdsPassed"] is True
    assert k["k6"]["checksFailed"] == 0 and k["k6"]["checksPassed"] > 0 and k["k6"]["iterations"] > 0
    assert k["k6"]["httpReqDurationP95Ms"] > 0

    for status, bucket in ((st, "playwright-test-artifacts"), (k, "k6-performance-artifacts")):
        art = status["artifacts"]
        assert art["bucket"] == bucket
        assert art["prefix"].startswith(f"{namespace}/")
        head = s3_client.head_object(Bucket=bucket, Key=art["report"])
        assert head["ContentType"].startswith("text/html")
        keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=art["prefix"])["Contents"]}
        assert f"{art['prefix']}/result.json" in keys

    rows = db_conn.execute(
        "SELECT name, attempt, type, phase, total, passed, artifacts_prefix FROM runs"
        " WHERE namespace = %s ORDER BY name",
        (namespace,),
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("k6-smoke", 1, "k6", "Passed"),
        ("playwright-about", 1, "playwright", "Passed"),
        ("playwright-shop", 1, "playwright", "Passed"),
    ]
    assert rows[2][4:] == (3, 3, st["artifacts"]["prefix"])

    text = urllib.request.urlopen(kube_env.env["SUPERCHECK_METRICS_URL"], timeout=5).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert ("supercheck_capacity_running", ()) in samples and ("supercheck_capacity_queued", ()) in samples
    assert samples[("supercheck_testruns_total", (("phase", "Passed"), ("type", "playwright")))] >= 2


def test_the_example_monitor_goes_up_on_the_demo_site(kube_env, demo_site, namespace, kubectl, custom_objects):
    """What `make demo` shows: the example HTTP monitor checks the demo site and goes Up (first check at once)."""
    res = kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "monitor-http.yaml"))
    assert res.returncode == 0, res.stderr

    def up():
        mon = custom_objects.get_namespaced_custom_object("supercheck.io", "v1alpha1", namespace, "monitors",
                                                          "demo-shop")
        return mon if (mon.get("status") or {}).get("state") == "Up" else None

    st = wait_until(up, 60, 1, "the demo-shop monitor Up")["status"]
    assert st["lastResult"].startswith("HTTP 200 in") and st["consecutiveFailures"] == 0
    assert st["uptime"]["last24h"] == 100


def test_examples_are_valid_manifests():
    """Every example parses, and every run in it (a TestRun, a JobRun, a RunSchedule's template, a
    synthetic Monitor's script) names the demo site it is run against; an HTTP or TCP Monitor checks it."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        specs = [d["spec"] for d in docs if d["kind"] in ("TestRun", "JobRun")]
        specs += [d["spec"].get("testRun") or d["spec"]["jobRun"] for d in docs if d["kind"] == "RunSchedule"]
        monitors = [d["spec"] for d in docs if d["kind"] == "Monitor"]
        specs += [m.get("playwright") or m["k6"] for m in monitors if "playwright" in m or "k6" in m]
        assert specs or monitors, f"{path.name} has no TestRun, JobRun, RunSchedule or Monitor"
        for spec in specs:
            env = {e["name"]: e.get("value") for e in spec.get("env", [])}
            assert env.get("TARGET_URL") == "http://127.0.0.1:18090", path.name
        for mon in monitors:
            if "http" in mon:
                assert mon["http"]["url"].startswith("http://127.0.0.1:18090"), path.name
            if "tcp" in mon:
                assert (mon["tcp"]["host"], mon["tcp"]["port"]) == ("127.0.0.1", 18090), path.name
