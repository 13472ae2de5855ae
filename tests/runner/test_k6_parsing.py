"""Pure parts of the k6 engine: the command line, the script's name, summary export -> K6Summary, the failure
class, handleSummary's files; and the timer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from supercheck_contract import FailureClass, K6Summary
from supercheck_runner import k6, k6_summary
from supercheck_runner.timer import default_margin, execution_budget, graceful_budget_ms

# The shape of k6 1.1's --summary-export (trimmed): a threshold's value is true when crossed.
EXPORT = {
    "root_group": {
        "name": "", "path": "", "groups": {
            "login": {"name": "login", "groups": {}, "checks": {
                "token": {"name": "token", "passes": 9, "fails": 1}}},
        },
        "checks": {"status is 200": {"name": "status is 200", "passes": 10, "fails": 0}},
    },
    "metrics": {
        "http_req_duration": {"avg": 2.2, "min": 0.9, "med": 2.1, "max": 4.7, "p(90)": 3.4, "p(95)": 4.0982971,
                              "p(99)": 4.6, "thresholds": {"p(95)<2000": False}},
        "checks": {"passes": 19, "fails": 1, "value": 0.95, "thresholds": {"rate>0.9": False}},
        "iterations": {"count": 10, "rate": 3.3},
    },
}


def crossed_export():
    data = {**EXPORT, "metrics": {**EXPORT["metrics"]}}
    data["metrics"]["http_req_duration"] = {**EXPORT["metrics"]["http_req_duration"], "thresholds": {"p(95)<1": True}}
    return data


def test_summary_fields():
    summary, crossed, failed_checks = k6.summarize(EXPORT)
    assert summary == K6Summary(thresholdsPassed=True, checksPassed=19, checksFailed=1, iterations=10,
                                httpReqDurationP95Ms=4.098)
    assert crossed == []
    assert failed_checks == ["token (1 of 10 failed)"]  # found in nested groups too


def test_crossed_threshold_is_a_test_failure_not_an_error():
    outcome = k6.classify(crossed_export(), exit_code=k6.THRESHOLDS_FAILED, timed_out=False)
    assert outcome.failure == FailureClass.TEST_FAILURE
    assert outcome.message == "thresholds crossed: http_req_duration: p(95)<1"
    assert outcome.k6.thresholdsPassed is False


def test_a_failed_check_fails_the_run():
    outcome = k6.classify(EXPORT, exit_code=0, timed_out=False)
    assert outcome.failure == FailureClass.TEST_FAILURE and "token (1 of 10 failed)" in outcome.message


def test_clean_run_passes_and_says_p95():
    clean = {**EXPORT, "root_group": {"checks": {}, "groups": {}},
             "metrics": {**EXPORT["metrics"], "checks": {"passes": 20, "fails": 0}}}
    outcome = k6.classify(clean, exit_code=0, timed_out=False)
    assert outcome.failure == FailureClass.NONE and "p(95) 4.098 ms" in outcome.message


@pytest.mark.parametrize("code, failure", [
    (k6.SCRIPT_EXCEPTION, FailureClass.TEST_FAILURE),
    (k6.SCRIPT_ABORTED, FailureClass.TEST_FAILURE),
    (k6.SETUP_TIMEOUT, FailureClass.TEST_FAILURE),
    (k6.INVALID_CONFIG, FailureClass.VALIDATION),
    (k6.GO_PANIC, FailureClass.INFRASTRUCTURE),
    (k6.STOPPED_FROM_REST_API, FailureClass.INFRASTRUCTURE),
])
def test_exit_codes(code, failure):
    tail = 'time="t" level=error msg="something happened"\n'
    assert k6.classify(None, exit_code=code, timed_out=False, console_tail=tail).failure == failure


def test_deadline_wins_and_keeps_the_partial_summary():
    outcome = k6.classify(EXPORT, exit_code=k6.EXTERNAL_ABORT, timed_out=True)
    assert outcome.failure == FailureClass.TIMEOUT and outcome.k6.iterations == 10


def test_command_line():
    cmd = k6.command("k6", Path("/w/script.js"), Path("/w/out"), ["--vus", "3"])
    assert cmd[:2] == ["k6", "run"] and cmd[-1] == "/w/script.js"
    assert cmd[cmd.index("--summary-export") + 1] == "/w/out/k6-summary.json"
    assert cmd[cmd.index("--out") + 1] == "json=/w/out/k6-metrics.json.gz"
    assert "p(90)" in cmd[cmd.index("--summary-trend-stats") + 1]
    assert cmd.index("--vus") < len(cmd) - 1  # the run's own arguments come before the script
    env = k6.dashboard_env(Path("/w/out"), {})
    assert env["K6_WEB_DASHBOARD_EXPORT"] == "/w/out/report/index.html" and env["K6_WEB_DASHBOARD_PORT"] == "-1"
    assert k6.dashboard_env(Path("/w/out"), {"K6_WEB_DASHBOARD_PERIOD": "10s"})["K6_WEB_DASHBOARD_PERIOD"] == "10s"


@pytest.mark.parametrize("args", [["--address", "0.0.0.0:6565"], ["-qa:6565"], ["--out", "csv=/tmp/x"],
                                  ["--summary-export=/tmp/s.json"], ["--no-summary"], ["--log-output=file=/x"]])
def test_flags_that_override_ours_are_refused_not_passed(args):
    """k6 takes a flag's last value: the run's --address after our --address "" would open the REST API
    (tests/security/test_spec_guards.py shows it with the real k6)."""
    assert k6.refused_args(args) is not None and "spec.k6.args may not set" in k6.refused_args(args)
    with pytest.raises(ValueError, match=re.escape(repr(args[0]))):
        k6.command("k6", Path("/w/script.js"), Path("/w/out"), args)
    assert k6.refused_args(["--vus", "3", "-d30s", "-e", "OUT=x"]) is None


def test_timer_margin_and_budgets():
    assert default_margin(20) == 5 and default_margin(120) == 12 and default_margin(900) == 30
    assert execution_budget(120) == 108 and execution_budget(120, margin=20) == 100
    assert execution_budget(3) == 1.0  # never below a second
    assert graceful_budget_ms(60) == 55_000  # 5 s before the hard deadline for the reports
    assert graceful_budget_ms(10) == 7_000  # short budgets keep most of their time
    assert graceful_budget_ms(0.5) == 1000


def test_handle_summary_files_are_what_is_new_or_rewritten(tmp_path):
    work, out = tmp_path / "work", tmp_path / "work" / "out"
    out.mkdir(parents=True)
    (work / "checkout.js").write_text("export default function () {}")
    (out / "k6-summary.json").write_text("{}")
    before = k6_summary.snapshot(work, {"out"})
    assert list(before) == ["checkout.js"]
    (work / "summary.json").write_text("{}")  # new
    (work / "console.log").write_text("mine")  # the runner's own name
    (out / "k6-metrics.json.gz").write_bytes(b"")  # under out/: already uploaded
    (work / "link.json").symlink_to("/etc/hostname")  # not followed
    files = k6_summary.written(before, k6_summary.snapshot(work, {"out"}))
    assert files == ["console.log", "summary.json"]
    assert k6_summary.collect(work, out, files) == [("console.log", "handleSummary/console.log"),
                                                    ("summary.json", "summary.json")]
    assert (out / "handleSummary" / "console.log").read_text() == "mine" and (out / "summary.json").is_file()
    assert not (work / "summary.json").exists()
    # A rewritten file counts too (same size, later mtime).
    before = k6_summary.snapshot(work, {"out"})
    (work / "checkout.js").write_text("export default function () {}")
    os.utime(work / "checkout.js", ns=(0, before["checkout.js"][2] + 1))
    assert k6_summary.written(before, k6_summary.snapshot(work, {"out"})) == ["checkout.js"]
