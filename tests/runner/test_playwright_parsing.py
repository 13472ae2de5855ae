"""Pure parts of the Playwright engine: the generated config, JSON report -> TestSummary, the failure class."""

from __future__ import annotations

import json
import subprocess

import pytest

from supercheck_contract import FailureClass, TestSummary
from supercheck_runner import playwright as pw
from supercheck_runner import progress
from supercheck_runner.playwright import PlaywrightOptions, build_config, classify, render_config_module, summarize
from supercheck_runner.timer import interrupt_grace

from .conftest import NODE_MODULES


def result(status, message=None):
    r = {"status": status, "attachments": []}
    if message:
        r["error"] = {"message": message}
        r["errors"] = [{"message": message}]
    return r


def spec(title, status, results, annotations=(), expected="passed"):
    return {"title": title, "tests": [{"status": status, "results": results, "annotations": list(annotations),
                                       "expectedStatus": expected, "projectName": "chromium"}]}


def report(*specs, errors=(), nested=()):
    return {
        "suites": [{"title": "test.spec.ts", "specs": list(specs),
                    "suites": [{"title": "checkout", "specs": list(nested), "suites": []}]}],
        "errors": [{"message": m} for m in errors],
        "stats": {},
    }


MIXED = report(
    spec("passes", "expected", [result("passed")]),
    spec("fails", "unexpected", [
        result("failed", "\x1b[31mError: expect(locator).toHaveText(expected) failed\x1b[39m\n\nExpected: y"),
        result("failed", "Error: expect(locator).toHaveText(expected) failed\n\nExpected: y\nReceived: x\n\n"
                         "  at test.spec.ts:3"),
    ]),
    spec("flaky", "flaky", [result("failed", "Error: nope"), result("passed")]),
    spec("skipped", "skipped", [result("skipped")], annotations=[{"type": "skip"}], expected="skipped"),
    nested=[spec("in a describe", "expected", [result("passed")])],
)


def test_counts_follow_the_final_status_of_each_test():
    facts = summarize(MIXED)
    assert facts.summary == TestSummary(total=5, passed=2, failed=1, flaky=1, skipped=1)
    assert [f.title for f in facts.failures] == ["fails"]
    assert facts.failures[0].error.startswith("Error: expect(locator)")  # ANSI colours stripped
    assert facts.cut_off == [] and facts.not_started == 0


def test_failed_run_names_the_failing_test():
    outcome = classify(summarize(MIXED), exit_code=1, timed_out=False)
    assert outcome.failure == FailureClass.TEST_FAILURE
    assert "'fails': Error: expect(locator).toHaveText(expected) failed — Expected: y — Received: x" in outcome.message
    assert outcome.message.startswith("2 passed, 1 failed, 1 flaky, 1 skipped of 5")


def test_flaky_alone_passes():
    facts = summarize(report(spec("a", "expected", [result("passed")]),
                             spec("b", "flaky", [result("failed", "Error: x"), result("passed")])))
    outcome = classify(facts, exit_code=0, timed_out=False)
    assert outcome.failure == FailureClass.NONE and outcome.summary.flaky == 1


def test_global_timeout_is_timeout_and_counts_what_did_not_finish():
    cut = report(
        spec("quick", "expected", [result("passed")]),
        spec("hangs", "skipped", [result("skipped")]),
        spec("never ran", "skipped", []),
        errors=["\x1b[31mTimed out waiting 14.2s for the test suite to run\x1b[39m"],
    )
    facts = summarize(cut)
    assert [c.title for c in facts.cut_off] == ["hangs"] and facts.not_started == 1
    outcome = classify(facts, exit_code=1, timed_out=False)
    assert outcome.failure == FailureClass.TIMEOUT and outcome.summary.passed == 1
    assert "still running at the deadline: 'hangs'" in outcome.message and outcome.message.endswith("; 1 not started")


def test_interrupted_at_the_deadline_names_the_running_tests_where_they_are_and_for_how_long():
    interrupted = {**result("interrupted"), "duration": 41234}
    cut = report(
        {**spec("quick", "expected", [result("passed")]), "file": "test.spec.ts", "line": 3},
        {**spec("waits for a hidden button", "skipped", [interrupted]), "file": "test.spec.ts", "line": 8},
        nested=[{**spec("also waits", "skipped", [interrupted]), "file": "test.spec.ts", "line": 14},
                spec("never ran", "skipped", [])],
    )
    outcome = classify(summarize(cut), exit_code=130, timed_out=True)
    assert outcome.failure == FailureClass.TIMEOUT
    assert outcome.summary == TestSummary(total=4, passed=1, skipped=3)
    assert outcome.message == (
        "timed out: 1 passed, 0 failed, 0 flaky, 3 skipped of 4; still running at the deadline: "
        "'waits for a hidden button' (test.spec.ts:8, ran 41.2 s), 'checkout › also waits' "
        "(test.spec.ts:14, ran 41.2 s); 1 not started")


def test_an_explicit_skip_is_not_cut_off():
    facts = summarize(report(spec("skipped", "skipped", [result("skipped")], annotations=[{"type": "skip"}],
                                  expected="skipped"),
                             spec("fixme", "skipped", [], annotations=[{"type": "fixme"}], expected="skipped")))
    assert facts.cut_off == [] and facts.not_started == 0


def test_without_a_report_the_progress_names_and_counts():
    lines = [
        '{"event":"begin","total":3,"time":1000}',
        '{"event":"testBegin","id":"a","title":"quick","location":"test.spec.ts:3","retry":0,"time":1100}',
        '{"event":"testEnd","id":"a","title":"quick","location":"test.spec.ts:3","retry":0,"status":"passed",'
        '"outcome":"expected","annotations":[],"duration":500,"time":1600}',
        '{"event":"testBegin","id":"b","title":"spins","location":"test.spec.ts:8","retry":0,"time":1700}',
    ]
    prog = progress.parse(lines)
    prog.stopped_ms = 11_700
    outcome = classify(None, exit_code=-9, timed_out=True, progress=prog)
    assert outcome.failure == FailureClass.TIMEOUT
    assert outcome.summary == TestSummary(total=3, passed=1, skipped=2)
    assert outcome.message == (
        "timed out (Playwright was killed before writing its report): 1 passed, 0 failed, 0 flaky, 2 skipped "
        "of 3; still running at the deadline: 'spins' (test.spec.ts:8, ran 10.0 s); 1 not started")


def test_our_own_timer_is_timeout_even_without_a_report():
    assert classify(None, exit_code=-9, timed_out=True).failure == FailureClass.TIMEOUT


def test_crash_outranks_assertion_failures():
    facts = summarize(report(
        spec("assertion", "unexpected", [result("failed", "Error: expect(received).toBe(expected)")]),
        spec("crash", "unexpected", [result("failed", "Error: locator.click: Target crashed")]),
    ))
    outcome = classify(facts, exit_code=1, timed_out=False)
    assert outcome.failure == FailureClass.BROWSER_CRASH and "'crash'" in outcome.message


def test_closed_browser_after_a_test_timeout_is_not_a_crash():
    error = "Test timeout of 30000ms exceeded.\n\nError: page.click: Target page, context or browser has been closed"
    facts = summarize(report(spec("slow", "unexpected", [{"status": "timedOut", "error": {"message": error}}])))
    assert classify(facts, exit_code=1, timed_out=False).failure == FailureClass.TEST_FAILURE


def test_missing_browser_is_infrastructure():
    error = "Error: browserType.launch: Executable doesn't exist at /ms-playwright/chromium-1/chrome"
    facts = summarize(report(spec("a", "unexpected", [result("failed", error)])))
    assert classify(facts, exit_code=1, timed_out=False).failure == FailureClass.INFRASTRUCTURE


def test_a_script_that_does_not_load_is_invalid():
    facts = summarize(report(errors=["ReferenceError: nope is not defined\n    at test.spec.ts:3:1"]))
    outcome = classify(facts, exit_code=1, timed_out=False)
    assert outcome.failure == FailureClass.VALIDATION and "nope is not defined" in outcome.message


def test_no_report_and_no_timeout_is_infrastructure():
    outcome = classify(None, exit_code=1, timed_out=False,
                       console_tail="Error: Cannot find module '@playwright/test'\n")
    assert outcome.failure == FailureClass.INFRASTRUCTURE and "Cannot find module" in outcome.message


def options(**kw):
    return PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests", **kw)


def test_config_carries_the_run_settings():
    cfg = build_config(options(retries=2, trace="on-first-retry", headless=False, workers=3,
                               test_timeout_ms=5000, no_sandbox=True))
    assert (cfg["retries"], cfg["workers"], cfg["timeout"]) == (2, 3, 5000)
    # The run's deadline is the runner's (SIGINT): Playwright's global timeout would drop the traces.
    assert "globalTimeout" not in cfg
    assert cfg["use"]["trace"] == "on-first-retry" and cfg["use"]["headless"] is False
    assert cfg["use"]["screenshot"] == "only-on-failure" and cfg["use"]["video"] == "retain-on-failure"
    args = cfg["use"]["launchOptions"]["args"]
    for flag in ("--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"):
        assert flag in args
    reporters = {r[0]: r[1] if len(r) > 1 else None for r in cfg["reporter"]}
    assert reporters["json"]["outputFile"] == "/w/out/playwright-results.json"
    assert reporters["junit"]["outputFile"] == "/w/out/junit.xml"
    assert reporters["html"] == {"outputFolder": "/w/out/report", "open": "never"}
    assert cfg["outputDir"] == "/w/out/test-results"


def test_config_refuses_unknown_trace_modes_and_video_can_be_off():
    cfg = build_config(options(trace="sometimes", video=False))
    assert cfg["use"]["trace"] == "retain-on-failure" and cfg["use"]["video"] == "off"
    assert "--no-sandbox" not in cfg["use"]["launchOptions"]["args"]


def test_the_video_mode_is_the_runs_unless_videos_cannot_be_recorded():
    assert build_config(options(video_mode="off"))["use"]["video"] == "off"
    assert build_config(options(video_mode="on-first-retry"))["use"]["video"] == "on-first-retry"
    assert build_config(options(video_mode="sometimes"))["use"]["video"] == "retain-on-failure"
    assert build_config(options(video_mode="on", video=False))["use"]["video"] == "off"  # no ffmpeg


@pytest.mark.integration
def test_config_module_loads_in_node_and_picks_chromium(tmp_path):
    """The module is real JavaScript: node imports it and we read back the chosen browser."""
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    cfg = build_config(options())
    shell = tmp_path / "chromium-headless-shell"
    shell.write_text("")
    for pinned, headless_shell, expected in ((None, None, "/fallback/chromium"),
                                             ("/pinned/chrome", None, "/pinned/chrome"),
                                             (None, str(shell), str(shell)),  # a headless run's, when it is there
                                             (None, "/no/such/shell", "/fallback/chromium"),
                                             ("/pinned/chrome", str(shell), "/pinned/chrome")):
        path = tmp_path / "playwright.config.mjs"
        path.write_text(render_config_module(cfg, pinned, "/fallback/chromium", headless_shell=headless_shell))
        out = subprocess.run(
            ["node", "--input-type=module", "-e",
             f"const c = (await import({json.dumps(str(path))})).default;"
             " console.log(JSON.stringify(c.use.launchOptions));"],
            capture_output=True, text=True, cwd=tmp_path, timeout=60,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "none")},
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["executablePath"] == expected


def test_ffmpeg_shim_only_when_playwrights_own_is_missing(tmp_path):
    fake_ffmpeg = tmp_path / "ffmpeg"
    fake_ffmpeg.write_text("#!/bin/sh\n")
    registry = tmp_path / "registry"
    browsers_path = {"PLAYWRIGHT_BROWSERS_PATH": str(registry)}
    env, video = pw.ffmpeg_shim(tmp_path / "w", NODE_MODULES, browsers_path, str(fake_ffmpeg))
    assert video and env["PLAYWRIGHT_BROWSERS_PATH"] == str(tmp_path / "w" / "browsers")
    assert next((tmp_path / "w" / "browsers").glob("ffmpeg-*/ffmpeg-linux")).resolve() == fake_ffmpeg
    env, video = pw.ffmpeg_shim(tmp_path / "w2", NODE_MODULES, browsers_path, None)
    assert env == {} and video is False
    # Playwright's own ffmpeg present: nothing to do.
    own = next((tmp_path / "w" / "browsers").glob("ffmpeg-*")).name
    (registry / own).mkdir(parents=True)
    (registry / own / "ffmpeg-linux").write_text("")
    assert pw.ffmpeg_shim(tmp_path / "w3", NODE_MODULES, browsers_path, None) == ({}, True)


def test_playwright_is_interrupted_a_few_seconds_before_the_deadline():
    assert interrupt_grace(60) == 5.0  # time to save the running tests' traces and write the reports
    assert interrupt_grace(10) == 3.0  # short budgets keep most of their time
    assert interrupt_grace(0) == 0.0
