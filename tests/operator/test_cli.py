"""The supercheck CLI without a cluster: arguments, manifests from files, rendering on a terminal
and in a pipe, and the exit codes of `run --wait` over status sequences (an in-memory cluster)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from supercheck.cli import args as cli_args
from supercheck.cli import get as get_cmd
from supercheck.cli import report as report_cmd
from supercheck.cli import submit
from supercheck.cli.render import ERASE_LINE, PlainRenderer, TerminalRenderer, renderer_for
from supercheck.cli.run import run as run_cmd
from supercheck.cli.view import bar, line, verdict, view

PW = "import { test, expect } from '@playwright/test';\ntest('home', async ({ page }) => {});\n"
K6 = "import http from 'k6/http';\nexport default function () { http.get('http://x'); }\n"


# ---------------------------------------------------------------- arguments

def test_run_arguments_and_defaults():
    a = cli_args.parse(["run", "a.spec.ts", "-n", "ci", "--env", "TARGET_URL=http://x:1/?a=b", "--env", "E=",
                        "--wait"])
    assert (a.command, a.files, a.namespace, a.wait) == ("run", ["a.spec.ts"], "ci", True)
    assert a.env == [("TARGET_URL", "http://x:1/?a=b"), ("E", "")]
    assert (a.timeout, a.max_resubmits, a.cancel_on_interrupt) == (3600, 5, False)


@pytest.mark.parametrize("argv", [["run"], ["run", "a.js", "--env", "NOEQUALS"], ["run", "a.js", "--type", "jest"],
                                  ["run", "a.js", "--parallelism", "0"], ["logs"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_args.parse(argv)
    assert exc.value.code == 2


# ---------------------------------------------------------------- manifests

def test_one_spec_is_a_testrun_with_the_script_inline(tmp_path):
    f = tmp_path / "Checkout Flow.spec.ts"
    f.write_text(PW)
    plan = submit.plan([str(f)], "ci", env=[("A", "1"), ("A", "2")], token="ab12c", priority=5, timeout=90)
    assert (plan.kind, plan.name, plan.config_map) == ("TestRun", "checkout-flow-ab12c", None)
    assert plan.run["metadata"] == {"name": "checkout-flow-ab12c", "namespace": "ci"}
    assert plan.run["spec"] == {"type": "playwright", "priority": 5, "timeoutSeconds": 90,
                                "env": [{"name": "A", "value": "2"}], "script": {"inline": PW}}
    from supercheck.models import TestRunSpec
    TestRunSpec.model_validate(plan.run["spec"])


def test_ttl_deletes_the_run_after_it_ends_testrun_and_jobrun(tmp_path):
    from supercheck.cli.args import parse
    from supercheck.jobmodels import JobRunSpec
    from supercheck.models import TestRunSpec

    f = tmp_path / "smoke.k6.js"
    f.write_text(K6)
    args = parse(["run", str(f), "--ttl", "3600"])
    assert args.ttl == 3600
    one = submit.plan([str(f)], "ci", ttl=args.ttl)
    assert TestRunSpec.model_validate(one.run["spec"]).ttlSecondsAfterFinished == 3600
    suite = submit.plan([str(tmp_path)], "ci", ttl=60)
    assert JobRunSpec.model_validate(suite.run["spec"]).ttlSecondsAfterFinished == 60
    assert "ttlSecondsAfterFinished" not in submit.plan([str(f)], "ci").run["spec"]


def test_k6_is_detected_by_its_import_and_type_decides_otherwise(tmp_path):
    (tmp_path / "smoke.js").write_text(K6)
    (tmp_path / "plain.js").write_text("export default function () {}\n")
    assert submit.plan([str(tmp_path / "smoke.js")], "d").run["spec"]["type"] == "k6"
    with pytest.raises(submit.SubmitError, match="--type"):
        submit.plan([str(tmp_path / "plain.js")], "d")
    assert submit.plan([str(tmp_path / "plain.js")], "d", test_type="k6").run["spec"]["type"] == "k6"


def test_a_folder_is_a_jobrun_with_its_files_in_a_configmap(tmp_path):
    suite = tmp_path / "shop"
    (suite / "sub").mkdir(parents=True)
    (suite / "home.spec.ts").write_text(PW)
    (suite / "fixtures.ts").write_text("export const x = 1;\n")
    (suite / "logo.png").write_bytes(b"\x89PNG\xff\x00")
    (suite / ".hidden").write_text("no")
    (suite / "sub" / "deep.spec.ts").write_text(PW)
    plan = submit.plan([str(suite)], "ci", parallelism=2, token="zz9zz")
    assert (plan.kind, plan.name, plan.tests) == ("JobRun", "shop-zz9zz", ["home.spec.ts"])
    assert plan.run["spec"] == {"type": "playwright", "parallelism": 2,
                                "testsFrom": {"configMapRef": {"name": "shop-zz9zz-suite"}}}
    cm = plan.config_map
    assert set(cm["data"]) == {"home.spec.ts", "fixtures.ts"} and set(cm["binaryData"]) == {"logo.png"}
    from supercheck.jobmodels import JobRunSpec
    JobRunSpec.model_validate(plan.run["spec"])
    owned = submit.owned_by(cm, {**plan.run, "metadata": {**plan.run["metadata"], "uid": "u-1"}})
    assert owned["metadata"]["ownerReferences"] == [{"apiVersion": "supercheck.io/v1alpha1", "kind": "JobRun",
                                                     "name": "shop-zz9zz", "uid": "u-1"}]


def test_several_files_without_a_test_name_are_refused_before_anything_is_created(tmp_path):
    for n in ("a.js", "b.js"):
        (tmp_path / n).write_text(K6)
    with pytest.raises(submit.SubmitError, match=r"\*\.k6\.js"):
        submit.plan([str(tmp_path / "a.js"), str(tmp_path / "b.js")], "d")
    with pytest.raises(submit.SubmitError, match="no such file"):
        submit.plan([str(tmp_path / "missing.spec.ts")], "d")
    with pytest.raises(submit.SubmitError, match="--parallelism"):
        submit.plan([str(tmp_path / "a.js")], "d", parallelism=2)


def test_names_are_short_dns_labels():
    assert submit.run_name("My_Test.SPEC", "abcde") == "my-test-abcde"
    assert len(submit.run_name("x" * 200, "abcde")) == submit.MAX_STEM + 6
    assert submit.run_name("---", "abcde") == "run-abcde"
    assert submit.stem_of("tests/login.spec.ts") == "login" and submit.stem_of("suite/") == "suite"


# ---------------------------------------------------------------- rendering

def _body(phase, kind="TestRun", name="r", **status):
    return {"metadata": {"name": name, "namespace": "ci", "resourceVersion": "1"},
            "spec": {"type": "playwright", "timeoutSeconds": 100}, "status": {"phase": phase, **status}}


def test_plain_lines_name_the_queue_position_and_counts():
    q = view("TestRun", _body("Queued", message="waiting for a running slot; position 3 in the queue"))
    assert line(q, 4) == "[4s] r Queued, position 3 in the queue"
    j = view("JobRun", _body("Running", "JobRun", progress={"total": 5, "completed": 2, "failed": 1}))
    assert line(j, 75) == "[1m15s] r Running, 2/5 tests, 1 failed"


def test_the_bar_fills_with_tests_done_or_time_used():
    j = view("JobRun", _body("Running", "JobRun", progress={"total": 4, "completed": 2}))
    assert bar(j, 10).startswith("[" + "#" * 12 + "-" * 12 + "]")
    t = view("TestRun", _body("Running"))
    assert bar(t, 25).startswith("[" + "#" * 6 + "-" * 18 + "]")  # 25 s of its 100 s timeout
    assert len(bar(t, 25, width=30)) == 29


def test_a_pipe_gets_one_line_per_change_and_no_escape_codes():
    out = io.StringIO()
    r = PlainRenderer(out)
    for phase in ("Pending", "Pending", "Running", "Running", "Passed"):
        r.update(view("TestRun", _body(phase)), 1)
        r.tick(2)
    assert out.getvalue().splitlines() == ["[1s] r Pending", "[1s] r Running", "[1s] r Passed"]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_a_terminal_gets_a_bar_redrawn_in_place():
    out = io.StringIO()
    r = TerminalRenderer(out, width=100)
    r.update(view("TestRun", _body("Running")), 1)
    r.tick(50)
    r.close()
    text = out.getvalue()
    assert text.startswith("[1s] r Running\n" + ERASE_LINE + "[" + "-" * 24 + "]")
    assert ERASE_LINE + "[############------------]    50s r Running" in text and text.endswith(ERASE_LINE)


def test_the_renderer_follows_the_output():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(renderer_for(Tty()), TerminalRenderer)
    assert isinstance(renderer_for(io.StringIO()), PlainRenderer)


def test_the_verdict_names_failing_tests_and_the_report():
    body = _body("Failed", "JobRun", name="shop-1", result="4 passed, 1 failed", duration="41s",
                 reason="TestsFailed", message="1 of 5 tests failed: basket.spec.ts",
                 tests=[{"name": "basket", "file": "basket.spec.ts", "outcome": "failed",
                         "failure": "'adds an item': expected 1\nstack"},
                        {"name": "home", "file": "home.spec.ts", "outcome": "passed"}],
                 artifacts={"bucket": "b", "prefix": "p", "report": "p/report/index.html"})
    text = "\n".join(verdict("JobRun", body, "ci", 3))
    assert text.startswith("FAILED: JobRun shop-1 (4 passed, 1 failed) in 41s")
    assert "basket.spec.ts: 'adds an item': expected 1" in text and "home.spec.ts" not in text
    assert "s3://b/p/report/index.html" in text and "supercheck report shop-1 -n ci" in text


# ---------------------------------------------------------------- run --wait over status sequences

class FakeSource:
    def __init__(self, events):
        self.events = list(events)

    def next(self, timeout):
        return self.events.pop(0) if self.events else None

    def close(self):
        pass


class FakeCluster:
    """Each created run plays the next scripted sequence of bodies."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.created, self.deleted = [], []
        self.objects = {}

    def create(self, plan):
        self.created.append(plan)
        self.objects[plan.name] = plan.run
        return {**plan.run, "metadata": {**plan.run["metadata"], "uid": "u"}}

    def get(self, plural, namespace, name):
        return self.objects.get(name)

    def delete(self, plural, namespace, name):
        self.deleted.append(name)
        self.objects.pop(name, None)

    def watch(self, plural, namespace, name):
        script = self.scripts.pop(0)
        return FakeSource([(kind, {**b, "metadata": {**b["metadata"], "name": name}}) for kind, b in script])


class Clock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        self.t += 1
        return self.t

    def sleep(self, s):
        self.t += s


def _run(tmp_path, cluster, *extra):
    f = tmp_path / "shop.spec.ts"
    f.write_text(PW)
    args = cli_args.parse(["run", str(f), "-n", "ci", "--wait", *extra])
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    code = run_cmd(args, cluster, "ci", out, err, now=clock.now, sleep=clock.sleep)
    return code, out.getvalue(), err.getvalue()


def _seq(*phases, **last):
    bodies = [("MODIFIED", _body(p)) for p in phases]
    bodies[-1] = ("MODIFIED", _body(phases[-1], **last))
    return bodies


@pytest.mark.parametrize("final, code", [("Passed", 0), ("Failed", 1), ("Error", 2), ("TimedOut", 2),
                                         ("Cancelled", 2)])
def test_exit_codes_follow_the_verdict(tmp_path, final, code):
    cluster = FakeCluster(_seq("Pending", "Queued", "Running", final, message="2 passed, 1 failed. 'home': boom"))
    got, out, _ = _run(tmp_path, cluster)
    assert got == code
    assert out.splitlines()[0].startswith("created TestRun ci/shop-")
    assert f"{final.upper()}: TestRun shop-" in out
    if final == "Failed":
        assert "'home': boom" in out


def test_a_rejected_run_is_deleted_and_created_again_after_retry_after(tmp_path):
    rejected = _seq("Rejected", retryAfterSeconds=7, message="capacity exceeded")
    cluster = FakeCluster(rejected, _seq("Queued", "Running", "Passed"))
    code, out, _ = _run(tmp_path, cluster)
    assert code == 0
    first, second = (p.name for p in cluster.created)
    assert first != second and cluster.deleted == [first]
    assert "resubmitting in 7s (resubmission 1 of at most 5)" in out


def test_resubmissions_stop_at_the_limit_and_exit_2(tmp_path):
    rejected = _seq("Rejected", retryAfterSeconds=3, message="capacity exceeded")
    cluster = FakeCluster(*[rejected] * 3)
    code, out, _ = _run(tmp_path, cluster, "--max-resubmits", "2")
    assert code == 2 and len(cluster.created) == 3 and len(cluster.deleted) == 2
    assert "REJECTED" in out and "gave up after 2 resubmission(s) (--max-resubmits 2)" in out


def test_the_wait_times_out_with_2_and_leaves_the_run(tmp_path):
    cluster = FakeCluster(_seq("Running"))
    code, out, _ = _run(tmp_path, cluster, "--timeout", "5")
    assert code == 2 and "TIMED OUT" in out and "goes on" in out and cluster.deleted == []


def test_a_run_deleted_while_followed_is_an_error(tmp_path):
    cluster = FakeCluster([("MODIFIED", _body("Running")), ("DELETED", _body("Running"))])
    code, out, _ = _run(tmp_path, cluster)
    assert code == 2 and "was deleted before it ended" in out


@pytest.mark.parametrize("cancel", [False, True])
def test_ctrl_c_leaves_the_run_unless_asked(tmp_path, cancel):
    class Interrupting(FakeCluster):
        def watch(self, *a):
            raise KeyboardInterrupt

    cluster = Interrupting()
    code, out, _ = _run(tmp_path, cluster, *(["--cancel-on-interrupt"] if cancel else []))
    assert code == 130
    assert (cluster.deleted != []) is cancel
    assert ("deleted" if cancel else "goes on") in out


def test_without_wait_the_run_is_created_and_named(tmp_path):
    f = tmp_path / "smoke.js"
    f.write_text(K6)
    cluster, out = FakeCluster(), io.StringIO()
    code = run_cmd(cli_args.parse(["run", str(f)]), cluster, "ci", out, io.StringIO())
    assert code == 0 and cluster.created[0].run["spec"]["type"] == "k6" and "supercheck get smoke-" in out.getvalue()


# ---------------------------------------------------------------- get and report

def test_get_prints_one_table_for_both_kinds():
    class Listing(FakeCluster):
        def list(self, plural, namespace):
            kind = "JobRun" if plural == "jobruns" else "TestRun"
            return [_body("Running", kind, name=f"{plural}-x", progressText="2/5")]

    out = io.StringIO()
    assert get_cmd(Listing(), "ci", None, out, io.StringIO()) == 0
    rows = out.getvalue().splitlines()
    assert rows[0].split() == ["NAME", "KIND", "TYPE", "PHASE", "RESULT", "DURATION", "AGE"]
    assert sorted(r.split()[:5] for r in rows[1:]) == [["jobruns-x", "JobRun", "playwright", "Running", "2/5"],
                                                       ["testruns-x", "TestRun", "playwright", "Running"]]


def test_report_keys_stay_inside_the_download_folder(tmp_path):
    assert report_cmd.local_path(tmp_path, "p/report/", "p/report/data/a.zip") == tmp_path / "data" / "a.zip"
    with pytest.raises(report_cmd.ReportError):
        report_cmd.local_path(tmp_path, "p/report/", "p/report/../../etc/x")
    body = _body("Running")
    with pytest.raises(report_cmd.ReportError, match="not ended yet"):
        report_cmd.report_location(body)
    assert report_cmd.report_location(_body("Passed", artifacts={"bucket": "b", "prefix": "p",
                                                                 "report": "p/report/index.html"})) == (
        "b", "p/report/index.html", "p/report/")


def test_report_downloads_every_object_of_the_folder(tmp_path):
    class S3:
        objects = {"p/report/index.html": b"<html>", "p/report/data/t.zip": b"zip", "p/result.json": b"{}"}

        def get_paginator(self, _):
            objects = self.objects

            class P:
                def paginate(self, Bucket, Prefix):
                    yield {"Contents": [{"Key": k} for k in objects if k.startswith(Prefix)]}
            return P()

        def download_file(self, bucket, key, target):
            Path(target).write_bytes(self.objects[key])

    out, err = io.StringIO(), io.StringIO()
    body = _body("Passed", artifacts={"bucket": "b", "prefix": "p", "report": "p/report/index.html"})
    assert report_cmd.report(body, "r", directory=str(tmp_path), link=False, link_seconds=60, open_it=False,
                             out=out, err=err, s3=S3()) == 0
    assert out.getvalue().strip() == str((tmp_path / "r" / "index.html").resolve())
    assert (tmp_path / "r" / "data" / "t.zip").read_bytes() == b"zip" and not (tmp_path / "r" / "result.json").exists()


# ---------------------------------------------------------------- in a pod (the chart's helm test)

def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(tmp_path, monkeypatch):
    from supercheck.cli.kubeapi import load

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (sa / "namespace").write_text("supercheck-system\n")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api, namespace = load(None, None, service_account_dir=sa)
    assert namespace == "supercheck-system"
    assert api.configuration.host == "https://10.96.0.1:443"
    assert api.configuration.auth_settings()["BearerToken"]["value"].lower() == "bearer pod-token"
    # A kubeconfig, when there is one, still wins (as kubectl's order).
    kube = tmp_path / ".kube"
    kube.mkdir()
    (kube / "config").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: 'https://k:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u, namespace: ci}}]\n")
    api, namespace = load(None, None, service_account_dir=sa)
    assert (api.configuration.host, namespace) == ("https://k:6443", "ci")
