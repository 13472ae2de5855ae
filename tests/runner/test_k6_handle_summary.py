"""k6 scripts with their own handleSummary, through supercheck-runner with the real k6: the files
it writes are uploaded under the attempt's prefix, the verdict still comes from the runner's own
summary export, and a path outside the work directory is refused before the run."""

from __future__ import annotations

import json
import re

import pytest

from supercheck_contract import ExitCode, FailureClass

from .conftest import REPO, read_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def documented_script() -> str:
    """The handleSummary example of docs/runner.md, as written there."""
    doc = (REPO / "docs" / "runner.md").read_text()
    section = doc[doc.index("**handleSummary.**"):]
    return re.search(r"```js\n(.*?)```", section, re.S).group(1)


WITH_HANDLE_SUMMARY = documented_script()


def test_handle_summary_files_are_uploaded_and_the_verdict_still_filled(run_runner, site, s3):
    run = run_runner("k6", WITH_HANDLE_SUMMARY, env={"TARGET_URL": site.url}, script_name="checkout.js")
    assert run.exit_code == ExitCode.PASSED, run.output
    k6 = run.result.k6
    assert k6 is not None and k6.iterations == 3 and k6.checksPassed == 3 and k6.thresholdsPassed is True

    prefix, bucket = run.config.prefix, run.config.bucket
    keys = set(run.keys(s3))
    assert {f"{prefix}/summary.json", f"{prefix}/junit.xml", f"{prefix}/handleSummary/console.log",
            f"{prefix}/k6-summary.json", f"{prefix}/k6-metrics.json.gz", f"{prefix}/console.log",
            f"{prefix}/result.json"} <= keys, keys
    # The script's own summary, as handleSummary wrote it (k6 1.x's data shape).
    mine = read_json(s3, bucket, f"{prefix}/summary.json")
    assert mine["metrics"]["iterations"]["values"]["count"] == 3
    assert mine["metrics"]["checks"]["values"]["passes"] == 3
    junit = s3.get_object(Bucket=bucket, Key=f"{prefix}/junit.xml")
    assert junit["Body"].read() == b'<testsuites tests="1"></testsuites>'
    assert junit["ContentType"] == "application/xml"
    renamed = s3.get_object(Bucket=bucket, Key=f"{prefix}/handleSummary/console.log")["Body"].read()
    assert renamed == b"mine"
    # The runner's console log is its own, and shows the script's stdout and the user's file name.
    console = s3.get_object(Bucket=bucket, Key=f"{prefix}/console.log")["Body"].read().decode()
    assert "\n3 iterations\n" in console  # handleSummary's stdout
    assert "script: checkout.js" in console
    assert "handleSummary wrote console.log (uploaded as handleSummary/console.log), junit.xml, summary.json" in console
    # The runner's summary export is untouched by the script's handleSummary.
    assert read_json(s3, bucket, f"{prefix}/k6-summary.json")["metrics"]["iterations"]["count"] == 3


def test_without_a_script_name_the_script_is_script_js(run_runner, site, s3):
    run = run_runner("k6", WITH_HANDLE_SUMMARY, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert "script: script.js" in run.output
    assert f"{run.config.prefix}/summary.json" in run.keys(s3)


@pytest.mark.parametrize("path, why", [
    ("/tmp/results/summary.json", "an absolute path"),
    ("../summary.json", "a path that climbs out with '..'"),
])
def test_a_handle_summary_path_outside_the_work_directory_is_refused(run_runner, site, path, why):
    script = WITH_HANDLE_SUMMARY.replace("'summary.json'", f"'{path}'")
    run = run_runner("k6", script, env={"TARGET_URL": site.url}, script_name="checkout.js")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert run.result.message == (
        f"invalid script: line 13, column 5: handleSummary writes '{path}', {why}, outside the work directory: "
        "only files written in k6's working directory are uploaded; use a relative name such as 'summary.json'")
    assert "running k6" not in run.output


def test_handle_summary_trouble_is_told_without_changing_the_verdict(run_runner, site, s3):
    script = """
import http from 'k6/http';
export const options = { vus: 1, iterations: 2 };
export default function () { http.get(__ENV.TARGET_URL); }
export function handleSummary(data) {
  return { 'reports/summary.json': JSON.stringify(data), 'ok.json': '{}' };
}
"""
    run = run_runner("k6", script, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.message == (
        "thresholds passed; 0 checks passed; 2 iterations, http_req_duration p(95) "
        f"{run.result.k6.httpReqDurationP95Ms} ms; handleSummary: could not open 'reports/summary.json': "
        "open reports/summary.json: no such file or directory (k6 does not create folders: write 'summary.json', "
        "not 'reports/summary.json')")
    assert json.loads(s3.get_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/ok.json")["Body"].read()) == {}
