"""A JobRun's pods, the pure parts: which files a shard runs, a k6 shard's verdict, the merge's config
and message; and the generated Playwright config running exactly a shard's files (node, no browser).
Each test file's end from the progress events: test_playwright_progress.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from supercheck_contract import (
    FailureClass,
    K6Summary,
    RunnerConfig,
    TestEnded,
    TestOutcome,
    TestSummary,
)
from supercheck_runner import job
from supercheck_runner.outcome import EngineOutcome
from supercheck_runner.playwright import PlaywrightOptions, build_config, render_config_module
from supercheck_runner.validate import ValidationError

from .conftest import NODE_MODULES


def config(**fields) -> RunnerConfig:
    return RunnerConfig(type=fields.pop("type", "playwright"), scriptPath="/suite", timeoutSeconds=60, runName="j",
                        namespace="ns", attempt=1, bucket="b", prefix="p", **fields)


SUITE = {"tests/a.spec.ts", "tests/b.spec.ts", "tests/c.test.ts", "helpers/site.ts", "tests/fixtures.ts",
         "data.json"}


def test_the_jobs_test_files_are_found_by_name_or_given():
    assert job.job_tests(SUITE, [], "playwright") == ["tests/a.spec.ts", "tests/b.spec.ts", "tests/c.test.ts"]
    # given: as the operator lists them (a helper may be one, if the operator says so), in order
    assert job.job_tests(SUITE, ["./tests/c.test.ts", "tests/a.spec.ts"], "playwright") == [
        "tests/a.spec.ts", "tests/c.test.ts"]
    with pytest.raises(ValidationError, match="the job's tests name 'tests/z.spec.ts', which the suite does not "
                                              "have"):
        job.job_tests(SUITE, ["tests/a.spec.ts", "tests/z.spec.ts"], "playwright")
    with pytest.raises(ValidationError, match="the suite has no test file: a k6 job runs the files named"):
        job.job_tests({"helpers/site.js", "data.json"}, [], "k6")


def test_a_shard_selects_its_share_and_may_have_none():
    assert job.selection(config(shardIndex=2, shardCount=2), SUITE) == (["tests/b.spec.ts"], 3)
    assert job.selection(config(shardIndex=3, shardCount=4), SUITE) == (["tests/c.test.ts"], 3)
    assert job.selection(config(shardIndex=4, shardCount=4), SUITE) == ([], 3)
    empty = job.empty_shard(config(shardIndex=4, shardCount=4), 3)
    assert empty.failure == FailureClass.NONE and empty.summary == TestSummary()
    assert empty.message == "shard 4 of 4: no test file to run (the job has 3 test files for 4 shards)"


def test_what_the_operator_may_get_wrong():
    assert job.shard_issues(config(shardIndex=1, shardCount=2)) == []
    assert job.shard_issues(config()) == []  # a TestRun
    assert "not between 1 and 2" in str(job.shard_issues(config(shardIndex=3, shardCount=2))[0])
    assert "unknown mode 'mash'" in str(job.shard_issues(config(mode="mash"))[0])
    assert "a k6 job has none" in str(job.shard_issues(config(type="k6", mode="merge"))[0])
    assert job.is_shard(config(shardIndex=1, shardCount=2))
    assert not job.is_shard(config()) and not job.is_shard(config(shardCount=2, shardIndex=1, mode="merge"))


# --- k6 -----------------------------------------------------------------------------------------


def k6_run(file: str, failure: FailureClass, message: str = "", seconds: float = 1.5,
           k6: K6Summary | None = None) -> job.K6File:
    return job.K6File(file, EngineOutcome(failure, message, k6=k6), seconds)


def test_each_k6_file_has_its_own_artifact_folder():
    assert job.k6_artifact_dirs(["load/a.k6.js", "b.js", "b.ts", "console.log.js", "result.json.js"]) == {
        "load/a.k6.js": "load/a.k6", "b.js": "b.js", "b.ts": "b.ts", "console.log.js": "console.log.js",
        "result.json.js": "result.json.js"}


def test_a_k6_file_is_announced_passed_or_failed_and_nothing_else():
    assert job.k6_test_ended(k6_run("a.js", FailureClass.NONE, "thresholds passed", 2.25)) == TestEnded(
        file="a.js", outcome=TestOutcome.PASSED, durationMs=2250, cases=1)
    failed = job.k6_test_ended(k6_run("b.js", FailureClass.TEST_FAILURE, "thresholds crossed: checks: rate>0.99"))
    assert failed is not None and (failed.outcome, failed.failure) == (TestOutcome.FAILED,
                                                                       "thresholds crossed: checks: rate>0.99")
    for failure in (FailureClass.TIMEOUT, FailureClass.INFRASTRUCTURE, FailureClass.NETWORK, FailureClass.VALIDATION):
        assert job.k6_test_ended(k6_run("c.js", failure, "x")) is None


def test_a_k6_shards_verdict():
    cfg = config(type="k6", shardIndex=1, shardCount=2)
    files = ["a.js", "b.js", "c.js"]
    passed = k6_run("a.js", FailureClass.NONE, k6=K6Summary(checksPassed=3, iterations=3, httpReqDurationP95Ms=12.0))
    failed = k6_run("b.js", FailureClass.TEST_FAILURE, "checks failed: ok (1 of 2 failed)",
                    k6=K6Summary(thresholdsPassed=False, checksPassed=1, checksFailed=1, iterations=2,
                                 httpReqDurationP95Ms=40.0))
    ok = job.k6_shard_outcome(cfg, files[:1], [passed], deadline_passed=False)
    assert (ok.failure, ok.message) == (FailureClass.NONE, "shard 1 of 2: 1 of 1 test files passed, 0 failed")
    out = job.k6_shard_outcome(cfg, files, [passed, failed, k6_run("c.js", FailureClass.NONE)], deadline_passed=False)
    assert out.failure == FailureClass.TEST_FAILURE
    assert out.message == ("shard 1 of 2: 2 of 3 test files passed, 1 failed. 'b.js': checks failed: ok (1 of 2 "
                           "failed)")
    assert out.summary == TestSummary(total=3, passed=2, failed=1)
    assert out.k6 == K6Summary(thresholdsPassed=False, checksPassed=4, checksFailed=1, iterations=5,
                               httpReqDurationP95Ms=40.0)
    # infrastructure trouble in one file outranks a test failure in another, as for one script
    crash = k6_run("c.js", FailureClass.INFRASTRUCTURE, "k6 crashed (a Go panic) (k6 exit code 109): boom")
    out = job.k6_shard_outcome(cfg, files, [passed, failed, crash], deadline_passed=False)
    assert out.failure == FailureClass.INFRASTRUCTURE and out.message.startswith("shard 1 of 2: 'c.js': k6 crashed")
    # the deadline: a file cut off, or files never started
    out = job.k6_shard_outcome(cfg, files, [passed, k6_run("b.js", FailureClass.TIMEOUT)], deadline_passed=True)
    assert (out.failure, out.message) == (FailureClass.TIMEOUT, "shard 1 of 2: timed out: 1 of 3 test files "
                                                                "passed, 0 failed, 1 not started; 'b.js' was running")
    out = job.k6_shard_outcome(cfg, files, [passed], deadline_passed=True)
    assert out.failure == FailureClass.TIMEOUT and out.summary.skipped == 2


# --- merge --------------------------------------------------------------------------------------


def test_the_merge_reads_each_shards_blob_folder_and_names_what_it_lacked():
    assert job.blob_folder("/ns/job/uid/shard-1/attempt-2/") == "ns/job/uid/shard-1/attempt-2/blob/"
    assert job.blob_keys(["p/blob/shard-1.zip", "p/blob/notes.txt", "p/blob/a.zip"]) == ["p/blob/a.zip",
                                                                                           "p/blob/shard-1.zip"]
    assert job.local_blob_name(3, "p/blob/shard-3.zip") == "0003-shard-3.zip"
    assert job.merge_message("1 passed, 0 failed, 0 flaky, 0 skipped of 1", ["p1"], ["p2", "p3"]) == (
        "merged the blob reports of 1 of 3 shards: 1 passed, 0 failed, 0 flaky, 0 skipped of 1; no blob report "
        "under p2, p3")
    cfg = job.merge_config("/w/tests", "/w/out/")
    assert cfg["testDir"] == "/w/tests"
    assert cfg["reporter"] == [["html", {"outputFolder": "/w/out/report", "open": "never"}],
                               ["junit", {"outputFile": "/w/out/junit.xml"}],
                               ["json", {"outputFile": "/w/out/results.json"}]]
    assert job.render_merge_config(cfg).endswith("export default " + json.dumps(cfg, indent=2) + ";\n")


def test_a_shards_config_writes_a_blob_report():
    cfg = build_config(PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests", test_match="x.spec.ts",
                                         test_files=("a.spec.ts",), blob_name="shard-2.zip"))
    assert ["blob", {"outputDir": "/w/out/blob", "fileName": "shard-2.zip"}] in cfg["reporter"]
    assert "testMatch" not in cfg  # the module sets it from the files
    assert not [r for r in build_config(PlaywrightOptions(out_dir="/o", test_dir="/t"))["reporter"] if r[0] == "blob"]


@pytest.mark.integration
def test_the_config_module_matches_exactly_the_shards_files(tmp_path):
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    files = ("a.spec.ts", "sub/[x]*.spec.ts")
    cfg = build_config(PlaywrightOptions(out_dir=str(tmp_path / "out"), test_dir=str(tmp_path / "tests"),
                                         test_files=files))
    (tmp_path / "playwright.config.mjs").write_text(render_config_module(cfg, "/bin/true", "/x", files))
    check = ("const { default: c } = await import(process.argv[1]);\n"
             "const hit = (f) => c.testMatch.some((re) => re.test(c.testDir + '/' + f));\n"
             "console.log(JSON.stringify(['a.spec.ts', 'sub/[x]*.spec.ts', 'lib/a.spec.ts', 'A.spec.ts', "
             "'sub/x.spec.ts', 'a.spec.tsx'].map(hit)));\n")
    out = subprocess.run(["node", "--input-type=module", "-e", check, str(tmp_path / "playwright.config.mjs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [True, True, False, False, False, False]


def test_the_blob_report_a_shard_writes_is_the_one_the_operator_grants_its_merge():
    """The shard uploads out/blob/<blob_name> under its prefix; the operator grants the merge pod
    supercheck_contract.blob_report_key(prefix, index) without asking the shard: they must agree."""
    from supercheck_contract import RunnerConfig, blob_report_key
    from supercheck_runner.artifacts import object_key

    for index in (1, 7, 12):
        config = RunnerConfig(type="playwright", scriptPath="/s", timeoutSeconds=60, runName="j", namespace="ns",
                              attempt=2, bucket="b", prefix=f"ns/j/uid/shard-{index}/attempt-2", shardIndex=index,
                              shardCount=12)
        uploaded = object_key(config.prefix, f"{job.BLOB_DIR}/{job.blob_name(config)}")
        assert uploaded == blob_report_key(config.prefix, index)
        assert job.blob_keys([uploaded]) == [uploaded] and uploaded.startswith(job.blob_folder(config.prefix))
